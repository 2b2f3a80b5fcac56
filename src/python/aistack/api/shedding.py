"""Refuse prediction uploads at the door while the service is full: load shedding.

Under overload most requests are refused, so refusing must cost next to nothing. Raised as
an error deep in the route, a refusal went through routing, dependency resolution and the
exception machinery, and cost the event loop milliseconds, so that at four times the
sustainable rate refusals alone filled it and starved the admitted requests. This ASGI
middleware answers the same 503 ``service_busy`` body before any of that. It runs before
authentication too: while full, a request without a key also hears "busy", and the body
is never read. Requests naming a model version go on to their route, which checks that
version's own capacity.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from aistack.api import v1, v2
from aistack.errors import BUSY_MESSAGE, NotReady, ServiceBusy
from aistack.logs import log_event
from aistack.metrics import REJECTED
from aistack.runtime import Runtime

PREDICTION_PATHS = frozenset(
    {
        f"{v1.router.prefix}/predict/",
        f"{v1.router.prefix}/predict/heatmap",
        f"{v2.router.prefix}/predictions",
    }
)
BUSY_BODY = json.dumps({"error": {"code": ServiceBusy.code, "message": BUSY_MESSAGE}}).encode()
BUSY_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BUSY_BODY)).encode()),
    (b"retry-after", str(ServiceBusy.retry_after_s).encode()),
]


class ShedWhenFull:
    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._full(scope):
            REJECTED.labels("admission").inc()
            log_event("request_failed", path=scope["path"], status=503, code=ServiceBusy.code)
            await send({"type": "http.response.start", "status": 503, "headers": BUSY_HEADERS})
            await send({"type": "http.response.body", "body": BUSY_BODY})
            return
        await self.app(scope, receive, send)

    def _full(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        if scope["path"] not in PREDICTION_PATHS or scope.get("query_string"):
            return False
        try:
            admission = self.runtime.service.admission
        except NotReady:
            return False  # the route answers not_ready with its own reason
        return admission.full
