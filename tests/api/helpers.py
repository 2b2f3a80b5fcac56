"""Small builders of request bodies and bad images for the API tests."""

from __future__ import annotations

import base64
import io
import re
import struct
import zlib

import numpy as np
from PIL import Image


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format="GIF")
    return buffer.getvalue()


SIGNED_URL_TOKEN = re.compile(r"token=[^&\"]+")


def unsigned(value: object) -> object:
    """The JSON with URL signatures blanked: they carry the second they were made."""
    return SIGNED_URL_TOKEN.sub("token=", str(value))
