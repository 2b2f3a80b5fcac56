"""Request-scoped access to the runtime, and the public URLs that responses carry."""

from __future__ import annotations

from fastapi import Request

from aistack.runtime import Runtime
from aistack.xray.service import XrayService


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_service(request: Request) -> XrayService:
    return get_runtime(request).service


def public_url(runtime: Runtime, path: str) -> str:
    """An absolute URL under the configured public base, never under the request's Host."""
    return runtime.links.url(path)


def file_url(runtime: Runtime, kind: str, name: str | None) -> str | None:
    """A stored file's URL, signed so that its holder may fetch it for a while without a key."""
    return runtime.links.file_url(kind, name)
