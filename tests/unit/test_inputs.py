"""Base64 as clients really send it: padded or not, wrapped, URL-safe, as a data: URL."""

from __future__ import annotations

import base64

import pytest

from aistack.api.inputs import decode_base64
from aistack.errors import EmptyInput, InvalidBase64

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
