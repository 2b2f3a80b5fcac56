"""Read a prediction request's body and hand it to the core's rules (``xray.request_body``).

What stays here is HTTP: the body streams in under the limits of ``api.limits`` (size,
pauses, deadline, memory in flight), and a content type the route refuses is answered
before any of it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from starlette.requests import Request

from aistack.xray.request_body import (
    HEATMAP_QUERY,
    V1_MEDIA_TYPES,
    V2_MEDIA_TYPES,
    media_type,
    parse_urlencoded,
    v1_body,
    v2_body,
)

__all__ = ["parse_urlencoded", "read_body", "v1_image_reader", "v2_image"]


async def read_body(request: Request, accepted: tuple[str, ...]) -> tuple[str, bytes]:
    """(Content-Type, body); the body is left unread (``b""``) when its type is refused."""
    content_type = request.headers.get("content-type", "")
    kind = media_type(content_type)
    if kind and kind not in accepted:
        return content_type, b""  # the rules refuse the type whatever the body
    return content_type, await request.body()


async def v1_image_reader(request: Request) -> Callable[[], bytes]:
    """Reads a 2020 form request's body; the function returned takes the image out of it.

    Run it in the prediction's worker thread: url-decoding and base64-decoding an X-ray
    costs about a millisecond, which on the event loop holds up every other connection.
    """
    return partial(v1_body, *await read_body(request, V1_MEDIA_TYPES))


async def v2_image(request: Request) -> tuple[bytes, bool]:
    """(image, heatmap) of a v2 request: JSON, form, or a raw DICOM body (``?heatmap=``)."""
    content_type, body = await read_body(request, V2_MEDIA_TYPES)
    return v2_body(content_type, body, request.query_params.get(HEATMAP_QUERY))
