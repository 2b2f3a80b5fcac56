"""`aistack serve --workers 2` for real: two processes on one port, metrics summed over both."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from aistack.bench import list_images, run_benchmark, summarize
from aistack.bench.local_server import LocalServer, start_local_server
from tests.api.helpers import b64
from tests.conftest import MODEL_DIR

WORKERS = 2
PID_IN_FILE_NAME = re.compile(r"_(\d+)\.db$")  # counter_4623.db


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = start_local_server(
        tmp_path_factory.mktemp("workers"),
        {
            "AISTACK_MODEL_DIR": str(MODEL_DIR),
            "AISTACK_WORKERS": str(WORKERS),
            "AISTACK_RATE_LIMIT": "",
        },
    )
    yield server
    server.stop()


def workers_that_predicted(server: LocalServer) -> set[int]:
    """Processes whose own metric file counts a prediction (prometheus-client's format)."""
    (metrics_dir,) = server.var_dir.glob("metrics-*")
    found = set()
    for path in metrics_dir.glob("counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[0] == "aistack_predictions" and value > 0:
                found.add(int(PID_IN_FILE_NAME.search(path.name).group(1)))
    return found


def predictions_counted(server: LocalServer) -> float:
    with server.client() as client:
        answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == "aistack_predictions_total"
    )


def test_both_workers_serve_and_metrics_count_every_prediction(two_workers, xray_test_dir):
    images = list_images(xray_test_dir)
    before = predictions_counted(two_workers)
    sent = 0
    deadline = time.monotonic() + 60
    while len(workers_that_predicted(two_workers)) < WORKERS or sent == 0:
        run = run_benchmark(two_workers.url, images, 8, "v2", api_key=two_workers.api_key)
        summary = summarize(run)
        # A worker accepts connections only once its model is loaded: never a 503.
        assert summary["errors"] == 0, summary["errors_by_status"]
        sent += summary["ok"]
        assert time.monotonic() < deadline, f"only {workers_that_predicted(two_workers)} answered"
    assert len(workers_that_predicted(two_workers)) == WORKERS
    # Whichever worker answers the scrape, it reports the predictions of both.
    for _ in range(4):
        assert predictions_counted(two_workers) - before == sent


def test_stopping_the_supervisor_stops_every_worker_and_drops_the_metric_files(
    tmp_path: Path,
):
    server = start_local_server(
        tmp_path, {"AISTACK_MODEL_DIR": str(MODEL_DIR), "AISTACK_WORKERS": str(WORKERS)}
    )
    try:
        deadline = time.monotonic() + 60
        while len(children := live_children(server.pid)) < WORKERS:
            assert time.monotonic() < deadline, f"workers: {children}"
            time.sleep(0.2)
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # whichever worker
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log()
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not list(tmp_path.glob("metrics-*"))


def test_sigterm_lets_a_worker_finish_the_request_in_flight(tmp_path: Path, sample_images):
    server = start_local_server(
        tmp_path, {"AISTACK_MODEL_DIR": str(MODEL_DIR), "AISTACK_WORKERS": str(WORKERS)}
    )
    form = urlencode({"b64": b64(sample_images["covid"].read_bytes())}).encode()
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    try:
        head = (
            f"POST /covid19/api/v1/predict/heatmap HTTP/1.1\r\nHost: test\r\n"
            f"X-API-Key: {server.api_key}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\n\r\n"
        ).encode()
        sock.sendall(head + form[: len(form) // 2])
        time.sleep(0.5)  # a worker has taken the connection and is reading the body
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while "Terminated child process" not in server.log():  # the workers are stopping
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        sock.sendall(form[len(form) // 2 :])
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        assert answer.status == 200
        assert json.loads(answer.read())["X-Ray_Classification_Result"]
        assert server.process.wait(30) in (0, -signal.SIGTERM)
    finally:
        sock.close()
        server.stop()


def live_children(pid: int) -> list[int]:
    """Worker processes below the supervisor (its resource tracker apart)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"resource_tracker" not in command:
                found.append(int(child))
    return found


def test_a_worker_count_out_of_range_is_refused():
    command = [sys.executable, "-m", "aistack.cli", "serve", "--workers", "0"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "--workers" in refused.stderr
