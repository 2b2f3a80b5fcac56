"""Every failure leaves as JSON ``{"error": {"code", "message"}}`` with a 4xx/5xx status."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aistack.errors import (
    AistackError,
    BadRequest,
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    ServiceBusy,
    Unauthorized,
    UnsupportedMediaType,
)
from aistack.logs import log_event

log = logging.getLogger(__name__)

CODE_FOR_STATUS = {
    error.status: error.code
    for error in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        RequestTimeout,
        PayloadTooLarge,
        UnsupportedMediaType,
        InvalidRequest,
        RateLimited,
        ServiceBusy,
    )
}
"""Codes for errors raised by the framework (404, 405, ...), all listed in docs/API.md."""


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def allowed_methods(request: Request) -> set[str]:
    """Every method the OpenAPI document lists for this path (a 405 must name them all)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods.update(method.upper() for method in operations)
    if "GET" in methods:
        methods.add("HEAD")
    return methods


def _logged(request: Request, status: int, code: str) -> None:
    level = logging.WARNING if status >= 500 else logging.INFO
    log_event("request_failed", level, path=request.url.path, status=status, code=code)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AistackError)
    async def on_aistack_error(request: Request, error: AistackError) -> JSONResponse:
        _logged(request, error.status, error.code)
        return error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()
        )
        _logged(request, 422, InvalidRequest.code)
        return error_response(422, InvalidRequest.code, details or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        status = error.status_code
        code = CODE_FOR_STATUS.get(status, "bad_request" if status < 500 else "internal_error")
        headers = dict(error.headers or {})
        if status == 405:
            known = {m.strip() for m in headers.get("Allow", "").split(",") if m.strip()}
            headers["Allow"] = ", ".join(sorted(known | allowed_methods(request)))
        _logged(request, status, code)
        return error_response(status, code, str(error.detail), headers)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        _logged(request, 500, "internal_error")
        return error_response(500, "internal_error", "internal error; see the server log")
