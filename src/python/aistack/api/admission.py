"""A prediction's place is reserved when its request arrives, before the upload is read.

Reserved only after the upload, a place could be found taken by then: under overload a
third of the refusals came after the whole body had been read and parsed, and made the
refusals' tail (docs/PERFORMANCE.md). Reserved early, though, a few slow uploads could
hold every place. So an upload keeps its place for ``hold_s`` only; a slower one gives it
up and asks again once its body is complete. The work then runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.concurrency import run_in_threadpool

from aistack.store import PredictionRecord
from aistack.xray.service import XrayService


class Admission:
    """A reserved place (503 ``service_busy`` at once when none is free)."""

    def __init__(self, service: XrayService, hold_s: float) -> None:
        self.service = service
        self.ticket = service.admit()
        self._hold = asyncio.get_running_loop().call_later(hold_s, self.ticket.close)

    async def predict(
        self, data: bytes, heatmap: bool, endpoint: str, client: str | None
    ) -> PredictionRecord:
        """``service.predict`` in a worker thread, in the place held (or asked for again)."""
        self._hold.cancel()
        if self.ticket.closed:  # a slow upload gave its place up: ask again
            self.ticket = self.service.admit()
        return await run_in_threadpool(
            self.service.predict, data, heatmap, endpoint, client, self.ticket
        )

    def close(self) -> None:
        self._hold.cancel()
        self.ticket.close()


@asynccontextmanager
async def admitted(service: XrayService, hold_s: float) -> AsyncIterator[Admission]:
    """The place for one request, given back however it ends (a cancelled one included)."""
    admission = Admission(service, hold_s)
    try:
        yield admission
    finally:
        admission.close()
