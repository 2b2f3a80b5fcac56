"""What the topology tests share: finding haproxy, reading its stats, counting per replica."""

from __future__ import annotations

import base64
import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aistack.topology.haproxy import find_haproxy

PREDICT = "/covid19/api/v1/predict/"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def require_haproxy() -> Path:
    binary = find_haproxy()
    if binary is None:
        pytest.skip(
            "haproxy is not installed (not on PATH nor in /usr/sbin): apt-get install haproxy"
        )
    return binary


def v1_body(image: Path) -> bytes:
    """The 2020 client's form body for ``image``."""
    return urlencode({"b64": base64.b64encode(image.read_bytes()).decode()}).encode()


def server_states(stats_url: str, auth: tuple[str, str]) -> dict[str, str]:
    """Server name -> HAProxy's status (UP, DOWN, ...) in the ``replicas`` backend."""
    response = httpx.get(f"{stats_url};csv", auth=auth, timeout=5)
    response.raise_for_status()
    rows = csv.DictReader(io.StringIO(response.text.lstrip("# ")))
    return {
        row["svname"]: row["status"]
        for row in rows
        if row["pxname"] == "replicas" and row["svname"] != "BACKEND"
    }


def handled_predictions(replica_url: str, api_key: str) -> int:
    """v1 prediction requests this replica process answered (its own /metrics)."""
    response = httpx.get(
        f"{replica_url}/metrics", headers={"Authorization": f"Bearer {api_key}"}, timeout=5
    )
    response.raise_for_status()
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if (
                sample.name == "aistack_http_requests_total"
                and sample.labels.get("route") == PREDICT
                and sample.labels.get("method") == "POST"
            ):
                total += sample.value
    return int(total)


def wait_for(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> float:
    """Seconds until ``condition()`` held; fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(step_s)
    return time.monotonic() - started
