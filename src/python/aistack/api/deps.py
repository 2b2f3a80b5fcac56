"""Request-scoped access to the runtime, and the public URLs that responses carry."""

from __future__ import annotations

from fastapi import Request

from aistack.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_runtime(request: Request) -> Runtime:
    """:func:`runtime_of` as a route dependency. A coroutine, so that FastAPI calls it on the
    event loop: a plain function would cost every request a hand-off to a worker thread."""
    return runtime_of(request)


def public_url(runtime: Runtime, path: str) -> str:
    """An absolute URL under the configured public base, never under the request's Host."""
    return runtime.links.url(path)


def file_url(runtime: Runtime, kind: str, name: str | None) -> str | None:
    """A stored file's URL, signed so that its holder may fetch it for a while without a key."""
    return runtime.links.file_url(kind, name)
