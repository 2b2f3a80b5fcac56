"""Request bodies read without a web framework: the rules, codes and messages of the routes.

Multipart bodies are encoded by httpx, as a client does; Starlette's form parser, which the
routes used before, is the reference the core's parser must match, errors included.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import urllib.parse

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request

from aistack.errors import (
    AistackError,
    BadRequest,
    EmptyInput,
    InvalidBase64,
    InvalidJson,
    InvalidRequest,
    MissingInput,
    UnsupportedMediaType,
)
from aistack.xray.request_body import (
    decode_base64,
    image_from_form,
    parse_form_bool,
    parse_multipart,
    parse_urlencoded,
    parse_v2_json,
    unquote_plus_bytes,
    v1_body,
    v2_body,
)

PAYLOAD = bytes(range(256)) * 40
IMAGE = b"\x89PNG\r\n\x1a\n not really, but bytes"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def encoded(**kwargs: object) -> tuple[str, bytes]:
    """(Content-Type, body) as httpx sends ``data=``/``files=``/``json=``."""
    request = httpx.Request("POST", "http://test/", **kwargs)
    return request.headers.get("content-type", ""), request.read()


def error_of(call, *args) -> tuple[type[AistackError], str]:
    with pytest.raises(AistackError) as caught:
        call(*args)
    return type(caught.value), caught.value.message


# --- base64, as clients really send it


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(PAYLOAD).decode(),
        base64.b64encode(PAYLOAD),  # bytes, as a form part may arrive
        base64.encodebytes(PAYLOAD).decode(),  # MIME line breaks every 76 characters
        "data:image/png;base64," + base64.b64encode(PAYLOAD).decode(),
        base64.urlsafe_b64encode(PAYLOAD).decode().rstrip("="),
        "  " + base64.b64encode(PAYLOAD).decode() + "\n",
    ],
    ids=["standard", "bytes", "wrapped", "data-url", "urlsafe-unpadded", "surrounding-space"],
)
def test_accepted_spellings_decode_to_the_same_bytes(text):
    assert decode_base64(text) == PAYLOAD


@pytest.mark.parametrize("bad", ["not base64!", "abc$def", "====", "a", "é" * 8])
def test_garbage_is_invalid_base64(bad):
    with pytest.raises(InvalidBase64):
        decode_base64(bad)


@pytest.mark.parametrize("empty", ["", "   ", "data:image/png;base64,"])
def test_nothing_is_empty_input(empty):
    with pytest.raises(EmptyInput):
        decode_base64(empty)


# --- url-encoded forms


def _reference_form(body: bytes) -> dict[str, str]:
    """The standard library's reading of a url-encoded form (latin-1), last value winning."""
    text = body.decode("latin-1")
    pairs = (pair.partition("=") for pair in text.split("&") if pair)
    return {
        urllib.parse.unquote_plus(name, encoding="latin-1"): urllib.parse.unquote_plus(
            value, encoding="latin-1"
        )
        for name, _, value in pairs
    }


@pytest.mark.parametrize(
    "body",
    [
        b"b64=" + urllib.parse.quote_plus(base64.b64encode(bytes(range(256)) * 9)).encode(),
        b"b64=" + urllib.parse.quote(base64.b64encode(bytes(range(256)))).encode().lower(),
        b"b64=abc%252Bdef&heatmap=true",
        b"a+b=c+d%20e%2F&x=%e9%3d",
        b"b64=%zz%2&only",
        b"&&b64=one&b64=two&",
    ],
)
def test_urlencoded_forms_parse_as_the_standard_library_does(body):
    assert parse_urlencoded(body) == _reference_form(body)


def test_random_values_survive_form_encoding():
    rng = random.Random(2026)
    for _ in range(300):
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(60)))
        quoted = urllib.parse.quote_plus(value, safe=rng.choice(["", "/", "=/"])).encode()
        assert unquote_plus_bytes(quoted) == value


def test_too_many_form_fields_are_refused():
    with pytest.raises(BadRequest, match="too many form fields"):
        parse_urlencoded(b"&".join(b"f%d=1" % i for i in range(21)))


# --- multipart forms, against the parser the routes used before


def starlette_form(content_type: str, body: bytes) -> tuple[dict, dict] | str:
    """Starlette's reading with the routes' former limits: (fields, files), or the error."""

    async def read() -> tuple[dict, dict] | str:
        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        headers = [(b"content-type", content_type.encode("latin-1"))]
        scope = {"type": "http", "method": "POST", "headers": headers, "app": None}
        try:
            form = await Request(scope, receive).form(max_files=2, max_fields=20)
        except HTTPException as error:
            return str(error.detail)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        files = {k: await v.read() for k, v in form.items() if not isinstance(v, str)}
        return fields, files

    return asyncio.run(read())


def ours(content_type: str, body: bytes) -> tuple[dict, dict] | str:
    try:
        return parse_multipart(body, content_type)
    except BadRequest as error:
        return error.message


BOUNDARY = "multipart/form-data; boundary=xyz"
MULTIPART_CASES = {
    "file and field": encoded(files={"file": ("a.png", IMAGE, "image/png")}, data={"h": "1"}),
    "b64 as text": encoded(files={"b64": (None, "aGVsbG8=")}),
    "b64 as a file": encoded(files={"b64": ("b.txt", b"aGVsbG8=")}),
    "empty file": encoded(files={"file": ("a.png", b"", "image/png")}),
    "utf-8 field": encoded(files={"note": (None, "é".encode())}),
    "latin-1 charset": (
        f"{BOUNDARY}; charset=latin-1",
        b'--xyz\r\nContent-Disposition: form-data; name="n"\r\n\r\n\xe9\r\n--xyz--\r\n',
    ),
    "repeated name": (
        BOUNDARY,
        b'--xyz\r\nContent-Disposition: form-data; name="a"; '
        b'filename="f"\r\n\r\none\r\n--xyz\r\nContent-Disposition: form-data; '
        b'name="a"\r\n\r\ntwo\r\n--xyz--\r\n',
    ),
    "three files": encoded(files=[("file", ("a", b"1")), ("b", ("b", b"2")), ("c", ("c", b"3"))]),
    "21 fields": encoded(files=[(f"f{i}", (None, b"v")) for i in range(21)]),
    "no name": (BOUNDARY, b"--xyz\r\nContent-Disposition: form-data\r\n\r\nv\r\n--xyz--\r\n"),
    "no boundary": ("multipart/form-data", b"x"),
    "garbage": (BOUNDARY, b"garbage"),
    "empty": (BOUNDARY, b""),
    "unterminated": (BOUNDARY, b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nv'),
}


@pytest.mark.parametrize("case", MULTIPART_CASES, ids=list(MULTIPART_CASES))
def test_multipart_reads_as_starlette_did(case):
    content_type, body = MULTIPART_CASES[case]
    assert ours(content_type, body) == starlette_form(content_type, body)


def test_multipart_separates_fields_from_files():
    fields, files = parse_multipart(*reversed(MULTIPART_CASES["file and field"]))
    assert fields == {"h": "1"} and files == {"file": IMAGE}


# --- the v1 form rules


@pytest.mark.parametrize(
    ("fields", "files", "error", "message"),
    [
        ({}, {}, MissingInput, "missing image: send form field 'b64' (base64) or file 'file'"),
        ({"image": "x"}, {}, MissingInput, "or file 'file' (got 'image')"),
        (
            {"b64": "aGk=", "x": "1"},
            {},
            BadRequest,
            "unexpected form field 'x'; expected b64, file",
        ),
        ({"b64": "aGk="}, {"file": IMAGE}, BadRequest, "send the image once"),
        ({}, {"file": b""}, EmptyInput, "the uploaded file is empty"),
        ({"file": "text, no file"}, {}, MissingInput, "missing image"),
        ({"b64": "!!!!"}, {}, InvalidBase64, "the image is not valid base64"),
    ],
    ids=["nothing", "wrong name", "unknown field", "both", "empty file", "text file", "bad b64"],
)
def test_form_rules(fields, files, error, message):
    raised, text = error_of(image_from_form, fields, files)
    assert raised is error and message in text


def test_a_form_gives_the_image_and_its_other_fields():
    assert image_from_form({"heatmap": "false"}, {"file": IMAGE}, frozenset({"heatmap"})) == (
        IMAGE,
        {"heatmap": "false"},
    )
    assert image_from_form({}, {"b64": base64.b64encode(IMAGE)}) == (IMAGE, {})


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"data": {"b64": base64.b64encode(IMAGE).decode()}},
        {"files": {"b64": (None, base64.b64encode(IMAGE).decode())}},
        {"files": {"file": ("x.png", IMAGE, "image/png")}},
    ],
    ids=["urlencoded-b64", "multipart-b64", "multipart-file"],
)
def test_v1_takes_each_form_spelling(request_kwargs):
    assert v1_body(*encoded(**request_kwargs)) == IMAGE


@pytest.mark.parametrize(
    ("content_type", "body", "error", "message"),
    [
        ("", b"", MissingInput, "empty request: send the image as form field 'b64' or file"),
        ("text/plain", b"{}", UnsupportedMediaType, "content type 'text/plain' is not accepted"),
        (JSON, b'{"b64": "aGk="}', UnsupportedMediaType, "send application/x-www-form-urlencoded"),
        ("", b"b64=aGk=", UnsupportedMediaType, "content type 'missing' is not accepted"),
    ],
)
def test_v1_refuses_other_bodies(content_type, body, error, message):
    raised, text = error_of(v1_body, content_type, body)
    assert raised is error and message in text


# --- the v2 rules


def test_v2_takes_json_and_forms():
    b64 = base64.b64encode(IMAGE).decode()
    assert v2_body(*encoded(json={"image_b64": b64})) == (IMAGE, True)
    assert v2_body(*encoded(json={"image_b64": b64, "heatmap": False})) == (IMAGE, False)
    multipart = encoded(files={"file": ("x.png", IMAGE)}, data={"heatmap": "false"})
    assert v2_body(*multipart) == (IMAGE, False)
    assert v2_body(*encoded(data={"b64": b64})) == (IMAGE, True)


@pytest.mark.parametrize(
    ("content_type", "body", "error", "message"),
    [
        (JSON, b"", MissingInput, 'empty JSON body: send {"image_b64": ..., "heatmap": true}'),
        (JSON, b"{not json", InvalidJson, "the body is not valid JSON"),
        (JSON, b'{"image_b64": "\xff\xfe\xfa"}', InvalidJson, "the body is not valid JSON"),
        (JSON, b"[1, 2, 3]", InvalidRequest, 'the body must be a JSON object {"image_b64": ...}'),
        (JSON, b'{"heatmap": true}', MissingInput, "image_b64: Field required"),
        (JSON, b'{"image_b64": 12345}', InvalidRequest, "image_b64: Input should be"),
        (JSON, b'{"image_b64": "aGVsbG8=", "heatmap": 1}', InvalidRequest, "heatmap: Input"),
        (JSON, b'{"image_b64": "%%%%%%%%"}', InvalidBase64, "the image is not valid base64"),
        ("", b"", MissingInput, 'empty request: send JSON {"image_b64": ...} or multipart file'),
        ("text/plain", b"x", UnsupportedMediaType, "send application/json or multipart"),
        (FORM, b"b64=aGk=&heatmap=maybe", BadRequest, "heatmap must be true or false, not 'maybe'"),
        (FORM, b"b64=aGk=&heatmpa=true", BadRequest, "unexpected form field 'heatmpa'"),
    ],
)
def test_v2_refuses_bad_bodies_with_the_routes_messages(content_type, body, error, message):
    raised, text = error_of(v2_body, content_type, body)
    assert raised is error and message in text


def test_parse_v2_json_alone():
    body = json.dumps({"image_b64": base64.b64encode(IMAGE).decode(), "heatmap": False})
    assert parse_v2_json(body.encode()) == (IMAGE, False)


@pytest.mark.parametrize(("text", "value"), [("true", True), (" false ", False)])
def test_form_booleans_are_spelt_as_in_json(text, value):
    assert parse_form_bool(text) is value


@pytest.mark.parametrize("text", ["True", "1", "yes", ""])
def test_looser_form_booleans_are_refused(text):
    with pytest.raises(BadRequest, match="heatmap must be true or false"):
        parse_form_bool(text)
