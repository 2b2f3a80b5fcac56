"""Per-request context: a request id (taken from ``X-Request-ID`` when sane) and the
headers every response carries."""

from __future__ import annotations

import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aistack.http_contract import COMMON_HEADERS, REQUEST_ID_HEADER, SANE_REQUEST_ID
from aistack.logs import request_id

REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
"""The header as an ASGI scope names it (lowercase bytes)."""


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_KEY, b"").decode("latin-1")
        current = incoming if SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(current)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = current
                for name, value in COMMON_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            request_id.reset(token)
