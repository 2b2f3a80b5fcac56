"""Benchmark client, report and plot; the end-to-end runs hit a local fake model server."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import pytest
from rich.console import Console

from aistack.bench import (
    BenchmarkRun,
    RequestResult,
    bench_command,
    format_text,
    run_benchmark,
    summarize,
    write_json,
)
from aistack.bench.client import encode_body
from aistack.bench.plot import plot_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), computed by hand."""
    ordered = sorted(values)
    rank = p / 100 * (len(ordered) - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def hand_built_run() -> BenchmarkRun:
    latencies = [0.120, 0.340, 0.095, 0.410, 0.250, 0.180, 0.600, 0.220, 0.310, 0.150, 0.275]
    results = [
        RequestResult(i % 3, f"img{i}.png", 0.05 * i, lat, 200) for i, lat in enumerate(latencies)
    ]
    results += [
        RequestResult(0, "a.png", 0.2, 0.010, 503, "Service Unavailable"),
        RequestResult(1, "b.png", 0.3, 0.012, 503, "Service Unavailable"),
        RequestResult(2, "c.png", 0.4, 0.005, 404, "Not Found"),
        RequestResult(1, "d.png", 0.1, 1.500, 0, "ReadTimeout"),
    ]
    names = tuple(sorted({r.image for r in results}))
    return BenchmarkRun("http://x", "v1-heatmap", 3, names, datetime.now(UTC), tuple(results))


def test_summarize_counts_and_percentiles() -> None:
    run = hand_built_run()
    summary = summarize(run)
    ok_ms = [r.latency_s * 1000 for r in run.results if r.status == 200]
    wall = max(r.start_s + r.latency_s for r in run.results) - min(r.start_s for r in run.results)

    assert summary["requests"] == len(run.results)
    assert summary["ok"] == len(ok_ms)
    assert summary["errors_by_status"] == {"503": 2, "404": 1, "connection_error": 1}
    assert summary["errors_by_reason"] == {"ReadTimeout": 1}
    assert summary["wall_seconds"] == pytest.approx(wall)
    assert summary["throughput_images_per_s"] == pytest.approx(len(ok_ms) / wall)
    lat = summary["latency_ms"]
    for p in (50, 95, 99):
        assert lat[f"p{p}"] == pytest.approx(percentile(ok_ms, p))
    assert lat["mean"] == pytest.approx(sum(ok_ms) / len(ok_ms))
    assert lat["max"] == pytest.approx(max(ok_ms))
    text = format_text(summary)
    assert "503: 2" in text
    assert "images/s" in text


def test_summarize_without_successes() -> None:
    run = BenchmarkRun(
        "http://x",
        "v2",
        1,
        ("a.png",),
        datetime.now(UTC),
        (RequestResult(0, "a.png", 0.0, 0.01, 0, "ConnectError"),),
    )
    summary = summarize(run)
    assert summary["ok"] == 0
    assert summary["throughput_images_per_s"] == 0
    assert summary["latency_ms"]["p50"] is None
    assert "p50 -" in format_text(summary)


def test_write_json(tmp_path: Path) -> None:
    run = hand_built_run()
    summary = summarize(run)
    path = tmp_path / "out" / "bench.json"
    write_json(summary, run, path)
    data = json.loads(path.read_text())
    assert data["summary"] == summary
    assert len(data["requests"]) == len(run.results)
    assert {row["status"] for row in data["requests"]} == {200, 503, 404, 0}
    first = data["requests"][0]
    assert set(first) == {"client", "image", "start_s", "latency_s", "status", "reason"}


def test_plot_is_a_png(tmp_path: Path) -> None:
    run = hand_built_run()
    path = tmp_path / "plots" / "bench.png"
    plot_run(run, summarize(run), path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that timed out hangs up mid-answer; that is expected, not news."""


class FakeModelServer:
    """Test double of a remote model endpoint: checks the v1 form, refuses every 5th request."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.count = 0
        self.delay_s = 0.0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with fake.lock:
                    fake.count += 1
                    refuse = fake.count % 5 == 0
                if self.headers["Content-Type"] == "application/x-www-form-urlencoded":
                    b64 = parse_qs(body.decode("ascii"))["b64"][0]
                else:
                    b64 = json.loads(body)["image_b64"]
                with fake.lock:
                    fake.received.append((self.path, base64.b64decode(b64, validate=True)))
                time.sleep(fake.delay_s)
                status = 503 if refuse else 200
                payload = json.dumps({"ok": not refuse}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def fake_server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4000, 4001, 4002])
def test_a_v1_body_is_what_urlencode_would_send(size: int) -> None:
    data = os.urandom(size)
    content, content_type = encode_body("v1-heatmap", data)
    assert content == urlencode({"b64": base64.b64encode(data).decode()}).encode()
    assert content_type == "application/x-www-form-urlencoded"


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    paths = [folder / "a.jpg", folder / "sub" / "b.png", folder / "c.JPEG"]
    for path in paths:
        # Random bytes produce base64 with '+', '/' and '=' that the form must escape.
        path.write_bytes(os.urandom(3000 + len(path.name)))
    (folder / "notes.txt").write_text("not an image")
    return sorted(paths)


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [("v1-heatmap", "/covid19/api/v1/predict/heatmap"), ("v2", "/api/v2/xray/predictions")],
)
def test_run_benchmark_end_to_end(
    fake_server: FakeModelServer, images: list[Path], endpoint: str, path: str
) -> None:
    clients = 4
    seen: list[RequestResult] = []
    run = run_benchmark(
        fake_server.url, images, clients, endpoint, timeout_s=10, on_result=seen.append
    )
    total = clients * len(images)
    summary = summarize(run)

    assert summary["requests"] == total == len(seen) == fake_server.count
    assert summary["errors_by_status"] == {"503": total // 5}
    assert summary["ok"] == total - total // 5
    assert Counter(r.client for r in run.results) == dict.fromkeys(range(clients), len(images))
    assert {p for p, _ in fake_server.received} == {path}
    sent = Counter(p.read_bytes() for p in images * clients)
    assert Counter(data for _, data in fake_server.received) == sent


def test_unreachable_server_counts_connection_errors(images: list[Path]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the run: nothing listens
    run = run_benchmark(f"http://127.0.0.1:{port}", images, 2, "v1-predict", timeout_s=5)
    summary = summarize(run)
    assert summary["requests"] == 2 * len(images)
    assert summary["errors_by_status"] == {"connection_error": 2 * len(images)}
    assert summary["errors_by_reason"] == {"ConnectError": 2 * len(images)}


def test_slow_answer_is_a_timeout(fake_server: FakeModelServer, images: list[Path]) -> None:
    fake_server.delay_s = 0.5
    run = run_benchmark(fake_server.url, images[:1], 1, "v1-heatmap", timeout_s=0.1)
    (result,) = run.results
    assert result.status == 0
    assert result.reason in {"ReadTimeout", "TimeoutError"}
    assert result.latency_s < 0.4


def test_bench_command(fake_server: FakeModelServer, images: list[Path], tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=100)
    summary = bench_command(
        fake_server.url,
        images[0].parent,
        2,
        "v1-heatmap",
        tmp_path / "b.json",
        tmp_path / "b.png",
        console,
    )
    assert summary["requests"] == 2 * len(images)
    assert "throughput" in out.getvalue()
    assert json.loads((tmp_path / "b.json").read_text())["summary"] == summary
    assert (tmp_path / "b.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(FileNotFoundError):
        bench_command(fake_server.url, tmp_path / "empty", 2, "v1-heatmap", None, None, console)
    with pytest.raises(ValueError, match="unknown endpoint"):
        bench_command(fake_server.url, images[0].parent, 2, "v3", None, None, console)
