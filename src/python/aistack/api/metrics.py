"""HTTP metrics middleware and the ``/metrics`` route (Prometheus text format)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aistack.api.openapi import error_responses
from aistack.api.security import authorize
from aistack.auth.keys import Permission
from aistack.metrics import HTTP_DURATION, HTTP_REQUESTS, exposition

router = APIRouter(tags=["operations"])
UNMATCHED = "unmatched"


class HttpMetrics:
    """Counts and times every HTTP request by route template, method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or _mount_path(scope) or UNMATCHED
            method = scope["method"]
            HTTP_REQUESTS.labels(template, method, str(status)).inc()
            HTTP_DURATION.labels(template, method, str(status)).observe(
                time.perf_counter() - started
            )


def _mount_path(scope: Scope) -> str | None:
    """Static mounts (``/ui``, ``/docs-assets``) are labelled by their prefix alone."""
    root = scope.get("root_path", "")
    return f"{root}/*" if root else None


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}}
    | error_responses(401, 403, 429),
    dependencies=[Depends(authorize(Permission.ADMIN))],
)
async def metrics() -> Response:
    """Counters and histograms for Prometheus (a key with the admin role)."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
