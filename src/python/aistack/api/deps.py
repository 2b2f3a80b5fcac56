"""Request-scoped access to the runtime and its files' public URLs."""

from __future__ import annotations

from fastapi import Request

from aistack.runtime import Runtime
from aistack.xray.service import XrayService


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_service(request: Request) -> XrayService:
    return get_runtime(request).service


def file_url(request: Request, kind: str, name: str | None) -> str | None:
    """Absolute URL of a stored file (honours X-Forwarded-* behind a proxy)."""
    if name is None:
        return None
    return str(request.url_for("static", path=f"{kind}/{name}"))
