"""Throughput and latency for 1, 2 and 3 replicas behind HAProxy, and HAProxy's own cost.

    .venv/bin/python benchmarks/replicas_curve.py --images ../shared/data/xray/test \
        --clients 8 --rounds 2

Each replica count runs as `aistack up` runs it (same template, same settings), in a fresh
VAR_DIR, with one warm-up run before the measured ones. HAProxy's own cost is measured
against the single replica directly and through HAProxy, alternated so that drift hits both
sides alike: with one client (the hop itself, no queueing) and under the benchmark load.
Rate limits are lifted (one key drives all the load). The load generator shares the cores
with the replicas, as in any single-host run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from aistack.bench import list_images, run_benchmark, summarize
from aistack.bench.local_server import create_key
from aistack.config import Settings
from aistack.topology.haproxy import STATS_PASSWORD_ENV, STATS_USER_ENV, find_haproxy
from aistack.topology.local import LocalTopology
from aistack.topology.replicas import free_port

ENDPOINT = "v1-heatmap"


def start(count: int, var_dir: Path, haproxy: Path) -> tuple[LocalTopology, str]:
    env = {
        **os.environ,
        "AISTACK_VAR_DIR": str(var_dir),
        "AISTACK_RATE_LIMIT": "",  # capacity, not policy
        STATS_USER_ENV: "bench",
        STATS_PASSWORD_ENV: "bench-only-secret",
    }
    settings = Settings(var_dir=var_dir, rate_limit="")
    topology = LocalTopology.plan(
        count,
        settings,
        haproxy,
        port=free_port(),
        stats_port=free_port(),
        env=env,
        haproxy_log=var_dir / "haproxy.log",
    )
    topology.start()
    return topology, create_key(settings.resolved_database_url, "bench", "admin")


def measure(url: str, images: list[Path], clients: int, key: str) -> dict[str, Any]:
    return summarize(run_benchmark(url, images, clients, ENDPOINT, api_key=key))


def combine(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over rounds: one slow round (a GC, a neighbour) does not set the figure."""
    return {
        "img_s": statistics.median(r["throughput_images_per_s"] for r in runs),
        "p50": statistics.median(r["latency_ms"]["p50"] for r in runs),
        "p95": statistics.median(r["latency_ms"]["p95"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="measured runs per setting")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    haproxy = find_haproxy()
    if haproxy is None:
        raise SystemExit("haproxy not found (apt-get install haproxy)")
    images = list_images(args.images)

    curve: dict[int, dict[str, float]] = {}
    hop: dict[str, dict[int, list[dict[str, Any]]]] = {"direct": {}, "haproxy": {}}
    for count in args.replicas:
        with tempfile.TemporaryDirectory() as var_dir:
            topology, key = start(count, Path(var_dir), haproxy)
            try:
                measure(topology.url, images, args.clients, key)  # warm-up
                runs = [
                    measure(topology.url, images, args.clients, key) for _ in range(args.rounds)
                ]
                curve[count] = combine(runs)
                if count == 1:
                    urls = {"direct": topology.replicas[0].url, "haproxy": topology.url}
                    for clients in (1, args.clients):
                        for side in ("direct", "haproxy") * args.rounds:
                            run = measure(urls[side], images, clients, key)
                            hop[side].setdefault(clients, []).append(run)
            finally:
                topology.stop()

    print(
        f"{args.clients} clients x {len(images)} images, {ENDPOINT}, {os.cpu_count()} cores, "
        f"median of {args.rounds} runs after a warm-up"
    )
    print(f"{'replicas':>8}{'img/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}")
    for count, row in curve.items():
        print(
            f"{count:>8}{row['img_s']:>8.1f}{row['p50']:>9.0f}{row['p95']:>9.0f}{row['errors']:>8}"
        )
    for clients, direct_runs in hop["direct"].items():
        d, p = combine(direct_runs), combine(hop["haproxy"][clients])
        print(f"HAProxy's cost, 1 replica, {clients} client(s), {args.rounds} alternated pairs:")
        print(f"  direct   {d['img_s']:.1f} img/s  p50 {d['p50']:.1f} ms  p95 {d['p95']:.1f} ms")
        print(f"  haproxy  {p['img_s']:.1f} img/s  p50 {p['p50']:.1f} ms  p95 {p['p95']:.1f} ms")
        print(
            f"  p50 {p['p50'] - d['p50']:+.1f} ms; throughput ratio {p['img_s'] / d['img_s']:.3f}"
        )


if __name__ == "__main__":
    main()
