"""Slow clients against a local `aistack serve` (auth off): do normal requests still pass,
does the server close the slow connections by itself, and does its memory come back?

    .venv/bin/python benchmarks/slow_clients.py --images ../shared/data/xray/test --out var/bench

Phases: warm-up (``--warmup`` predictions: model, allocator pools and lazy imports settle),
a quiet run of ``--requests`` predictions, then the baseline RSS after 1 s idle. Then
``--slow`` slow connections are opened (silent ones, ones sending a header byte every
``--dribble-s``, and ones sending a form body of 0.3-19 MB all but its last byte) and the
same predictions run while they are open. The slow connections stay open for ``--hold-s``
from the start of the attack (longer than the default header and body-idle timeouts) unless
the server closes them first; then the client closes what is left. RSS is read after
``--settle-s``, and again after the warm-up is repeated: that last figure is compared with
the baseline (target: within 10 %). Writes ``<out>/slow_clients.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from aistack.bench.command import list_images
from aistack.bench.local_server import LocalServer, start_local_server

V1 = "/covid19/api/v1/predict/"
MB = 1_000_000
BODY_SIZES_MB = (0.3, 0.6, 1.2, 2.5, 5, 10, 19)
FILLER = memoryview(b"A" * (max(BODY_SIZES_MB) * MB))


@dataclass
class SlowConnection:
    kind: str  # silent | slow-headers | held-body
    body_bytes: int = 0
    server_closed_after_s: float | None = None
    status: int | None = None
    error: str | None = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def plan(count: int) -> list[SlowConnection]:
    """A quarter silent, a quarter slow headers, half held bodies, interleaved."""
    kinds = ("silent", "held-body", "slow-headers", "held-body")
    slow = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        size = int(BODY_SIZES_MB[(i // 2) % len(BODY_SIZES_MB)] * MB) if kind == "held-body" else 0
        slow.append(SlowConnection(kind, size))
    return slow


def hold(
    conn: SlowConnection,
    address: tuple[str, int],
    opened: threading.Event,
    stop: threading.Event,
    dribble_s: float,
) -> None:
    """Play one slow client until the server closes the connection or ``stop`` is set."""
    started = time.monotonic()
    response = b""
    closed = False
    try:
        sock = socket.create_connection(address, timeout=30)
    except OSError as error:
        conn.error = type(error).__name__
        opened.set()
        return
    try:
        if conn.kind == "slow-headers":
            sock.sendall(f"POST {V1} HTTP/1.1\r\nHost: bench\r\n".encode())
        elif conn.kind == "held-body":
            sock.sendall(
                f"POST {V1} HTTP/1.1\r\nHost: bench\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {conn.body_bytes}\r\n\r\nb64=".encode()
            )
            sock.sendall(FILLER[: conn.body_bytes - 5])
        opened.set()
        sock.settimeout(dribble_s if conn.kind == "slow-headers" else 0.2)
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if conn.kind == "slow-headers":
                    sock.sendall(b"X")
                continue
            if not data:
                closed = True
                break
            response += data
    except OSError as error:  # a reset or broken pipe: the server closed it
        conn.error = type(error).__name__
        closed = True
    finally:
        opened.set()
        sock.close()
    if response.startswith(b"HTTP/1.1 "):
        conn.status = int(response.split()[1])
    if closed:
        conn.server_closed_after_s = round(time.monotonic() - started, 2)


def predictions(
    server: LocalServer, bodies: list[str], count: int, concurrency: int
) -> dict[str, float]:
    """``count`` v1 predictions from ``concurrency`` clients; latency in ms and errors."""

    def one(i: int) -> tuple[float, int]:
        started = time.perf_counter()
        try:
            status = httpx.post(
                f"{server.url}{V1}", data={"b64": bodies[i % len(bodies)]}, timeout=60
            ).status_code
        except httpx.HTTPError:
            status = 0
        return (time.perf_counter() - started) * 1000, status

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(count)))
    latencies = [ms for ms, _ in results]
    return {
        "requests": count,
        "errors": sum(status != 200 for _, status in results),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "max_ms": round(max(latencies), 1),
    }


def settled_rss(server: LocalServer, idle_s: float = 1.0) -> float:
    time.sleep(idle_s)
    return round(server.rss_mb(), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    parser.add_argument("--slow", type=int, default=200, help="slow connections")
    parser.add_argument("--requests", type=int, default=100, help="normal predictions per run")
    parser.add_argument("--concurrency", type=int, default=2, help="normal clients at once")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--dribble-s", type=float, default=2.0, help="slow-header byte pace")
    parser.add_argument("--hold-s", type=float, default=25.0, help="slow connections' lifetime")
    parser.add_argument("--settle-s", type=float, default=2.0)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bodies = [base64.b64encode(p.read_bytes()).decode() for p in list_images(args.images)[:20]]
    env = {"AISTACK_AUTH": "off", **dict(item.split("=", 1) for item in args.env)}

    with tempfile.TemporaryDirectory() as var_dir:
        server = start_local_server(Path(var_dir), env)
        try:
            result = attack(server, bodies, args)
        finally:
            server.stop()
            (args.out / "slow_clients-server.log").write_text(server.log())
    result["server_env"] = env
    (args.out / "slow_clients.json").write_text(json.dumps(result, indent=2))
    report(result)


def attack(server: LocalServer, bodies: list[str], args: argparse.Namespace) -> dict:
    predictions(server, bodies, args.warmup, args.concurrency)
    quiet = predictions(server, bodies, args.requests, args.concurrency)
    baseline = settled_rss(server)

    host, port = server.url.removeprefix("http://").split(":")
    slow = plan(args.slow)
    stop = threading.Event()
    opened = [threading.Event() for _ in slow]
    threads = [
        threading.Thread(
            target=hold, args=(c, (host, int(port)), o, stop, args.dribble_s), daemon=True
        )
        for c, o in zip(slow, opened, strict=True)
    ]
    attack_started = time.monotonic()
    for thread in threads:
        thread.start()
    for event in opened:
        event.wait(60)
    open_s = time.monotonic() - attack_started

    rss_samples: list[float] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.2):
            rss_samples.append(server.rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    loaded = predictions(server, bodies, args.requests, args.concurrency)
    time.sleep(max(0.0, args.hold_s - (time.monotonic() - attack_started)))
    sampling.set()
    stop.set()
    for thread in threads:
        thread.join(10)

    after_close = settled_rss(server, args.settle_s)
    predictions(server, bodies, args.warmup, args.concurrency)
    after_warmup = settled_rss(server)
    return {
        "slow_connections": len(slow),
        "slow_opened_in_s": round(open_s, 2),
        "hold_s": args.hold_s,
        "normal_quiet": quiet,
        "normal_under_attack": loaded,
        "rss_mb": {
            "baseline": baseline,
            "max_during_attack": round(max(rss_samples, default=float("nan")), 1),
            "after_close": after_close,
            "after_close_and_warmup": after_warmup,
            "change_percent": round(100 * (after_warmup - baseline) / baseline, 1),
        },
        "by_kind": by_kind(slow),
        "connections": [asdict(c) for c in slow],
    }


def by_kind(slow: list[SlowConnection]) -> dict[str, dict]:
    kinds: dict[str, dict] = {}
    for kind in sorted({c.kind for c in slow}):
        group = [c for c in slow if c.kind == kind]
        closed = [c.server_closed_after_s for c in group if c.server_closed_after_s is not None]
        statuses: dict[str, int] = {}
        for c in group:
            key = str(c.status or c.error or "none")
            statuses[key] = statuses.get(key, 0) + 1
        kinds[kind] = {
            "count": len(group),
            "closed_by_server": len(closed),
            "median_close_s": round(statistics.median(closed), 2) if closed else None,
            "max_close_s": max(closed, default=None),
            "answers": statuses,
        }
    return kinds


def report(result: dict) -> None:
    print(f"{'normal predictions':<22}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}")
    for name in ("normal_quiet", "normal_under_attack"):
        r = result[name]
        label = name.removeprefix("normal_").replace("_", " ")
        print(f"{label:<22}{r['requests']:>9}{r['errors']:>8}{r['p50_ms']:>9}{r['p95_ms']:>9}")
    print()
    print(f"{'slow connections':<22}{'count':>9}{'closed':>8}{'median s':>9}{'max s':>9}  answers")
    for kind, k in result["by_kind"].items():
        print(
            f"{kind:<22}{k['count']:>9}{k['closed_by_server']:>8}{k['median_close_s']!s:>9}"
            f"{k['max_close_s']!s:>9}  {k['answers']}"
        )
    rss = result["rss_mb"]
    print()
    print(
        f"RSS MB: baseline {rss['baseline']}, max during attack {rss['max_during_attack']}, "
        f"after close {rss['after_close']}, after close and warm-up "
        f"{rss['after_close_and_warmup']} ({rss['change_percent']:+} %)"
    )


if __name__ == "__main__":
    main()
