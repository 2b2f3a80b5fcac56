"""Prediction request bodies, read and checked without a web framework.

Both runtimes hand an already-read body and its Content-Type here, so the same request gets
the same error code and message from either. The rules: a v1 body is a form with exactly one
image field (``b64`` as base64, or a ``file`` part); a v2 body is that form (plus
``heatmap``), JSON ``{"image_b64", "heatmap"}``, or a DICOM file as the raw body
(``application/dicom``, as STOW-RS sends one instance) with ``heatmap`` in the query.
Whatever the body, the image's format is told by its content, never by a name or a type.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import re
import urllib.parse
from collections.abc import Mapping

import numpy as np
from pydantic import ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from aistack.errors import (
    BadRequest,
    EmptyInput,
    InvalidBase64,
    InvalidJson,
    InvalidRequest,
    MissingInput,
    UnsupportedMediaType,
)
from aistack.xray.schemas import PredictionRequest

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JSON = "application/json"
DICOM = "application/dicom"
FORM_TYPES = (URLENCODED, MULTIPART)
V1_MEDIA_TYPES = FORM_TYPES
V2_MEDIA_TYPES = (JSON, *FORM_TYPES, DICOM)
HEATMAP_QUERY = "heatmap"
"""The query parameter that says ``true``/``false`` for a raw body, which has no fields."""
IMAGE_FIELDS = frozenset({"b64", "file"})
MAX_FORM_FIELDS = 20
MAX_FORM_FILES = 2
MISSING_IMAGE = "missing image: send form field 'b64' (base64) or file 'file'"
DATA_URL_PREFIX = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
WHITESPACE = re.compile(r"\s+")


def media_type(content_type: str) -> str:
    """``multipart/form-data; boundary=x`` → ``multipart/form-data``."""
    return content_type.split(";")[0].strip().lower()


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


# --- application/x-www-form-urlencoded

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


def parse_urlencoded(body: bytes, max_fields: int = MAX_FORM_FIELDS) -> dict[str, str]:
    """``name=value&...``, names and values as latin-1 text (one character per byte); as
    with any form parser, a repeated name keeps its last value."""
    fields: dict[str, str] = {}
    pairs = [pair for pair in body.split(b"&") if pair]
    if len(pairs) > max_fields:
        raise BadRequest(f"too many form fields: at most {max_fields}")
    for pair in pairs:
        name, _, value = pair.partition(b"=")
        fields[unquote_plus_bytes(name).decode("latin-1")] = unquote_plus_bytes(value).decode(
            "latin-1"
        )
    return fields


# --- multipart/form-data


def _text(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return data.decode("latin-1")


class _MultipartForm:
    """python-multipart callbacks collecting parts: a part with a filename is a file.

    Limits and messages are those of the Starlette parser the v1 and v2 routes used first.
    """

    def __init__(self, charset: str) -> None:
        self.charset = charset
        self.fields: dict[str, str] = {}
        self.files: dict[str, bytes] = {}
        self._counts = {"files": 0, "fields": 0}
        self._header = [b"", b""]
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._chunks: list[bytes] = []

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._header_part(0, data[start:end]),
            "on_header_value": lambda data, start, end: self._header_part(1, data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self._chunks.append(data[start:end]),
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._disposition, self._chunks = b"", []

    def _header_part(self, index: int, data: bytes) -> None:
        self._header[index] += data

    def _header_end(self) -> None:
        if self._header[0].lower() == b"content-disposition":
            self._disposition = self._header[1]
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise BadRequest('The Content-Disposition header field "name" must be provided.')
        self._name = _text(options[b"name"], self.charset)
        self._is_file = b"filename" in options
        kind, limit = ("files", MAX_FORM_FILES) if self._is_file else ("fields", MAX_FORM_FIELDS)
        self._counts[kind] += 1
        if self._counts[kind] > limit:
            raise BadRequest(f"Too many {kind}. Maximum number of {kind} is {limit}.")

    def _end(self) -> None:
        data = b"".join(self._chunks)
        self._chunks = []
        # A repeated name keeps its last part, file or field.
        self.files.pop(self._name, None)
        self.fields.pop(self._name, None)
        if self._is_file:
            self.files[self._name] = data
        else:
            self.fields[self._name] = _text(data, self.charset)


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """(text fields, file parts) of a multipart body; at most 2 files and 20 fields."""
    _, params = parse_options_header(content_type)
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "latin-1"
    if b"boundary" not in params:
        raise BadRequest("Missing boundary in multipart.")
    form = _MultipartForm(charset)
    try:
        parser = MultipartParser(params[b"boundary"], form.callbacks())
        parser.write(body)
        parser.finalize()
    except FormParserError as error:
        raise BadRequest("Invalid multipart data.") from error
    return form.fields, form.files


# --- the v1 and v2 rules


def _check_form_fields(names: set[str], extra_fields: frozenset[str]) -> None:
    """Exactly one image field, and no field the endpoint does not know: a typo such as
    ``heatmpa`` is an error, not silently ignored."""
    unknown = sorted(names - IMAGE_FIELDS - extra_fields)
    if not IMAGE_FIELDS & names:
        got = f" (got {', '.join(repr(u[:40]) for u in unknown[:5])})" if unknown else ""
        raise MissingInput(f"{MISSING_IMAGE}{got}")
    if unknown:
        allowed = ", ".join(sorted(IMAGE_FIELDS | extra_fields))
        raise BadRequest(f"unexpected form field {unknown[0][:40]!r}; expected {allowed}")
    if names >= IMAGE_FIELDS:
        raise BadRequest("send the image once: form field 'b64' or file 'file', not both")


def image_from_form(
    fields: Mapping[str, str],
    files: Mapping[str, bytes],
    extra_fields: frozenset[str] = frozenset(),
) -> tuple[bytes, dict[str, str]]:
    """The image from field ``b64`` (base64) or file part ``file``, and the other fields.

    ``extra_fields`` are the other names the endpoint takes (v2: ``heatmap``).
    """
    _check_form_fields(set(fields) | set(files), extra_fields)
    others = {name: value for name, value in fields.items() if name not in IMAGE_FIELDS}
    if "file" in files:
        if not files["file"]:
            raise EmptyInput("the uploaded file is empty")
        return files["file"], others
    b64 = files.get("b64", fields.get("b64"))
    if b64 is None:  # a text field named 'file' is no file
        raise MissingInput(MISSING_IMAGE)
    return decode_base64(b64), others


def read_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """(fields, files) of a url-encoded or multipart body."""
    if media_type(content_type) == URLENCODED:
        return parse_urlencoded(body), {}
    return parse_multipart(body, content_type)


def parse_form_bool(text: str) -> bool:
    """A form field's boolean as JSON spells it: ``true`` or ``false``, nothing looser."""
    value = text.strip()
    if value == "true":
        return True
    if value == "false":
        return False
    raise BadRequest(f"heatmap must be true or false, not {text[:40]!r}")


def parse_v2_json(body: bytes) -> tuple[bytes, bool]:
    """Strict JSON: invalid UTF-8, bad syntax or nesting → 400; wrong types → 422."""
    if not body.strip():
        raise MissingInput('empty JSON body: send {"image_b64": ..., "heatmap": true}')
    try:
        parsed = PredictionRequest.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            reason = problems[0].get("ctx", {}).get("error", "invalid JSON")
            raise InvalidJson(f"the body is not valid JSON: {reason}") from error
        if any(p["type"] == "model_type" for p in problems):
            raise InvalidRequest('the body must be a JSON object {"image_b64": ...}') from error
        described = "; ".join(
            f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}" for p in problems
        )
        if all(p["type"] == "missing" for p in problems):
            raise MissingInput(described) from error
        raise InvalidRequest(described) from error
    return decode_base64(parsed.image_b64), parsed.heatmap


def v1_body(content_type: str, body: bytes) -> bytes:
    """The image of a 2020 request: a form with ``b64`` or ``file`` and nothing else."""
    kind = media_type(content_type)
    if kind not in V1_MEDIA_TYPES:
        if not kind and not body:
            raise MissingInput("empty request: send the image as form field 'b64' or file 'file'")
        raise UnsupportedMediaType(
            f"content type {kind or 'missing'!r} is not accepted here; send "
            "application/x-www-form-urlencoded or multipart/form-data"
        )
    return image_from_form(*read_form(content_type, body))[0]


def v2_body(content_type: str, body: bytes, heatmap_query: str | None = None) -> tuple[bytes, bool]:
    """(image, heatmap) of a v2 request: JSON, a form with ``file``/``b64`` and ``heatmap``, or
    a raw ``application/dicom`` body with ``?heatmap=true|false`` (default true).

    ``heatmap_query`` is the query's ``heatmap``, None when absent. JSON and forms carry
    ``heatmap`` in the body, and the query may not say it a second time (422).
    """
    kind = media_type(content_type)
    if kind == DICOM:
        if not body:
            raise MissingInput("empty request: send the DICOM file as the body")
        return body, parse_form_bool("true" if heatmap_query is None else heatmap_query)
    if heatmap_query is not None and kind in (JSON, *FORM_TYPES):
        raise InvalidRequest(
            f"the {HEATMAP_QUERY} query parameter goes with a raw {DICOM} body; with JSON "
            f"or a form, send {HEATMAP_QUERY} in the body"
        )
    if kind in FORM_TYPES:
        data, fields = image_from_form(*read_form(content_type, body), frozenset({"heatmap"}))
        return data, parse_form_bool(fields.get("heatmap", "true"))
    if kind != JSON:
        if not kind and not body:
            raise MissingInput('empty request: send JSON {"image_b64": ...} or multipart file')
        raise UnsupportedMediaType(
            f"content type {kind or 'missing'!r} is not accepted; send application/json "
            f"or multipart/form-data, or a DICOM file as {DICOM}"
        )
    return parse_v2_json(body)
