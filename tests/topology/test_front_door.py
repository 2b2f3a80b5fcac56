"""HAProxy's own admission in front of a real replica: a full front door refuses at once.

One replica with one prediction place (one running, none waiting), so HAProxy holds one
connection to it. A slow upload takes that connection; the next prediction waits in
HAProxy's queue; the one after meets the queue and is refused by HAProxy itself, with the
service's JSON and ``Retry-After``. Reads wait in the queue instead, and once the upload is
gone, everything waiting passes.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aistack.bench.local_server import create_key
from aistack.config import Settings
from aistack.errors import BUSY_MESSAGE
from aistack.topology.haproxy import STATS_PASSWORD_ENV, STATS_USER_ENV, replica_slots
from aistack.topology.local import LocalTopology
from aistack.topology.replicas import free_port
from tests.conftest import MODEL_DIR
from tests.topology.helpers import FORM, PREDICT, require_haproxy, v1_body


@pytest.fixture(scope="module")
def one_place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalTopology, str]]:
    tmp = tmp_path_factory.mktemp("front-door")
    places = {"AISTACK_MAX_CONCURRENT_DECODES": "1", "AISTACK_MAX_QUEUED_PREDICTIONS": "0"}
    settings = Settings(
        var_dir=tmp, model_dir=MODEL_DIR, max_concurrent_decodes=1, max_queued_predictions=0
    )
    assert replica_slots(settings) == 1
    env = {
        **os.environ,
        **places,
        "AISTACK_VAR_DIR": str(tmp),
        "AISTACK_MODEL_DIR": str(MODEL_DIR),
        STATS_USER_ENV: "ops",
        STATS_PASSWORD_ENV: secrets.token_urlsafe(12),
    }
    topology = LocalTopology.plan(
        1,
        settings,
        require_haproxy(),
        port=free_port(),
        stats_port=free_port(),
        env=env,
        haproxy_log=tmp / "haproxy.log",
    )
    try:
        topology.start()
        yield topology, create_key(settings.resolved_database_url, "front-door", "admin")
    finally:
        topology.stop()


def start_slow_upload(topology: LocalTopology, key: str, body: bytes) -> socket.socket:
    """A prediction whose body stops halfway: HAProxy's one connection to the replica."""
    sock = socket.create_connection((topology.host, topology.port), timeout=30)
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {FORM['Content-Type']}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[: len(body) // 2])
    return sock


def test_a_full_front_door_refuses_predictions_itself(
    one_place: tuple[LocalTopology, str], sample_images: dict[str, Path]
) -> None:
    topology, key = one_place
    body = v1_body(sample_images["normal"])
    headers = {"Authorization": f"Bearer {key}", **FORM}
    with httpx.Client(base_url=topology.url, headers=headers, timeout=60) as client:
        assert client.post(PREDICT, content=body).status_code == 200  # warm, and the path works
        slow = start_slow_upload(topology, key, body)
        time.sleep(0.5)  # HAProxy has handed it to the replica
        waiting: dict[str, int] = {}

        def wait_in_queue(name: str, method: str, path: str) -> threading.Thread:
            def call() -> None:
                content = body if method == "POST" else None
                waiting[name] = client.request(method, path, content=content).status_code

            thread = threading.Thread(target=call)
            thread.start()
            time.sleep(0.5)  # it sits in HAProxy's queue now
            return thread

        queued = [wait_in_queue("prediction", "POST", PREDICT)]
        refused = client.post(PREDICT, content=body)
        # a read meets the same queue and waits in it: only predictions are refused
        queued.append(wait_in_queue("read", "GET", "/api/v2/xray/predictions"))

        assert refused.status_code == 503
        assert refused.json() == {"error": {"code": "service_busy", "message": BUSY_MESSAGE}}
        assert refused.headers["retry-after"] == "1"
        # HAProxy answered (its queue timeout would have sent its own page, not this JSON);
        # the replica adds this header to every answer of its own
        assert "x-content-type-options" not in refused.headers
        assert waiting == {}

        slow.close()  # the upload gives up: the slot frees, the queued requests run
        for thread in queued:
            thread.join(60)
        assert waiting == {"prediction": 200, "read": 200}
        assert client.post(PREDICT, content=body).status_code == 200
