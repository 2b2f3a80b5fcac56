"""What the load generator itself costs: the same 8-client v1 load sent with httpx and aiohttp.

    .venv/bin/python -m benchmarks.load_generator --rounds 3

The generator shares the two cores with the server it measures, so every millisecond it
spends per request is taken from the server. One served process answers both generators,
alternately, with the same bodies, encoded before the first request as ``aistack bench``
does; this process's own CPU time (RUSAGE_SELF: the server is a child process) is the
generator's cost, encoding included. Prints one line per run and the
ratios aiohttp / httpx over all rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

import httpx

from aistack.bench import list_images, run_benchmark, summarize
from aistack.bench.client import encode_body, endpoint_url
from aistack.bench.local_server import start_local_server

ENDPOINT = "v1-heatmap"


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def send_with_httpx(url: str, images: list[Path], clients: int, api_key: str | None) -> int:
    """The generator as it was before aiohttp: httpx.AsyncClient, one task per client."""
    target = endpoint_url(url, ENDPOINT)
    bodies = [encode_body(ENDPOINT, path.read_bytes()) for path in images]  # as run_benchmark
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    ok = 0

    async def run() -> None:
        nonlocal ok
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(timeout=60, limits=limits, headers=headers) as http:

            async def one_client() -> None:
                nonlocal ok
                for content, content_type in bodies:
                    answer = await http.post(
                        target, content=content, headers={"Content-Type": content_type}
                    )
                    ok += answer.is_success

            await asyncio.gather(*(one_client() for _ in range(clients)))

    asyncio.run(run())
    return ok


def send_with_aiohttp(url: str, images: list[Path], clients: int, api_key: str | None) -> int:
    """The generator `aistack bench` uses."""
    return summarize(run_benchmark(url, images, clients, ENDPOINT, api_key=api_key))["ok"]


GENERATORS = {"httpx": send_with_httpx, "aiohttp": send_with_aiohttp}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=3, help="times each run sends the folder")
    args = parser.parse_args()
    images = list_images(args.images) * args.passes
    totals = {name: [0.0, 0.0, 0.0, 0] for name in GENERATORS}  # client s, server s, wall, n
    with tempfile.TemporaryDirectory() as var_dir:
        server = start_local_server(Path(var_dir), {"AISTACK_RATE_LIMIT": "10000/second"})
        try:
            send_with_aiohttp(server.url, images[:16], args.clients, server.api_key)  # warm
            for round_index in range(args.rounds):
                for name, send in GENERATORS.items():
                    client0, server0, wall0 = own_cpu_s(), server.cpu_s(), time.perf_counter()
                    ok = send(server.url, images, args.clients, server.api_key)
                    wall = time.perf_counter() - wall0
                    client = own_cpu_s() - client0
                    served = server.cpu_s() - server0
                    sent = args.clients * len(images)
                    if ok != sent:
                        raise SystemExit(f"{name}: {sent - ok} of {sent} requests failed")
                    for i, value in enumerate((client, served, wall, sent)):
                        totals[name][i] += value
                    print(
                        f"round {round_index + 1} {name:8s} {sent / wall:6.1f} images/s  "
                        f"generator {1000 * client / sent:5.2f} ms/request  "
                        f"server {1000 * served / sent:5.2f} ms/request"
                    )
        finally:
            server.stop()
    per = {name: [v / t[3] for v in t[:3]] for name, t in totals.items()}
    print(
        f"aiohttp / httpx: generator CPU {per['aiohttp'][0] / per['httpx'][0]:.2f}x, "
        f"server CPU {per['aiohttp'][1] / per['httpx'][1]:.2f}x, "
        f"throughput {per['httpx'][2] / per['aiohttp'][2]:.2f}x"
    )


if __name__ == "__main__":
    main()
