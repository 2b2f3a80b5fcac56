"""Two real replicas behind a real HAProxy on loopback, started as `aistack up` starts them.

Spread, failover within the health-check budget, rejoin, the size limit, the stats page's
credentials, forwarded headers, and every HAProxy config through ``haproxy -c``.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from aistack.bench.local_server import create_key
from aistack.config import Settings
from aistack.topology.haproxy import (
    STATS_PASSWORD_ENV,
    STATS_USER_ENV,
    check_config,
    render_compose,
)
from aistack.topology.local import LocalTopology
from aistack.topology.replicas import free_port
from tests.conftest import MODEL_DIR, ROOT
from tests.topology.helpers import (
    FORM,
    PREDICT,
    handled_predictions,
    require_haproxy,
    server_states,
    v1_body,
    wait_for,
)

SHIPPED = ROOT / "haproxy" / "haproxy.cfg"
DETECTION_BUDGET_S = 3.5
"""inter 1s fall 2: two failed checks, at most ~2 s after the kill, plus scheduling slack."""


@dataclass
class Running:
    topology: LocalTopology
    api_key: str
    settings: Settings

    @property
    def stats_auth(self) -> tuple[str, str]:
        return self.topology.stats_user, self.topology.stats_password

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.Client(base_url=self.topology.url, headers=headers, timeout=30)

    def counts(self) -> dict[str, int]:
        return {
            r.name: handled_predictions(r.url, self.api_key)
            for r in self.topology.replicas
            if r.running
        }


def plan(tmp: Path, count: int = 2) -> tuple[LocalTopology, Settings]:
    settings = Settings(var_dir=tmp, model_dir=MODEL_DIR, key_cache_s=1)
    env = {
        **os.environ,
        "AISTACK_VAR_DIR": str(tmp),
        "AISTACK_MODEL_DIR": str(MODEL_DIR),
        "AISTACK_KEY_CACHE_S": "1",
        STATS_USER_ENV: "ops",
        STATS_PASSWORD_ENV: secrets.token_urlsafe(12),
    }
    topology = LocalTopology.plan(
        count,
        settings,
        require_haproxy(),
        port=free_port(),
        stats_port=free_port(),
        env=env,
        haproxy_log=tmp / "haproxy.log",
    )
    return topology, settings


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    topology, settings = plan(tmp_path_factory.mktemp("topology"))
    try:
        topology.start()
        key = create_key(settings.resolved_database_url, "topology-admin", "admin")
        yield Running(topology, key, settings)
    finally:
        topology.stop()


@pytest.fixture(scope="module")
def body(sample_images: dict[str, Path]) -> bytes:
    return v1_body(sample_images["normal"])


def predict_many(running: Running, body: bytes, count: int) -> list[int]:
    with running.client() as client:
        return [client.post(PREDICT, content=body, headers=FORM).status_code for _ in range(count)]


# --------------------------------------------------------------------------- configs


def test_every_table_exists_before_a_replica_starts(tmp_path: Path):
    """Replicas starting at once on a new database would race to create the tables."""
    topology, settings = plan(tmp_path)
    topology.prepare_database()
    engine = sqlalchemy.create_engine(settings.resolved_database_url)
    try:
        made = set(sqlalchemy.inspect(engine).get_table_names())
        with engine.connect() as connection:
            lock_rows = connection.execute(sqlalchemy.text("SELECT COUNT(*) FROM fhir_write_lock"))
            assert lock_rows.scalar() == 1
    finally:
        engine.dispose()
    assert {"predictions", "fhir_resources", "fhir_tokens", "fhir_write_lock"} <= made


def test_shipped_compose_config_is_the_rendered_template():
    assert SHIPPED.read_text() == render_compose(), (
        "haproxy/haproxy.cfg is out of step with aistack.topology.haproxy; regenerate it: "
        "python -m aistack.topology.haproxy > haproxy/haproxy.cfg"
    )


def test_shipped_and_rendered_configs_pass_haproxy_check(tmp_path: Path):
    binary = require_haproxy()
    topology, _ = plan(tmp_path)
    credentials = {STATS_USER_ENV: "ops", STATS_PASSWORD_ENV: "a-long-secret"}
    for config in (SHIPPED, topology.config_path):
        valid, output = check_config(binary, config, {**os.environ, **credentials})
        assert valid, f"{config}:\n{output}"


@pytest.mark.parametrize(
    "credentials",
    [{}, {STATS_USER_ENV: "ops"}, {STATS_USER_ENV: "ops", STATS_PASSWORD_ENV: "admin"}],
    ids=["unset", "no-password", "admin"],
)
def test_haproxy_refuses_to_start_without_real_stats_credentials(credentials: dict[str, str]):
    """Unset, they would expand to empty strings: a stats page open to empty credentials."""
    env = {k: v for k, v in os.environ.items() if k not in (STATS_USER_ENV, STATS_PASSWORD_ENV)}
    valid, output = check_config(require_haproxy(), SHIPPED, {**env, **credentials})
    assert not valid
    assert "HAPROXY_STATS_PASSWORD" in output


# --------------------------------------------------------------------------- live topology


def test_requests_spread_over_both_replicas(running: Running, body: bytes):
    before = running.counts()
    statuses = predict_many(running, body, 20)
    after = running.counts()
    assert statuses == [200] * 20
    served = {name: after[name] - before[name] for name in after}
    assert sum(served.values()) == 20
    assert all(n >= 5 for n in served.values()), served  # leastconn ties go round robin


def test_links_point_at_haproxy_and_work_on_every_replica(running: Running, body: bytes):
    with running.client() as client:
        response = client.post(PREDICT + "heatmap", content=body, headers=FORM)
    assert response.status_code == 200, response.text
    link = response.json()["Output_Heatmap"]
    assert link.startswith(running.topology.url + "/"), link
    assert httpx.get(link, timeout=10).status_code == 200
    # One signing secret and one VAR_DIR: the signed link works on each replica directly.
    path = link.removeprefix(running.topology.url)
    for replica in running.topology.replicas:
        assert httpx.get(replica.url + path, timeout=10).status_code == 200, replica.name


def test_clients_cannot_spoof_their_address_through_haproxy(running: Running):
    spoofed = "203.0.113.77"
    with running.client() as client:
        assert client.get("/healthz", headers={"X-Forwarded-For": spoofed}).status_code == 200
    replica = running.topology.replicas[0]
    # The replica trusts 127.0.0.1's header: sent directly, the address shows in its log...
    httpx.get(f"{replica.url}/healthz", headers={"X-Forwarded-For": "198.51.100.9"})
    wait_for(lambda: "198.51.100.9" in replica.log_path.read_text(), 5)
    # ...but HAProxy replaced the client's header with the client's real address.
    logs = "".join(r.log_path.read_text() for r in running.topology.replicas)
    assert spoofed not in logs


def test_bodies_over_the_service_limit_get_413_from_haproxy(running: Running):
    before = running.counts()
    declared = running.settings.max_body_bytes + 1
    with socket.create_connection(("127.0.0.1", running.topology.port), timeout=10) as sock:
        sock.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
        )
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"code":"payload_too_large"' in answer
    assert running.counts() == before  # refused in front: no replica saw it


def test_stats_page_needs_the_credentials(running: Running):
    url = running.topology.stats_url
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, auth=("", "")).status_code == 401
    assert httpx.get(url, auth=(running.topology.stats_user, "wrong")).status_code == 401
    page = httpx.get(url, auth=running.stats_auth)
    assert page.status_code == 200
    # Both listed and up (a check may be in flight on a busy machine: "UP 1/2" for a moment).
    wait_for(lambda: server_states(url, running.stats_auth) == {"r1": "UP", "r2": "UP"}, 10)


def test_a_killed_replica_is_routed_around_and_rejoins_when_restarted(
    running: Running, body: bytes
):
    topology, auth = running.topology, running.stats_auth
    victim, survivor = topology.replica("r1"), topology.replica("r2")
    victim.kill(signal.SIGKILL)
    detected_s = wait_for(
        lambda: server_states(topology.stats_url, auth)["r1"].startswith("DOWN"), 10
    )
    assert detected_s <= DETECTION_BUDGET_S

    before = handled_predictions(survivor.url, running.api_key)
    statuses = predict_many(running, body, 40)
    assert statuses == [200] * 40
    assert handled_predictions(survivor.url, running.api_key) - before == 40

    victim.start()
    wait_for(victim.ready, 90, step_s=0.5)
    wait_for(lambda: server_states(topology.stats_url, auth)["r1"] == "UP", 5)
    statuses = predict_many(running, body, 20)
    assert statuses == [200] * 20
    assert handled_predictions(victim.url, running.api_key) >= 5  # a fresh process: from 0


def test_every_prediction_through_the_replicas_is_in_the_shared_database(
    running: Running, body: bytes
):
    """Several writer processes on one SQLite file: no prediction lost, none locked out."""
    assert predict_many(running, body, 20) == [200] * 20
    with running.client() as client:
        stored = client.get("/api/v2/xray/predictions", params={"limit": 500})
    assert stored.status_code == 200
    log = running.topology.haproxy_log
    assert log is not None
    answered = [
        line
        for line in log.read_text().splitlines()
        if f'"POST {PREDICT}' in line and " 200 " in line
    ]
    assert len(answered) >= 20  # these, and those of the tests above
    assert len(stored.json()) == len(answered)
