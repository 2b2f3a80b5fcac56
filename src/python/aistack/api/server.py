"""Run the standalone app under uvicorn with the settings' network protections.

uvicorn bounds neither how long request headers may take nor what happens to an unread body
after an early answer, so connections use ``GuardedHttpToolsProtocol``:

- request line and headers must arrive within ``header_timeout_s`` of the connection (or of
  the first byte of the next request on a kept-alive one), else 408 and close;
- a response that starts before the request body is complete closes the connection, and the
  close lingers: the rest of the body is read and discarded for up to ``linger_s`` (or until
  the client's EOF, or a byte cap) so that clients which send everything before reading, such
  as urllib, get the early 413/503 instead of a connection reset.

Body pauses, body deadlines and the in-flight body budget are in ``aistack.api.limits``.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import cv2
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from aistack.api.errors import error_response
from aistack.api.limits import keep_large_buffers_off_the_heap
from aistack.config import Settings
from aistack.errors import RequestTimeout
from aistack.logs import logging_config

LINGER_BODY_MULTIPLE = 4
"""A lingering close discards at most this many ``max_body_bytes`` before giving up."""


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: ``close`` may linger first."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedHttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_connection()

    def is_closing(self) -> bool:
        return self._transport.is_closing() or self._protocol.lingering

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and lingering close."""

    settings: ClassVar[Settings]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.raw_transport = transport
        self.transport = _LingeringTransport(transport, self)  # type: ignore[assignment]
        self.lingering = False
        self._in_body = False
        self._request_started = False
        self._request_keep_alive = True
        self._lingered = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._in_body = False  # nothing left to drain
        for timer in (self._header_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self._lingered += len(data)
            if self._lingered > LINGER_BODY_MULTIPLE * self.settings.max_body_bytes:
                self.raw_transport.close()
            return
        super().data_received(data)

    def eof_received(self) -> bool | None:
        if self.lingering:
            self.raw_transport.close()
        return super().eof_received()

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_started = True
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._request_started = False
        super().on_headers_complete()
        self._in_body = True
        # Until the body is complete, a response (an early 413, 503, 408...) closes the
        # connection: the alternative is reading an unbounded rest of body for nobody.
        self._request_keep_alive = self.cycle.keep_alive
        self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_body = False
        if not self.cycle.response_started:
            self.cycle.keep_alive = self._request_keep_alive

    def shutdown(self) -> None:
        self._request_keep_alive = False
        super().shutdown()

    # Timers and closing
    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(
            self.settings.header_timeout_s, self._on_header_timeout
        )

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self.raw_transport.is_closing() or self.lingering:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # Still answering the previous (pipelined) request: end after that answer.
            self._request_keep_alive = self.cycle.keep_alive = False
            return
        if self._request_started:
            # No 408 to a connection that sent nothing: browsers open spare connections.
            self.raw_transport.write(self._timeout_response())
        self.raw_transport.close()

    def _timeout_response(self) -> bytes:
        error = RequestTimeout(
            f"the request headers did not arrive within {self.settings.header_timeout_s:g} s"
        )
        body = bytes(error_response(error.status, error.code, error.message).body)
        lines = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            lines += [name, b": ", value, b"\r\n"]
        lines += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
        return b"".join(lines)

    def close_connection(self) -> None:
        """Close now, or, with request body still unread, linger: answer first, then drain."""
        if self.raw_transport.is_closing() or self.lingering:
            return
        if not self._in_body or self.settings.linger_s <= 0:
            self.raw_transport.close()
            return
        self.lingering = True
        if self.raw_transport.can_write_eof():
            self.raw_transport.write_eof()  # after the buffered answer: the client sees its end
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(self.settings.linger_s, self.raw_transport.close)


def protocol_for(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to ``settings``."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"settings": settings})


def trusted_proxies(settings: Settings) -> list[str]:
    return [a.strip() for a in settings.trusted_proxies.split(",") if a.strip()]


def prepare_process(settings: Settings) -> None:
    """Process-wide settings of the libraries, before the app is built (each worker too)."""
    keep_large_buffers_off_the_heap(settings.malloc_mmap_threshold_bytes)
    cv2.setNumThreads(settings.opencv_threads)


def uvicorn_options(settings: Settings, log_level: str) -> dict[str, Any]:
    """What every way of serving passes uvicorn, one process or several."""
    trusted = trusted_proxies(settings)
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level,
        "log_config": logging_config(log_level),
        "ws": "none",  # no WebSocket routes: no upgrade handling to attack
        # X-Forwarded-* only from configured proxies; an explicit list (never None) so that
        # uvicorn neither defaults to trusting loopback nor reads FORWARDED_ALLOW_IPS.
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
    }


def run(settings: Settings, log_level: str = "info") -> None:
    """Serve ``create_app(settings)`` on ``settings.host``:``settings.port`` until stopped.

    With ``settings.workers`` above one, that many processes share the socket
    (``aistack.api.workers``).
    """
    if settings.workers > 1:
        from aistack.api.workers import run_workers  # noqa: PLC0415

        run_workers(settings, log_level)
        return
    from aistack.api.app import create_app  # noqa: PLC0415 - imports the whole app

    prepare_process(settings)
    uvicorn.run(
        create_app(settings), http=protocol_for(settings), **uvicorn_options(settings, log_level)
    )
