"""What spending a request's rate-limit budget costs, threaded versus asyncio ``limits`` storage.

    .venv/bin/python -m benchmarks.rate_limiter --calls 300

Requests arrive some milliseconds apart (``--gap-ms``, 15 by default: about 65 requests/s),
so the threaded in-memory storage finds its 10 ms expiry timer finished and starts a new
thread on nearly every hit; the asyncio storage schedules a task instead. Prints CPU and
wall microseconds per hit for each, measured around the hit alone, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter as ThreadedLimiter

from aistack.auth.ratelimit import RateLimiter

SPEC = "100/second"


def threaded(calls: int, gap_s: float) -> tuple[float, float]:
    """The limiter as it was: limits' synchronous strategy over ``memory://``."""
    (item,) = parse_many(SPEC)
    limiter = ThreadedLimiter(storage_from_string("memory://"))
    cpu = wall = 0.0
    for _ in range(calls):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        limiter.hit(item, "key")
        cpu, wall = cpu + time.process_time() - cpu0, wall + time.perf_counter() - wall0
        time.sleep(gap_s)
    return cpu / calls * 1e6, wall / calls * 1e6


async def on_the_loop(calls: int, gap_s: float) -> tuple[float, float]:
    """The service's RateLimiter (asyncio storage)."""
    limiter = RateLimiter(SPEC)
    cpu = wall = 0.0
    for _ in range(calls):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await limiter.retry_after("key")
        cpu, wall = cpu + time.process_time() - cpu0, wall + time.perf_counter() - wall0
        await asyncio.sleep(gap_s)
    return cpu / calls * 1e6, wall / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    gap_s = args.gap_ms / 1000
    for round_index in range(args.rounds):
        old = threaded(args.calls, gap_s)
        new = asyncio.run(on_the_loop(args.calls, gap_s))
        print(
            f"round {round_index + 1}: threaded {old[0]:6.1f} us CPU {old[1]:6.1f} us wall; "
            f"asyncio {new[0]:6.1f} us CPU {new[1]:6.1f} us wall; "
            f"CPU {new[0] / old[0]:.2f}x, wall {new[1] / old[1]:.2f}x"
        )


if __name__ == "__main__":
    main()
