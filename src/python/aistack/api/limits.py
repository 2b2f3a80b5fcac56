"""Bound what request bodies may cost: size, time, and memory across requests (ASGI middleware).

- A declared Content-Length over ``max_body_bytes`` is refused at once (413); a chunked body
  is counted as it streams and cut off when it passes the limit.
- Every request body shares one budget of ``max_body_bytes_in_flight``: a declared length is
  reserved before anything is read, chunked bytes as they arrive, so clients holding bodies
  back cannot make the process buffer without bound.
- When a body does not fit, bodies that have stalled (no data for ``STALLED_S``) are ended
  with 408 to make room, longest stall first: otherwise a few clients holding back their
  last byte would lock everyone else out until the idle timeout. A new request waits at most
  ``STALLED_S`` for waiting bodies to count as stalled. If the room is held by bodies still
  arriving, it gets 503 ``service_busy`` with ``Retry-After`` at once, before its body is
  read.
- While the app reads the body, a pause longer than ``body_idle_timeout_s`` or a body not
  complete within ``body_timeout_s`` ends the request with 408 ``request_timeout``.
- Memory of released bodies goes back to the OS: glibc keeps freed heap pages, and
  held-back bodies left hundreds of MB resident after their clients had gone. Hence a heap
  trim after big bodies are released, and ``keep_large_buffers_off_the_heap`` at startup.

Responses sent while body is still unread close the connection; the server's protocol
(``aistack.api.server``) drains the rest for a while so that the client reads the answer.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aistack.api.errors import error_response
from aistack.config import Settings
from aistack.errors import AistackError, PayloadTooLarge, RequestTimeout, ServiceBusy

STALLED_S = 1.0
"""A body waiting this long for data may be ended to make room (at most half the idle timeout)."""
TRIM_AFTER_BYTES = 8 * 1024 * 1024
"""Releasing at least this much body triggers a heap trim; small bodies are not worth one."""
TRIM_DELAY_S = 0.5
"""Trims are batched: many bodies released together cost one trim (about 1 ms; 0.1 s for GB)."""
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None:
            libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
            libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


_libc = _load_libc()
_malloc_trim: Callable[[int], int] | None = _libc.malloc_trim if _libc else None
"""glibc's ``malloc_trim``: returns free pages inside the heap too, not only at its top."""


def keep_large_buffers_off_the_heap(mmap_threshold_bytes: int) -> bool:
    """Pin glibc's mmap threshold, so that large bodies are mapped and unmapped.

    By default freeing a mapped block raises the threshold to its size (up to 32 MiB): after
    one 19 MB body, later bodies are carved from the heap, which fragments and stays
    resident. The heap top is then trimmed only past 32 MiB (explicit trims follow big
    bodies anyway). Not lower than a few MiB: the model's own tensors (a few MB a layer)
    would then be mapped and unmapped on every inference; docs/PERFORMANCE.md has the
    measurements behind the default (AISTACK_MALLOC_MMAP_THRESHOLD_BYTES, 8 MiB).
    True when set (glibc only; 0 leaves glibc's own dynamic threshold).
    """
    if _libc is None or mmap_threshold_bytes <= 0:
        return False
    return bool(
        _libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold_bytes)
        and _libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


@dataclass(eq=False)
class InFlightBody:
    """One request body being received: its reservation and, while it waits, its timer."""

    reserved: int = 0
    waiting_since: float | None = None
    timer: asyncio.Timeout | None = None
    evicted: bool = False


class BodyBudget:
    """Bytes of request body the process may hold at once, shared by all requests."""

    def __init__(self, limit: int, stalled_s: float) -> None:
        self.limit = limit
        self.stalled_s = stalled_s
        self.used = 0
        self.bodies: set[InFlightBody] = set()
        self._released = 0
        self._trim: asyncio.TimerHandle | None = None

    async def reserve(self, body: InFlightBody, size: int, wait_s: float = 0.0) -> bool:
        """Reserve ``size`` more bytes (at least one must be free) for ``body``.

        Room is made by evicting the bodies that have waited longest for data, once they
        have waited ``stalled_s``; for that this waits up to ``wait_s``. False at once when
        the room is held by bodies still arriving.
        """
        give_up = time.monotonic() + wait_s
        while self.used + max(size, 1) > self.limit:
            short = self.used + max(size, 1) - self.limit
            victims = []
            for other in sorted(
                (b for b in self.bodies if b.waiting_since is not None and b.reserved),
                key=lambda b: b.waiting_since or 0.0,
            ):
                if short <= 0:
                    break
                victims.append(other)
                short -= other.reserved
            if short > 0:
                return False
            now = time.monotonic()
            ready_at = (victims[-1].waiting_since or now) + self.stalled_s
            if ready_at > give_up:
                return False
            if ready_at > now:
                await asyncio.sleep(ready_at - now)  # then look again: things change
                continue
            for victim in victims:
                self._evict(victim)
        self.used += size
        body.reserved += size
        self.bodies.add(body)
        return True

    def release(self, body: InFlightBody) -> None:
        self.bodies.discard(body)
        self.used -= body.reserved
        self._released += body.reserved
        body.reserved = 0
        if _malloc_trim is not None and self._released >= TRIM_AFTER_BYTES and not self._trim:
            self._trim = asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim_heap)

    def _evict(self, body: InFlightBody) -> None:
        """End a stalled body's wait with a 408 and take its room now."""
        body.evicted = True
        if body.timer is not None:
            body.timer.reschedule(asyncio.get_running_loop().time())
        self.release(body)

    def _trim_heap(self) -> None:
        self._trim, self._released = None, 0
        if _malloc_trim is not None:
            _malloc_trim(0)


def _declared_length(scope: Scope) -> int | None:
    """Content-Length as declared (the HTTP parser has already refused malformed ones)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


def _is_chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


def _refusal(error: AistackError) -> Response:
    """The error as a response that also ends the connection (its body is left unread)."""
    headers = {**error.headers, "Connection": "close"}
    return error_response(error.status, error.code, error.message, headers)


class BodySizeLimit:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_bytes = settings.max_body_bytes
        self.idle_timeout_s = settings.body_idle_timeout_s
        self.timeout_s = settings.body_timeout_s
        self.budget = BodyBudget(
            settings.max_body_bytes_in_flight, min(STALLED_S, self.idle_timeout_s / 2)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if not declared and not _is_chunked(scope):
            await self.app(scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            await _refusal(PayloadTooLarge(self._too_large(declared)))(scope, receive, send)
            return
        body = InFlightBody()
        if not await self.budget.reserve(body, declared or 0, self.budget.stalled_s):
            await _refusal(self._busy())(scope, receive, send)
            return

        received = 0
        complete = disconnected = False
        deadline = time.monotonic() + self.timeout_s

        async def guarded_receive() -> Message:
            nonlocal received, complete, disconnected
            if complete or disconnected:
                return await receive()  # e.g. waiting for a disconnect: no body timeouts
            message = await self._receive_in_time(receive, body, deadline)
            if message["type"] == "http.disconnect":
                disconnected = True
            elif message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise PayloadTooLarge(self._too_large(received))
                if received > body.reserved and not await self.budget.reserve(
                    body, received - body.reserved
                ):
                    raise self._busy()
            return message

        try:
            await self.app(scope, guarded_receive, send)
        except ClientDisconnect:
            if not disconnected:
                raise  # the client went away: nobody to answer, nothing worth a traceback
        finally:
            self.budget.release(body)

    async def _receive_in_time(
        self, receive: Receive, body: InFlightBody, deadline: float
    ) -> Message:
        left = deadline - time.monotonic()
        body.waiting_since = time.monotonic()
        try:
            async with asyncio.timeout(min(left, self.idle_timeout_s)) as body.timer:
                message = await receive()
        except TimeoutError:
            message = None
        finally:
            body.waiting_since = body.timer = None
        if body.evicted:
            raise RequestTimeout(
                "the request body stalled while the server needed the memory; send it again"
            )
        if message is None:
            raise RequestTimeout(
                f"no request body data for {self.idle_timeout_s:g} s"
                if left > self.idle_timeout_s
                else f"the request body was not complete within {self.timeout_s:g} s"
            )
        return message

    def _busy(self) -> ServiceBusy:
        return ServiceBusy("too many request bodies are being received at once; retry shortly")

    def _too_large(self, size: int) -> str:
        return f"request body of {size:,} bytes exceeds the limit of {self.max_bytes:,} bytes"
