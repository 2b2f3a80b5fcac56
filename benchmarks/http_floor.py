"""What HTTP alone costs here: the 2020 load against an app that only reads the body.

    .venv/bin/python -m benchmarks.http_floor --images ../shared/data/xray/test --rounds 3

Serves :data:`app` (a bare ASGI app: read the whole body, answer a v1-sized JSON) with
uvicorn on httptools and uvloop, as ``aistack serve`` runs, then sends it the v1 heatmap
load (8 clients, every test image as a url-encoded ``b64`` form) and prints the server's
and the load generator's CPU per request. No framework, no parsing, no threads: the floor
under which no Python HTTP service on this machine goes, beside what the service costs
beyond its own work (``benchmarks/cpu_budget.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from aistack.bench import list_images, run_benchmark, summarize
from aistack.bench.local_server import free_port

ENDPOINT = "v1-heatmap"
ROOT = Path(__file__).resolve().parents[1]
ANSWER = json.dumps(
    {
        "X-Ray_Classification_Covid19_Probability": 0.12,
        "X-Ray_Classification_Result": "Covid-19 NEGATIVE",
        "Input_Image": "http://127.0.0.1:8088/static/source/" + "0" * 32 + ".jpg",
        "Output_Heatmap": "http://127.0.0.1:8088/static/result/" + "0" * 32 + ".jpg",
        "model_version": 1,
    }
).encode()


async def app(scope: dict, receive, send) -> None:
    """Read the request body to its end and answer 200 with :data:`ANSWER`."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    images = list_images(args.images)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "benchmarks.http_floor:app", "--port", str(port)]
    command += ["--http", "httptools", "--loop", "uvloop", "--no-access-log", "--lifespan", "off"]
    server = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        run_benchmark(url, images[:4], 2, ENDPOINT)  # warm
        server_before, client_before = cpu_s(server.pid), time.process_time()
        started, requests = time.monotonic(), 0
        for _ in range(args.rounds):
            requests += summarize(run_benchmark(url, images, 8, ENDPOINT))["requests"]
        wall = time.monotonic() - started
        server_ms = (cpu_s(server.pid) - server_before) / requests * 1000
        client_ms = (time.process_time() - client_before) / requests * 1000
    finally:
        server.terminate()
        server.wait(10)
    print(f"{requests} requests, {requests / wall:.0f} requests/s")
    print(f"bare ASGI app on uvicorn: server CPU {server_ms:.2f} ms/request")
    print(f"load generator: {client_ms:.2f} ms/request")


if __name__ == "__main__":
    main()
