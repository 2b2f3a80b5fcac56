"""`aistack serve --workers N`: one process against two on the same port, alternating.

    .venv/bin/python -m benchmarks.serve_workers --rounds 3

One process's request threads share one interpreter lock; worker processes do not wait for
each other, at the price of a model and its memory each. Each run starts a new server
(auth on, request budget lifted) and, once every worker has answered, sends the 2020 load
(8 clients, every image ``--passes`` times); server CPU is the supervisor's and its
workers', from ``/proc``. Prints a line per run and the medians, as ratios to one worker.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from aistack.bench import list_images, run_benchmark, summarize
from aistack.bench.local_server import start_local_server

ENDPOINT = "v1-heatmap"


def measure(workers: int, images: list[Path], clients: int) -> tuple[float, float]:
    """(images/s, server CPU ms per image) of one run."""
    env = {"AISTACK_WORKERS": str(workers), "AISTACK_RATE_LIMIT": ""}
    with tempfile.TemporaryDirectory() as var_dir:
        server = start_local_server(Path(var_dir), env)
        try:
            for _ in range(2 * workers):  # each worker loaded and warm before the clock
                run_benchmark(server.url, images[:8], clients, ENDPOINT, api_key=server.api_key)
            before = server.cpu_s()
            run = run_benchmark(server.url, images, clients, ENDPOINT, api_key=server.api_key)
            served = server.cpu_s() - before
        finally:
            server.stop()
    summary = summarize(run)
    if summary["errors"]:
        raise SystemExit(f"{workers} workers: errors {summary['errors_by_status']}")
    return summary["throughput_images_per_s"], served / summary["requests"] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=3, help="times each run sends the folder")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    images = list_images(args.images) * args.passes
    results: dict[int, list[tuple[float, float]]] = {n: [] for n in args.workers}
    for round_index in range(args.rounds):
        order = args.workers if round_index % 2 == 0 else args.workers[::-1]
        for workers in order:
            rate, cpu_ms = measure(workers, images, args.clients)
            results[workers].append((rate, cpu_ms))
            print(f"{workers} worker(s): {rate:6.1f} images/s  {cpu_ms:5.1f} server CPU ms/image")
    base = statistics.median(rate for rate, _ in results[args.workers[0]])
    for workers, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu_ms = statistics.median(c for _, c in runs)
        print(
            f"{workers} worker(s) median {rate:6.1f} images/s (ratio {rate / base:.3f}), "
            f"{cpu_ms:5.1f} server CPU ms/image"
        )


if __name__ == "__main__":
    main()
