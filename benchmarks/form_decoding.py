"""Reading the 2020 url-encoded ``b64`` form field: the service's parser against Starlette's.

    .venv/bin/python benchmarks/form_decoding.py --images ../shared/data/xray/test

Each test image is encoded as a 2020 client sends it (``requests``' ``data={'b64': ...}``);
prints the median CPU ms per body of ``api.inputs.parse_urlencoded`` and of Starlette's
form parser (python-multipart), which the service used before.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from starlette.requests import Request

from aistack.api.inputs import parse_urlencoded
from aistack.bench import list_images
from aistack.bench.client import FORM, encode_body
from aistack.config import Settings

MAX_BYTES = Settings().max_body_bytes


async def starlette_form(body: bytes) -> None:
    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", FORM.encode())]}
    await Request(scope, receive).form(max_part_size=MAX_BYTES)  # as the service asked it


def cpu_ms(function, bodies: list[bytes], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time()
        for body in bodies:
            function(body)
        times.append((time.process_time() - started) / len(bodies))
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    bodies = [encode_body("v1-heatmap", p.read_bytes())[0] for p in list_images(args.images)]
    mean_kb = sum(map(len, bodies)) / len(bodies) / 1024
    ours = cpu_ms(parse_urlencoded, bodies, args.repeats)
    loop = asyncio.new_event_loop()
    theirs = cpu_ms(lambda b: loop.run_until_complete(starlette_form(b)), bodies, args.repeats)
    print(f"{len(bodies)} bodies, mean {mean_kb:.0f} KB")
    print(f"parse_urlencoded  {ours:6.2f} ms/body")
    print(f"Starlette form    {theirs:6.2f} ms/body  ({theirs / ours:.1f}x)")


if __name__ == "__main__":
    main()
