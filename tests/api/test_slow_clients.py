"""Slow or hostile clients cost bounded time and memory, and early answers reach the client.

One real server with short timeouts serves most tests; the slow clients are raw sockets.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aistack.api.limits import STALLED_S
from aistack.bench.local_server import LocalServer, free_port
from tests.conftest import MODEL_DIR

V1 = "/covid19/api/v1/predict/"
V2 = "/api/v2/xray/predictions"
MIB = 1024 * 1024
HEADER_TIMEOUT_S = 1.0
BODY_IDLE_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 6.0
LINGER_S = 1.0
HOLDER_BYTES = 19 * MIB
HOLD_BACK = 100
IN_FLIGHT = 10 * HOLDER_BYTES
SLACK_S = 1.5
"""Allowance on top of a timeout before a close counts as late (a shared 2-core machine)."""
RSS_TOLERANCE_MB = 30
"""RSS after the slow bodies are gone may exceed the warmed-up baseline by this much; ten
19 MiB bodies were held, so a leak of even a fifth of them fails."""
SPOOFED = "203.0.113.7"
AISTACK = str(Path(sys.executable).with_name("aistack"))


def start_server(var_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    """`aistack serve` with uvicorn's access log, not waited for: two servers load at once."""
    port = free_port()
    var_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [AISTACK, "serve", "--port", str(port), "--log-level", "info"],
        env={**os.environ, "AISTACK_VAR_DIR": str(var_dir), **env},
        stdout=(var_dir / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    process.port = port  # type: ignore[attr-defined]
    return process


def wait_ready(
    process: subprocess.Popen, var_dir: Path, probe: str = "/readyz", timeout_s: float = 90
) -> LocalServer:
    url = f"http://127.0.0.1:{process.port}"  # type: ignore[attr-defined]
    log_path = var_dir / "server.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}{probe}", timeout=2).status_code == 200:
                return LocalServer(url=url, var_dir=var_dir, process=process, log_path=log_path)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server not ready in {timeout_s} s:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LocalServer]]:
    """``guarded``: short timeouts, no trusted proxy (and FORWARDED_ALLOW_IPS=* in its
    environment, which must not matter); ``proxied``: 127.0.0.1 is a trusted proxy, and no
    model, as only its network layer is tested (it answers /healthz, not /readyz)."""
    no_model = tmp_path_factory.mktemp("no-model")
    envs = {
        "guarded": {
            "AISTACK_AUTH": "off",
            "AISTACK_MODEL_DIR": str(MODEL_DIR),
            "AISTACK_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
            "AISTACK_BODY_IDLE_TIMEOUT_S": str(BODY_IDLE_TIMEOUT_S),
            "AISTACK_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
            "AISTACK_MAX_BODY_BYTES_IN_FLIGHT": str(IN_FLIGHT),
            "AISTACK_LINGER_S": str(LINGER_S),
            "FORWARDED_ALLOW_IPS": "*",
        },
        "proxied": {
            "AISTACK_AUTH": "off",
            "AISTACK_MODEL_DIR": str(no_model),
            "AISTACK_TRUSTED_PROXIES": "127.0.0.1",
        },
    }
    dirs = {name: tmp_path_factory.mktemp(name) for name in envs}
    processes = {name: start_server(dirs[name], env) for name, env in envs.items()}
    try:
        probes = {"guarded": "/readyz", "proxied": "/healthz"}
        yield {name: wait_ready(processes[name], dirs[name], probes[name]) for name in envs}
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(15)


@pytest.fixture(scope="module")
def server(servers: dict[str, LocalServer]) -> LocalServer:
    return servers["guarded"]


@pytest.fixture(scope="module")
def image_b64(sample_images: dict[str, Path]) -> str:
    return base64.b64encode(sample_images["normal"].read_bytes()).decode()


def predict(server: LocalServer, image_b64: str) -> httpx.Response:
    return httpx.post(f"{server.url}{V1}", data={"b64": image_b64}, timeout=30)


@pytest.fixture
def still_serving(server: LocalServer, image_b64: str) -> Iterator[None]:
    yield
    assert predict(server, image_b64).status_code == 200


def connect(server: LocalServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(30)
    return sock


def post_head(path: str, length: int, content_type: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def parse(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def assert_error(raw: bytes, status: int, code: str) -> dict[str, str]:
    got, headers, body = parse(raw)
    assert got == status, raw[:500]
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert headers["content-type"] == "application/json"
    return headers


def test_silent_connection_is_closed(server, still_serving):
    sock = connect(server)
    started = time.monotonic()
    assert read_until_closed(sock) == b"", "nothing was asked: no answer, just a close"
    assert HEADER_TIMEOUT_S - 0.2 < time.monotonic() - started < HEADER_TIMEOUT_S + SLACK_S


def test_slow_headers_get_408_and_close(server, still_serving):
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
    sock.settimeout(0.3)
    raw = b""
    for _ in range(20):  # a header byte every 0.3 s, far longer than the header timeout
        try:
            sock.sendall(b"X")
            raw = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        break
    sock.settimeout(5)
    raw += read_until_closed(sock)
    assert time.monotonic() - started < HEADER_TIMEOUT_S + SLACK_S
    assert_error(raw, 408, "request_timeout")


def test_header_timeout_restarts_for_the_next_request(server, still_serving):
    sock = connect(server)
    time.sleep(HEADER_TIMEOUT_S * 0.7)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    time.sleep(HEADER_TIMEOUT_S * 0.7)  # the first request's timer must not carry over
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    raw = read_until_closed(sock)
    assert HEADER_TIMEOUT_S - 0.2 < time.monotonic() - started < HEADER_TIMEOUT_S + SLACK_S
    assert_error(raw, 408, "request_timeout")


def test_slow_body_gets_408_at_the_deadline(server, still_serving):
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(post_head(V1, 1000, "application/x-www-form-urlencoded") + b"b64=")
    sock.settimeout(BODY_IDLE_TIMEOUT_S / 4)
    raw = b""
    while time.monotonic() - started < BODY_TIMEOUT_S + SLACK_S:
        try:
            sock.sendall(b"A")  # never idle for long, but never done
            raw = sock.recv(65536)
            break
        except TimeoutError:
            continue
    sock.settimeout(5)
    raw += read_until_closed(sock)
    assert BODY_TIMEOUT_S - 0.2 < time.monotonic() - started < BODY_TIMEOUT_S + SLACK_S
    assert_error(raw, 408, "request_timeout")


def hold_back(server: LocalServer, index: int) -> socket.socket:
    """A body of HOLDER_BYTES sent but for its last HOLD_BACK bytes (v2 JSON or v1 form)."""
    path, kind, prefix = (
        (V1, "application/x-www-form-urlencoded", b"b64=")
        if index % 2
        else (V2, "application/json", b'{"image_b64": "')
    )
    sock = connect(server)
    sock.sendall(post_head(path, HOLDER_BYTES, kind) + prefix)
    sock.sendall(b"A" * (HOLDER_BYTES - len(prefix) - HOLD_BACK))
    return sock


def test_held_back_bodies_are_bounded_evicted_timed_out_and_freed(server, image_b64):
    """Ten 19 MiB bodies fill the in-flight budget. While they still trickle, others get 503
    before sending their bodies; once they stall, a normal request evicts one; all get 408
    by the idle timeout, and the memory comes back."""
    for _ in range(10):
        assert predict(server, image_b64).status_code == 200
    time.sleep(0.5)
    baseline = server.rss_mb()

    holders: list[socket.socket] = []
    trickling = threading.Event()
    trickling.set()

    def trickle() -> None:
        while trickling.is_set():
            for sock in list(holders):
                sock.sendall(b"A")
            time.sleep(0.25)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        for i in range(IN_FLIGHT // HOLDER_BYTES):
            holders.append(hold_back(server, i))
        time.sleep(0.3)
        held_mb = server.rss_mb() - baseline

        refused = connect(server)
        started = time.monotonic()
        refused.sendall(post_head(V1, MIB, "application/x-www-form-urlencoded"))
        headers = assert_error(read_until_closed(refused), 503, "service_busy")
        # Refused before its body is read, after at most STALLED_S of looking for stalled ones.
        assert time.monotonic() - started < STALLED_S + SLACK_S
        assert int(headers["retry-after"]) >= 1
    finally:
        trickling.clear()
        trickler.join()
    stalled_at = time.monotonic()

    time.sleep(STALLED_S + 0.3)
    assert predict(server, image_b64).status_code == 200, "a stalled body made room"
    messages = [parse(read_until_closed(sock))[2]["error"] for sock in holders]
    assert time.monotonic() - stalled_at < BODY_IDLE_TIMEOUT_S + SLACK_S
    assert {m["code"] for m in messages} == {"request_timeout"}
    assert sum("stalled" in m["message"] for m in messages) == 1, messages
    time.sleep(1.5)
    after = server.rss_mb()
    assert held_mb > 150, "the bodies were buffered while held"
    assert after - baseline < RSS_TOLERANCE_MB, (baseline, held_mb, after)
    assert predict(server, image_b64).status_code == 200


def test_urllib_reads_the_early_413(server, still_serving):
    """urllib sends the whole body before reading: without a lingering close it gets a reset."""
    request = urllib.request.Request(
        f"{server.url}{V1}",
        data=b"b64=" + b"A" * (25 * MIB),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 413
    assert json.loads(raised.value.read())["error"]["code"] == "payload_too_large"


def access_log_clients(server: LocalServer, path: str) -> list[str]:
    return [
        line.split()[1].rsplit(":", 1)[0]
        for line in server.log().splitlines()
        if f'"GET {path} HTTP/1.1"' in line
    ]


@pytest.mark.parametrize("name", ["guarded", "proxied"])
def test_forwarded_for_is_believed_only_from_trusted_proxies(servers, name):
    server = servers[name]
    path = f"/healthz?{name}"
    httpx.get(f"{server.url}{path}", headers={"X-Forwarded-For": SPOOFED})
    time.sleep(0.2)
    expected = SPOOFED if name == "proxied" else "127.0.0.1"
    assert access_log_clients(server, path) == [expected]
