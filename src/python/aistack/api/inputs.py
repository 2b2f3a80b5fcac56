"""Get the image bytes out of a request: form field ``b64``, multipart ``file``, or JSON."""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import urllib.parse

import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request

from aistack.errors import (
    BadRequest,
    EmptyInput,
    InvalidBase64,
    MissingInput,
    UnsupportedMediaType,
)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
DATA_URL_PREFIX = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
WHITESPACE = re.compile(r"\s+")


def decode_base64(text: str | bytes) -> bytes:
    """Standard or URL-safe base64, with or without padding, line breaks or a data: URL."""
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    with contextlib.suppress(binascii.Error, ValueError):
        # Fast path for the usual, clean payload; anything else goes through the cleanup.
        if text:
            return binascii.a2b_base64(text, strict_mode=True)
    text = WHITESPACE.sub("", DATA_URL_PREFIX.sub("", text.strip()))
    if not text:
        raise EmptyInput("the base64 image is empty")
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidBase64(f"the image is not valid base64: {error}") from error


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


IMAGE_FIELDS = frozenset({"b64", "file"})


URLENCODED = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 20
_HEX_VALUE = np.full(256, -1, np.int16)
for _digit, _char in enumerate(b"0123456789abcdef"):
    _HEX_VALUE[_char] = _HEX_VALUE[bytes([_char]).upper()[0]] = _digit


def unquote_plus_bytes(value: bytes) -> bytes:
    """Form-decode one value (``+`` is a space, ``%XX`` a byte), vectorised.

    A 2020 client posts a whole image as a url-encoded ``b64`` field with thousands of
    escapes; decoding them one by one in Python held the interpreter lock for the better
    part of the request's HTTP work (docs/PERFORMANCE.md). A malformed escape, which the
    standard library keeps as text, sends the value through the standard library.
    """
    value = value.replace(b"+", b" ")
    if b"%" not in value:
        return value
    raw = np.frombuffer(value, np.uint8)
    at = np.flatnonzero(raw == ord("%"))
    if at[-1] + 2 >= raw.size:
        return urllib.parse.unquote_to_bytes(value)
    high, low = _HEX_VALUE[raw[at + 1]], _HEX_VALUE[raw[at + 2]]
    if (high < 0).any() or (low < 0).any():
        return urllib.parse.unquote_to_bytes(value)
    decoded = raw.copy()
    decoded[at] = high * 16 + low
    keep = np.ones(raw.size, bool)
    keep[at + 1] = keep[at + 2] = False
    return decoded[keep].tobytes()


def parse_urlencoded(body: bytes, max_fields: int = MAX_FORM_FIELDS) -> dict[str, bytes]:
    """``name=value&...`` into raw values; as with any form parser, a repeated name keeps
    its last value."""
    fields: dict[str, bytes] = {}
    pairs = [pair for pair in body.split(b"&") if pair]
    if len(pairs) > max_fields:
        raise BadRequest(f"too many form fields: at most {max_fields}")
    for pair in pairs:
        name, _, value = pair.partition(b"=")
        fields[unquote_plus_bytes(name).decode("latin-1")] = unquote_plus_bytes(value)
    return fields


def _check_form_fields(names: set[str], other_fields: frozenset[str]) -> None:
    """Exactly one image field, and no field the endpoint does not know: a typo such as
    ``heatmpa`` is an error, not silently ignored."""
    unknown = sorted(names - IMAGE_FIELDS - other_fields)
    if not IMAGE_FIELDS & names:
        got = f" (got {', '.join(repr(u[:40]) for u in unknown[:5])})" if unknown else ""
        raise MissingInput(f"missing image: send form field 'b64' (base64) or file 'file'{got}")
    if unknown:
        allowed = ", ".join(sorted(IMAGE_FIELDS | other_fields))
        raise BadRequest(f"unexpected form field {unknown[0][:40]!r}; expected {allowed}")
    if names >= IMAGE_FIELDS:
        raise BadRequest("send the image once: form field 'b64' or file 'file', not both")


async def image_from_form(
    request: Request, max_bytes: int, other_fields: frozenset[str] = frozenset()
) -> tuple[bytes, dict[str, str]]:
    """The image from form field ``b64`` or file part ``file``, plus ``other_fields``."""
    kind = media_type(request)
    if kind not in FORM_TYPES:
        if not kind and not await request.body():
            raise MissingInput("empty request: send the image as form field 'b64' or file 'file'")
        raise UnsupportedMediaType(
            f"content type {kind or 'missing'!r} is not accepted here; send "
            "application/x-www-form-urlencoded or multipart/form-data"
        )
    if kind == URLENCODED:
        raw = parse_urlencoded(await request.body())
        _check_form_fields(set(raw), other_fields)
        fields = {k: v.decode("latin-1") for k, v in raw.items() if k not in IMAGE_FIELDS}
        if "b64" not in raw:  # a url-encoded form carries text, never a file part
            raise MissingInput("missing image: send form field 'b64' (base64) or file 'file'")
        return decode_base64(raw["b64"]), fields
    form = await request.form(max_files=2, max_fields=MAX_FORM_FIELDS, max_part_size=max_bytes)
    _check_form_fields(set(form.keys()), other_fields)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    upload = form.get("file")
    if isinstance(upload, UploadFile):
        data = await upload.read()
        if not data:
            raise EmptyInput("the uploaded file is empty")
        return data, fields
    b64 = form.get("b64")
    if isinstance(b64, UploadFile):
        b64 = await b64.read()
    if b64 is None:
        raise MissingInput("missing image: send form field 'b64' (base64) or file 'file'")
    return decode_base64(b64), fields
