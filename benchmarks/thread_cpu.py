"""Where a loaded server's CPU goes, per thread: event loop, worker threads, TensorFlow's pool.

    .venv/bin/python benchmarks/thread_cpu.py --images ../shared/data/xray/test --rounds 3

Reads each thread's CPU time (``/proc/<pid>/task/*/stat``) before and after ``--rounds``
runs of the v1 heatmap load (8 clients x every image) and prints CPU ms per image by
thread name; the main thread is the event loop. The load generator's own CPU is printed too.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from aistack.bench import list_images, run_benchmark, summarize
from aistack.bench.local_server import start_local_server

ENDPOINT = "v1-heatmap"


def thread_cpu_s(pid: int) -> dict[str, tuple[str, float]]:
    """Thread id -> (name, CPU seconds); the main thread is named ``event loop``."""
    tick = os.sysconf("SC_CLK_TCK")
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:  # ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        name = "event loop" if tid == str(pid) else name
        threads[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    images = list_images(args.images)
    with tempfile.TemporaryDirectory() as var_dir:
        server = start_local_server(Path(var_dir), {"AISTACK_RATE_LIMIT": ""})
        try:
            run_benchmark(server.url, images[:4], 2, ENDPOINT, api_key=server.api_key)  # warm
            before, client_before = thread_cpu_s(server.pid), time.process_time()
            started, requests = time.monotonic(), 0
            for _ in range(args.rounds):
                run = run_benchmark(server.url, images, 8, ENDPOINT, api_key=server.api_key)
                requests += summarize(run)["requests"]
            wall = time.monotonic() - started
            after, client_cpu = thread_cpu_s(server.pid), time.process_time() - client_before
        finally:
            server.stop()
    by_name: Counter[str] = Counter()
    for tid, (name, cpu) in after.items():
        by_name[name] += cpu - before.get(tid, (name, 0.0))[1]
    print(f"{requests} requests, {requests / wall:.1f} images/s")
    print(f"server CPU {sum(by_name.values()) * 1000 / requests:.1f} ms/image:")
    for name, cpu in by_name.most_common():
        if cpu > 0:
            print(f"  {name:<22}{cpu * 1000 / requests:6.2f} ms/image")
    print(f"load generator {client_cpu * 1000 / requests:.1f} ms/image")


if __name__ == "__main__":
    main()
