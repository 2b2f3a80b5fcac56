"""Predictions leave the event loop only with a place reserved: overload is refused at once.

Without the reservation, requests beyond capacity would wait unseen for one of the worker
threads (anyio's pool) and be refused only when one came free, seconds later. The place is
taken once the upload has been read, not when the request arrives: reserved on arrival, a
few slow uploads could hold every place and shut everyone else out. While every place is
taken, new requests are refused before their upload (``api/shedding.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from aistack.inference.gate import Ticket
from aistack.store import PredictionRecord
from aistack.xray.service import XrayService


async def predict_in_thread(
    service: XrayService,
    data: bytes | Callable[[], bytes],
    heatmap: bool,
    endpoint: str,
    client: str | None,
) -> PredictionRecord:
    """``service.predict`` in a worker thread, after :meth:`XrayService.admit` (503 if full).

    ``data`` may be a function that takes the image out of the body (a 2020 form's
    url-encoded base64): it then runs in the worker thread too, not on the event loop,
    where it would hold up every other connection for a millisecond per X-ray.
    """
    ticket = service.admit()
    try:
        return await run_in_threadpool(_predict, service, data, heatmap, endpoint, client, ticket)
    finally:
        ticket.close()  # a request cancelled before its thread ran gives its place back


def _predict(
    service: XrayService,
    data: bytes | Callable[[], bytes],
    heatmap: bool,
    endpoint: str,
    client: str | None,
    ticket: Ticket,
) -> PredictionRecord:
    image = data if isinstance(data, bytes) else data()
    return service.predict(image, heatmap, endpoint, client, ticket)
