"""Overload: at a multiple of the sustainable rate, are rejections fast and is service kept?

    .venv/bin/python benchmarks/overload.py --images ../shared/data/xray/test --factor 4

1. Sustainable load: the usual closed loop (8 clients, every test image) gives throughput
   T and the latency percentiles of a busy but not overloaded service.
2. Unloaded: 1 client, for the idle latency.
3. Overload: an open loop sends v1 heatmap requests at ``factor`` x T for ``--seconds``,
   whatever the answers, as independent users would. Reported: the p99 latency of the
   503 rejections and the p95 of the accepted requests, against steps 1 and 2.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from aistack.bench import list_images, run_benchmark, summarize
from aistack.bench.client import encode_body, endpoint_url
from aistack.bench.local_server import start_local_server

ENDPOINT = "v1-heatmap"


async def open_loop(
    url: str, bodies: list[tuple[bytes, str]], rate: float, seconds: float, headers: dict
) -> list[tuple[int, float]]:
    """(status, latency s) of requests started every 1/rate s, none waiting for another."""
    target = endpoint_url(url, ENDPOINT)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    results: list[tuple[int, float]] = []
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=headers) as http:

        async def one(index: int) -> None:
            content, kind = bodies[index % len(bodies)]
            started = time.perf_counter()
            try:
                response = await http.post(target, content=content, headers={"Content-Type": kind})
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            results.append((status, time.perf_counter() - started))

        tasks = []
        t0 = time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = t0 + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
    return results


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    images = list_images(args.images)
    bodies = [encode_body(ENDPOINT, p.read_bytes()) for p in images]
    with tempfile.TemporaryDirectory() as var_dir:
        server = start_local_server(Path(var_dir), {"AISTACK_RATE_LIMIT": ""})
        try:
            run_benchmark(server.url, images[:4], 2, ENDPOINT, api_key=server.api_key)  # warm
            busy = summarize(run_benchmark(server.url, images, 8, ENDPOINT, api_key=server.api_key))
            idle = summarize(run_benchmark(server.url, images, 1, ENDPOINT, api_key=server.api_key))
            rate = busy["throughput_images_per_s"] * args.factor
            rss_before = server.rss_mb()
            results = asyncio.run(open_loop(server.url, bodies, rate, args.seconds, server.headers))
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
    print(f"  accepted throughput {len(accepted) / args.seconds:.1f} img/s")
    print(f"  server RSS before the overload {rss_before:.0f} MB, peak {rss_peak:.0f} MB")


if __name__ == "__main__":
    main()
