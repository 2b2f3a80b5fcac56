"""Base64 as clients really send it: padded or not, wrapped, URL-safe, as a data: URL."""

from __future__ import annotations

import base64
import random
import urllib.parse

import pytest

from aistack.api.inputs import decode_base64, parse_urlencoded, unquote_plus_bytes
from aistack.errors import BadRequest, EmptyInput, InvalidBase64

PAYLOAD = bytes(range(256)) * 40


@pytest.mark.parametrize(
    "encoded",
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
def test_accepted_spellings_decode_to_the_same_bytes(encoded):
    assert decode_base64(encoded) == PAYLOAD


@pytest.mark.parametrize("bad", ["not base64!", "abc$def", "====", "a"])
def test_garbage_is_invalid_base64(bad):
    with pytest.raises(InvalidBase64):
        decode_base64(bad)


@pytest.mark.parametrize("empty", ["", "   ", "data:image/png;base64,"])
def test_nothing_is_empty_input(empty):
    with pytest.raises(EmptyInput):
        decode_base64(empty)


def _reference_form(body: bytes) -> dict[str, bytes]:
    """The standard library's reading of a url-encoded form, last value winning."""
    text = body.decode("latin-1")
    pairs = (pair.partition("=") for pair in text.split("&") if pair)
    return {
        urllib.parse.unquote_plus(name, encoding="latin-1"): urllib.parse.unquote_to_bytes(
            value.replace("+", " ")
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
        encoded = urllib.parse.quote_plus(value, safe=rng.choice(["", "/", "=/"])).encode()
        assert unquote_plus_bytes(encoded) == value


def test_too_many_form_fields_are_refused():
    with pytest.raises(BadRequest, match="too many form fields"):
        parse_urlencoded(b"&".join(b"f%d=1" % i for i in range(21)))
