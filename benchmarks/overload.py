"""Overload: at a multiple of the sustainable rate, are rejections fast and is service kept?

    .venv/bin/python benchmarks/overload.py --images ../shared/data/xray/test --factor 4
    .venv/bin/python benchmarks/overload.py --images ../shared/data/xray/test --via-haproxy

1. Sustainable load: the usual closed loop (8 clients, every test image) gives throughput
   T and the latency percentiles of a busy but not overloaded service.
2. Unloaded: 1 client, for the idle latency.
3. Overload: ``hey`` sends v1 heatmap requests (every test image alike) at ``factor`` x T
   for ``--seconds``, whatever the answers, as independent users would. Reported: the p99
   latency of the 503 rejections and the p95 of the accepted requests, against 1 and 2.

With ``--via-haproxy`` the same runs go through one replica behind HAProxy, as `aistack up`
starts it, so the front door's own admission is measured; CPU and memory then count the
replica and HAProxy together.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from replicas_curve import start as start_topology

from aistack.bench import list_images, run_benchmark, summarize
from aistack.bench.client import FORM, encode_body, endpoint_url
from aistack.bench.local_server import start_local_server
from aistack.topology.haproxy import find_haproxy

ENDPOINT = "v1-heatmap"
STREAMS = 54
"""hey processes of one worker each: twice the test images, so each image is sent alike."""


def open_loop(
    url: str, bodies: list[bytes], rate: float, seconds: float, headers: dict[str, str]
) -> list[tuple[int, float]]:
    """(status, latency s) of requests sent at ``rate``/s for ``seconds`` by ``hey``.

    A Go load generator (Debian's ``hey``) rather than Python: at several hundred uploads a
    second a Python client would need a core of its own, which a 2-core machine shared
    with the server cannot give. One hey worker's requests leave on a fixed tick, and the
    workers of one hey process tick together: many workers in one process send bursts,
    not a rate. So ``STREAMS`` processes of one worker each, started at even offsets
    within one tick, each on its own test image, together send a steady ``rate``.
    """
    hey = shutil.which("hey")
    if hey is None:
        raise SystemExit("needs Debian's hey (apt-get install hey)")
    per_stream = rate / STREAMS
    with tempfile.TemporaryDirectory() as folder:
        processes = []
        for index in range(STREAMS):
            body_file = Path(folder) / f"{index}.body"
            body_file.write_bytes(bodies[index % len(bodies)])
            command = [hey, "-z", f"{seconds}s", "-c", "1", "-q", f"{per_stream:.4f}", "-t", "60"]
            command += ["-m", "POST", "-D", str(body_file), "-T", FORM, "-o", "csv"]
            for name, value in headers.items():
                command += ["-H", f"{name}: {value}"]
            command.append(endpoint_url(url, ENDPOINT))
            processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
            time.sleep(1 / rate)  # the next stream ticks 1/rate later
        outputs = [process.communicate()[0] for process in processes]
    return [
        (int(row["status-code"]), float(row["response-time"]))
        for output in outputs
        for row in csv.DictReader(io.StringIO(output))
    ]


@dataclass
class Target:
    """Where the load goes, and the processes whose CPU and memory are counted."""

    url: str
    headers: dict[str, str]
    api_key: str
    pids: list[int]
    stop: Callable[[], None]

    def cpu_s(self) -> float:
        """CPU seconds used so far by every counted process, all threads."""
        total = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mb(self, peak: bool = False) -> float:
        """Resident memory now (VmRSS) or at its peak (VmHWM), summed, in MB."""
        key = "VmHWM:" if peak else "VmRSS:"
        total = 0.0
        for pid in self.pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key):
                    total += int(line.split()[1]) / 1024
        return total


def start_target(var_dir: Path, via_haproxy: bool) -> Target:
    if not via_haproxy:
        server = start_local_server(var_dir, {"AISTACK_RATE_LIMIT": ""})
        return Target(server.url, server.headers, server.api_key, [server.pid], server.stop)
    haproxy = find_haproxy()
    if haproxy is None:
        raise SystemExit("needs haproxy (apt-get install haproxy)")
    topology, key = start_topology(1, var_dir, haproxy)
    headers = {"Authorization": f"Bearer {key}"}
    return Target(topology.url, headers, key, topology.child_pids(), topology.stop)


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--via-haproxy", action="store_true", help="one replica behind HAProxy")
    args = parser.parse_args()
    images = list_images(args.images)
    bodies = [encode_body(ENDPOINT, p.read_bytes())[0] for p in images]
    with tempfile.TemporaryDirectory() as var_dir:
        server = start_target(Path(var_dir), args.via_haproxy)
        try:
            run_benchmark(server.url, images[:4], 2, ENDPOINT, api_key=server.api_key)  # warm
            busy = summarize(run_benchmark(server.url, images, 8, ENDPOINT, api_key=server.api_key))
            idle = summarize(run_benchmark(server.url, images, 1, ENDPOINT, api_key=server.api_key))
            rate = busy["throughput_images_per_s"] * args.factor
            rss_before = server.rss_mb()
            server_cpu, wall = server.cpu_s(), time.monotonic()
            client_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            results = open_loop(server.url, bodies, rate, args.seconds, server.headers)
            wall = time.monotonic() - wall
            server_cpu = (server.cpu_s() - server_cpu) / wall
            hey_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            client_cpu = (
                hey_cpu.ru_utime + hey_cpu.ru_stime - client_cpu.ru_utime - client_cpu.ru_stime
            ) / wall
            rss_peak = server.rss_mb(peak=True)
        finally:
            server.stop()
    accepted = [s for code, s in results if code == 200]
    refused = [s for code, s in results if code == 503]
    other = len(results) - len(accepted) - len(refused)
    print(
        f"sustainable (8 clients): {busy['throughput_images_per_s']:.1f} img/s, "
        f"p50 {busy['latency_ms']['p50']:.0f} ms, p95 {busy['latency_ms']['p95']:.0f} ms"
    )
    print(
        f"unloaded (1 client):     p50 {idle['latency_ms']['p50']:.0f} ms, "
        f"p95 {idle['latency_ms']['p95']:.0f} ms"
    )
    print(
        f"overload x{args.factor:g} ({rate:.0f} req/s for {args.seconds:g} s): "
        f"{len(accepted)} accepted, {len(refused)} refused (503), {other} other"
    )
    refused_p50, refused_p99 = percentile_ms(refused, 50), percentile_ms(refused, 99)
    print(f"  refused  p50 {refused_p50:.1f} ms  p99 {refused_p99:.1f} ms")
    print(
        f"  accepted p50 {percentile_ms(accepted, 50):.0f} ms"
        f"  p95 {percentile_ms(accepted, 95):.0f} ms"
        f"  = {percentile_ms(accepted, 95) / busy['latency_ms']['p95']:.2f} x the sustainable p95,"
        f" {percentile_ms(accepted, 95) / idle['latency_ms']['p95']:.2f} x the unloaded p95"
    )
    print(
        f"  accepted throughput {len(accepted) / wall:.1f} img/s over {wall:.1f} s; cores busy: "
        f"server {server_cpu:.2f}, load generator {client_cpu:.2f}"
    )
    print(f"  server RSS before the overload {rss_before:.0f} MB, peak {rss_peak:.0f} MB")


if __name__ == "__main__":
    main()
