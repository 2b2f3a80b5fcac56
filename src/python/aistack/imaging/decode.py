"""Decode JPEG and PNG uploads safely: size limits are checked on the header, before decoding.

Supported: JPEG (baseline/progressive, EXIF orientation applied) and PNG (8/16 bit,
grayscale, RGB, RGBA). Anything else gets a clear error instead of a decoder crash.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from aistack.errors import (
    CorruptImage,
    EmptyInput,
    ImageTooLarge,
    NotAnImage,
    PayloadTooLarge,
    UnsupportedFormat,
)

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Recognised but not served, so the client learns what it sent.
OTHER_IMAGE_MAGICS: dict[bytes, str] = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
    b"\xff\x4f\xff\x51": "JPEG 2000",
}


@dataclass(frozen=True)
class DecodedImage:
    """Pixels as OpenCV gives them (gray or BGR; uint8 or uint16) and what they came from."""

    pixels: np.ndarray
    format: str  # "JPEG" | "PNG"

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def sniff_format(data: bytes) -> str:
    """``"JPEG"`` or ``"PNG"``; raises for anything else."""
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    if data.startswith(PNG_MAGIC):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        raise UnsupportedFormat("WebP images are not supported; send JPEG or PNG")
    if data[128:132] == b"DICM":
        raise UnsupportedFormat("DICOM is not supported on this endpoint; send JPEG or PNG")
    for magic, name in OTHER_IMAGE_MAGICS.items():
        if data.startswith(magic):
            raise UnsupportedFormat(f"{name} images are not supported; send JPEG or PNG")
    raise NotAnImage("the data is not a JPEG or PNG image")


def read_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                return header.size
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"image declares too many pixels: {error}") from error
    except Exception as error:  # any header failure means a broken file
        raise CorruptImage(f"cannot read the image header: {error}") from error


def _first_scan_offset(data: bytes) -> int:
    """Offset of the main image's first start-of-scan (FFDA) marker, or -1.

    Header segments are skipped by their length, so SOS/EOI bytes inside them (an EXIF
    thumbnail is a whole JPEG) are not mistaken for the main image's.
    """
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return -1
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker == 0xDA:
            return position
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return -1


def _is_complete(data: bytes, image_format: str) -> bool:
    """Truncated uploads decode to grey garbage with libjpeg; detect them by the end marker.

    In JPEG entropy-coded data 0xFF is always stuffed, so an EOI marker (FFD9) after the
    first start-of-scan (FFDA) means the scan data ended properly. Only the first EOI counts:
    data appended after it (motion-photo videos, camera trailers) may hold any bytes.
    """
    if image_format == "JPEG":
        scan = _first_scan_offset(data)
        return scan >= 0 and data.find(b"\xff\xd9", scan) > scan
    return data.rfind(b"IEND") > 0


REDUCED_GRAYSCALE_FLAGS = {
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def jpeg_reduction(width: int, height: int, min_side: int) -> int:
    """Largest JPEG DCT scale-down (1, 2, 4, 8) that keeps the shorter side >= ``min_side``."""
    shorter = min(width, height)
    return max((f for f in (1, 2, 4, 8) if shorter // f >= min_side), default=1)


def decode_image(
    data: bytes, max_pixels: int, min_side: int | None = None, max_bytes: int | None = None
) -> DecodedImage:
    """Check, then decode. Raises an :class:`~aistack.errors.AistackError` with a 4xx status.

    Limits come first: the encoded size (``max_bytes``), then the pixel count the header
    declares (``max_pixels``), so a decompression bomb is refused without allocating.

    With ``min_side``, a large JPEG is decoded to grayscale at 1/2, 1/4 or 1/8 scale in the
    DCT domain, keeping its shorter side at least ``min_side``: several times faster than a
    full decode, for callers that only need a smaller gray image (model input, overlays).
    """
    if not data:
        raise EmptyInput("the image is empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(f"image of {len(data):,} bytes exceeds the limit of {max_bytes:,}")
    image_format = sniff_format(data)
    width, height = read_dimensions(data)
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
        )
    if not _is_complete(data, image_format):
        raise CorruptImage(f"the {image_format} data is truncated")
    buffer = np.frombuffer(data, dtype=np.uint8)
    reduction = (
        jpeg_reduction(width, height, min_side) if image_format == "JPEG" and min_side else 1
    )
    # ANYDEPTH keeps 16-bit PNGs, ANYCOLOR keeps gray as gray; EXIF orientation is applied.
    flags = REDUCED_GRAYSCALE_FLAGS.get(reduction, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    pixels = cv2.imdecode(buffer, flags)
    if pixels is None or pixels.size == 0:
        raise CorruptImage(f"the {image_format} data could not be decoded")
    return DecodedImage(pixels=pixels, format=image_format)
