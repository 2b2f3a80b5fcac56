"""Overload is refused at once (503 + Retry-After) and nothing hangs; SIGTERM lets the
requests in flight finish."""

from __future__ import annotations

import base64
import json
import signal
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from aistack.bench.local_server import LocalServer, start_local_server

V1 = "/covid19/api/v1/predict/heatmap"


@pytest.fixture(scope="module")
def form_body(sample_images: dict[str, Path]) -> bytes:
    data = base64.b64encode(sample_images["covid"].read_bytes())
    return urllib.parse.urlencode({"b64": data}).encode()


def start(tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str]) -> LocalServer:
    return start_local_server(tmp_path_factory.mktemp(name), {"AISTACK_RATE_LIMIT": "", **env})


def test_overload_is_refused_at_once_and_nothing_hangs(tmp_path_factory, form_body):
    server = start(
        tmp_path_factory,
        "overload",
        {"AISTACK_MAX_CONCURRENT_DECODES": "1", "AISTACK_MAX_QUEUED_PREDICTIONS": "1"},
    )
    headers = {**server.headers, "Content-Type": "application/x-www-form-urlencoded"}
    try:
        with httpx.Client(timeout=30) as client:

            def post(_: int) -> httpx.Response:
                return client.post(f"{server.url}{V1}", content=form_body, headers=headers)

            with ThreadPoolExecutor(24) as pool:
                answers = list(pool.map(post, range(96)))  # every one returns: none hangs
            statuses = {a.status_code for a in answers}
            assert statuses == {200, 503}, statuses
            refused = [a for a in answers if a.status_code == 503]
            assert all(a.json()["error"]["code"] == "service_busy" for a in refused)
            assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)
            metrics = client.get(f"{server.url}/metrics", headers=server.headers).text
            assert 'aistack_rejected_total{stage="admission"}' in metrics
            assert post(0).status_code == 200  # and it serves again once the load is gone
    finally:
        server.stop()


def test_sigterm_finishes_the_request_in_flight(tmp_path_factory, form_body):
    server = start(tmp_path_factory, "shutdown", {})
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST {V1} HTTP/1.1\r\nHost: test\r\nX-API-Key: {server.api_key}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(form_body)}\r\n\r\n"
    ).encode()
    half = len(form_body) // 2
    sock.sendall(head + form_body[:half])
    try:
        server.process.send_signal(signal.SIGTERM)
        # The listener closes at once: a new client is refused, not queued behind shutdown.
        for _ in range(100):
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
            except ConnectionRefusedError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the server still accepts connections after SIGTERM")
        sock.sendall(form_body[half:])
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
            if b"\r\n\r\n" in raw:
                head_part, _, body = raw.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head_part.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                if len(body) >= length:
                    break
        status = int(raw.split(b" ", 2)[1])
        assert status == 200, raw[:300]
        assert json.loads(raw.partition(b"\r\n\r\n")[2])["X-Ray_Classification_Result"]
        # uvicorn re-raises the signal once shut down, as a process killed by it would end.
        assert server.process.wait(30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log()
    finally:
        sock.close()
        server.stop()


def test_slow_uploads_hold_no_prediction_place(tmp_path_factory, form_body):
    server = start(
        tmp_path_factory,
        "slow-upload",
        {"AISTACK_MAX_CONCURRENT_DECODES": "1", "AISTACK_MAX_QUEUED_PREDICTIONS": "0"},
    )
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST {V1} HTTP/1.1\r\nHost: test\r\nX-API-Key: {server.api_key}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(form_body)}\r\n\r\n"
    ).encode()
    headers = {**server.headers, "Content-Type": "application/x-www-form-urlencoded"}
    slow = [socket.create_connection((host, int(port)), timeout=30) for _ in range(3)]
    try:
        for sock in slow:  # uploading slowly: they must not take the only place
            sock.sendall(head + form_body[:1000])
        time.sleep(0.3)
        assert (
            httpx.post(f"{server.url}{V1}", content=form_body, headers=headers).status_code == 200
        )
        for sock in slow:
            sock.sendall(form_body[1000:])
        answers = [sock.recv(65536) for sock in slow]
        # Complete at once, they compete for the one place: one is served, or more in turn,
        # and the rest are refused; none waits or fails otherwise.
        assert all(a.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503")) for a in answers), answers
        assert any(a.startswith(b"HTTP/1.1 200") for a in answers)
    finally:
        for sock in slow:
            sock.close()
        server.stop()
