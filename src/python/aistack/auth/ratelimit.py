"""Per-client request budgets (the ``limits`` library), answered with 429 and Retry-After."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string


class RateLimiter:
    """``spec`` such as ``"100/second"`` or ``"100/second;2000/minute"``; empty: no limit.

    The storage is in memory by default; ``storage_uri`` (e.g. ``async+redis://host``) lets
    replicas share budgets. It is the asyncio flavour: the threaded in-memory storage starts
    a timer thread on nearly every request to expire counters, and starting a thread waits
    for the interpreter lock on the event loop (benchmarks/rate_limiter.py).
    """

    def __init__(self, spec: str, storage_uri: str = "async+memory://") -> None:
        self.items: list[RateLimitItem] = parse_many(spec) if spec.strip() else []
        self._limiter = SlidingWindowCounterRateLimiter(storage_from_string(storage_uri))

    async def retry_after(self, client: str) -> int | None:
        """Spend one request of ``client``'s budget; seconds to wait when it is spent."""
        for item in self.items:
            if not await self._limiter.hit(item, client):
                reset_at = (await self._limiter.get_window_stats(item, client)).reset_time
                return max(1, math.ceil(reset_at - time.time()))
        return None
