"""Decode JPEG, PNG and DICOM uploads safely: the header is checked before any pixel is read.

Every image is decoded straight to what the model and the overlays use, one 8-bit gray
channel, so an upload costs at most width x height bytes of output however many channels
and bits it declares (a 16-bit RGBA PNG would otherwise take 8 times that). JPEGs are
decoded by libjpeg-turbo in strict mode (simplejpeg): corrupt or truncated entropy data,
which plain libjpeg fills with grey and accepts, is refused. PNGs go through OpenCV's libpng
path, which converts each row to gray as it is read.

Supported: 8-bit gray or YCbCr/RGB JPEG (baseline or progressive, EXIF orientation applied),
non-animated PNG (1 to 16 bits, gray, RGB, palette, with or without alpha), and DICOM Part 10
files, recognised by ``DICM`` after their 128-byte preamble and decoded by
:mod:`aistack.imaging.dicom` (pydicom, loaded on the first DICOM only). Anything else gets a
clear 4xx error instead of a decoder crash.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import cv2
import numpy as np
import simplejpeg

from aistack.errors import (
    CorruptImage,
    EmptyInput,
    ImageTooLarge,
    NotAnImage,
    PayloadTooLarge,
    UnsupportedFormat,
)

if TYPE_CHECKING:
    from aistack.imaging.dicom import DicomIdentifiers

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DICOM_MAGIC = b"DICM"
DICOM_PREAMBLE = 128
"""A DICOM Part 10 file: a 128-byte preamble (any bytes), then ``DICM``."""
ACCEPTED = "send JPEG, PNG or DICOM"

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

DECODER_MAX_PIXELS = 1 << 30
"""OpenCV's own ceiling (CV_IO_MAX_IMAGE_PIXELS): a configured limit above it is lowered to it,
so every over-limit image gets the same clear error rather than a decoder failure."""

MAX_HEADER_SEGMENTS = 10_000
"""Real headers have tens of JPEG segments or PNG chunks; walking millions of empty ones
would only burn CPU."""

ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageHeader:
    """What the header declares, read without decoding a pixel.

    ``channels`` counts stored samples per pixel (alpha included, a palette index is one);
    ``data_offset`` is where the compressed pixels start: JPEG's first start-of-scan, PNG's
    first IDAT chunk.
    """

    format: str  # "JPEG" | "PNG" | "DICOM"
    width: int
    height: int
    channels: int
    bits: int
    data_offset: int
    orientation: int = 1  # EXIF, JPEG only; OpenCV applies PNG's itself

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def describe(self) -> str:
        return (
            f"{self.width}x{self.height} = {self.pixels:,} pixels, "
            f"{self.channels} channel(s) of {self.bits} bits"
        )


@dataclass(frozen=True)
class DecodedImage:
    """The image as a 2-D uint8 gray array (EXIF orientation applied) and its format.

    ``dicom`` carries a DICOM file's patient, study, series, instance and accession
    identifiers, so that a prediction can be traced back to the exam; None for JPEG and PNG.
    """

    pixels: np.ndarray
    format: str  # "JPEG" | "PNG" | "DICOM"
    dicom: DicomIdentifiers | None = None

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def is_dicom(data: bytes) -> bool:
    """A DICOM Part 10 file, by content: ``DICM`` after the preamble (a file name says nothing)."""
    return data[DICOM_PREAMBLE : DICOM_PREAMBLE + len(DICOM_MAGIC)] == DICOM_MAGIC


def sniff_format(data: bytes) -> str:
    """``"JPEG"``, ``"PNG"`` or ``"DICOM"``; raises for anything else."""
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    if data.startswith(PNG_MAGIC):
        return "PNG"
    if is_dicom(data):
        return "DICOM"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        raise UnsupportedFormat(f"WebP images are not supported; {ACCEPTED}")
    for magic, name in OTHER_IMAGE_MAGICS.items():
        if data.startswith(magic):
            raise UnsupportedFormat(f"{name} images are not supported; {ACCEPTED}")
    raise NotAnImage("the data is not a JPEG, PNG or DICOM image")


def _dicom() -> ModuleType:
    """The DICOM decoder, imported on first use: JPEG/PNG-only work never loads pydicom."""
    from aistack.imaging import dicom  # noqa: PLC0415

    return dicom


def read_header(data: bytes) -> ImageHeader:
    """Size, channels and bit depth from the header alone; raises 4xx errors."""
    image_format = sniff_format(data)
    if image_format == "DICOM":
        return _dicom().read_dicom_header(data).image
    header = _read_jpeg_header(data) if image_format == "JPEG" else _read_png_header(data)
    if header.width <= 0 or header.height <= 0:
        raise CorruptImage(
            f"the {image_format} header declares a size of {header.width}x{header.height}"
        )
    return header


# --------------------------------------------------------------------------- JPEG header

SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # not DHT, JPG, DAC
LOSSLESS_OR_HIERARCHICAL = frozenset({0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF})
STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: no length
SOS, EOI, APP1 = 0xDA, 0xD9, 0xE1


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(marker, offset, payload) of each header segment, up to and including the first SOS.

    Segments are skipped by their length, so marker bytes inside them (an EXIF thumbnail is
    a whole JPEG) are never mistaken for the main image's.
    """
    position = 2
    for _ in range(MAX_HEADER_SEGMENTS):
        if position + 2 > len(data):
            raise CorruptImage("the JPEG header is truncated")
        if data[position] != 0xFF:
            raise CorruptImage("the JPEG header is malformed")
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before a marker
            position += 1
            continue
        if marker in STANDALONE_MARKERS:
            position += 2
            continue
        if marker == EOI:
            raise CorruptImage("the JPEG data ends before any image data")
        if position + 4 > len(data):
            raise CorruptImage("the JPEG header is truncated")
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        end = position + 2 + length
        if length < 2 or end > len(data):
            raise CorruptImage("the JPEG header is truncated or malformed")
        yield marker, position, data[position + 4 : end]
        if marker == SOS:
            return
        position = end
    raise CorruptImage(f"the JPEG header has more than {MAX_HEADER_SEGMENTS:,} segments")


def _read_jpeg_header(data: bytes) -> ImageHeader:
    frame: tuple[int, bytes] | None = None
    orientation: int | None = None  # from the first EXIF block only, as viewers do
    for marker, offset, payload in _jpeg_segments(data):
        if marker in SOF_MARKERS and frame is None:
            frame = marker, payload
        elif marker == APP1 and orientation is None and payload.startswith(b"Exif\x00\x00"):
            orientation = exif_orientation(payload[6:])
        elif marker == SOS:
            if frame is None:
                raise CorruptImage("the JPEG data has no frame header before its image data")
            return _jpeg_frame_header(*frame, scan_offset=offset, orientation=orientation or 1)
    # Not reached: the walk ends at SOS or raises; this keeps the return type honest.
    raise CorruptImage("the JPEG header is malformed")


def _jpeg_frame_header(
    marker: int, payload: bytes, scan_offset: int, orientation: int
) -> ImageHeader:
    """The start-of-frame segment: precision, height, width, component count."""
    if len(payload) < 6:
        raise CorruptImage("the JPEG frame header is truncated")
    bits, height, width, channels = struct.unpack(">BHHB", payload[:6])
    if marker in LOSSLESS_OR_HIERARCHICAL:
        raise UnsupportedFormat(
            "lossless and hierarchical JPEG are not supported; send JPEG or PNG"
        )
    if bits != 8:
        raise UnsupportedFormat(f"{bits}-bit JPEG images are not supported; send 8-bit JPEG or PNG")
    if channels == 4:
        raise UnsupportedFormat("CMYK JPEG images are not supported; send grayscale or RGB")
    if channels not in (1, 3):
        raise UnsupportedFormat(f"JPEG images with {channels} components are not supported")
    return ImageHeader("JPEG", width, height, channels, bits, scan_offset, orientation)


def exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (1-8) of an EXIF block's first IFD; 1 when absent or unreadable."""
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (first_ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, first_ifd)
        for index in range(count):
            tag, kind, _, value = struct.unpack_from(
                order + "HHIH", tiff, first_ifd + 2 + 12 * index
            )
            if tag == ORIENTATION_TAG and kind == 3:  # SHORT
                return value if 1 <= value <= 8 else 1
    except (KeyError, struct.error):
        pass
    return 1


# --------------------------------------------------------------------------- PNG header

PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> stored samples per pixel
PNG_BIT_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}
PNG_MAX_CHUNK = 2**31 - 1

GAMMA_CHUNKS = frozenset({b"gAMA", b"sRGB", b"cHRM", b"iCCP", b"cICP"})
"""With any of these, libpng converts colour to gray in linear light; without, it takes the
luma of the stored values as OpenCV's cvtColor does, which is what the model was trained on."""


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, start, end) of each chunk, up to and including the first IDAT.

    Every declared length is checked against the data first: OpenCV allocates a chunk's
    declared size before reading it, so a 50-byte file claiming a 2 GB chunk would cost 2 GB.
    """
    position = len(PNG_MAGIC)
    for _ in range(MAX_HEADER_SEGMENTS):
        if position + 12 > len(data):
            raise CorruptImage("the PNG data ends before any image data")
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if length > PNG_MAX_CHUNK or end > len(data):
            raise CorruptImage("a PNG chunk is truncated or declares an impossible length")
        yield kind, position, end
        if kind == b"IDAT":
            return
        if kind == b"IEND":
            raise CorruptImage("the PNG data has no image data")
        position = end
    raise CorruptImage(f"the PNG header has more than {MAX_HEADER_SEGMENTS:,} chunks")


def _read_png_header(data: bytes) -> ImageHeader:
    chunks = _png_chunks(data)
    kind, start, end = next(chunks)
    if kind != b"IHDR" or end - start != 25:
        raise CorruptImage("the PNG data does not start with a valid IHDR chunk")
    if zlib.crc32(data[start + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
        raise CorruptImage("the PNG IHDR chunk is damaged (CRC mismatch)")
    width, height, bits, colour_type = struct.unpack(">IIBB", data[start + 8 : start + 18])
    if bits not in PNG_BIT_DEPTHS.get(colour_type, ()):
        raise CorruptImage(
            f"the PNG header declares an invalid colour type {colour_type} with {bits} bits"
        )
    for kind, start, _ in chunks:
        if kind == b"acTL":
            raise UnsupportedFormat(
                "animated PNG (APNG) images are not supported; send a still image"
            )
        if kind == b"IDAT":
            return ImageHeader("PNG", width, height, PNG_CHANNELS[colour_type], bits, start)
    # Not reached: the walk ends at IDAT or raises.
    raise CorruptImage("the PNG data has no image data")


# --------------------------------------------------------------------------- decoding


def check_pixel_limit(header: ImageHeader, max_pixels: int) -> None:
    """Refuse an image over ``max_pixels`` (capped at what the decoders accept), saying both."""
    limit = min(max_pixels, DECODER_MAX_PIXELS)
    if header.pixels > limit:
        raise ImageTooLarge(f"image is {header.describe()}; the limit is {limit:,} pixels")


def _is_complete(data: bytes, header: ImageHeader) -> bool:
    """A cheap end-marker check before decoding, for a clear "truncated" error.

    In JPEG entropy-coded data 0xFF is always stuffed, so an EOI marker (FFD9) after the
    first start-of-scan means the data reached an end; only the first EOI counts, as data
    appended after it (motion-photo videos, camera trailers) may hold any bytes. Appending
    FFD9 to a cut file fools this check, not the strict decoder.
    """
    if header.format == "JPEG":
        return data.find(b"\xff\xd9", header.data_offset) > header.data_offset
    return data.find(b"IEND", header.data_offset) > 0


def jpeg_reduction(width: int, height: int, min_side: int) -> int:
    """Largest JPEG DCT scale-down (1, 2, 4, 8) that keeps the shorter side >= ``min_side``."""
    shorter = min(width, height)
    return max((f for f in (1, 2, 4, 8) if shorter // f >= min_side), default=1)


def _decode_jpeg(data: bytes, header: ImageHeader, min_side: int | None) -> np.ndarray:
    """Gray, scaled by 1/``jpeg_reduction`` in the DCT domain; any libjpeg warning is an error.

    simplejpeg picks the smallest of libjpeg's scales (n/8) whose output is at least the
    given size; asking for exactly the 1/f size gets exactly 1/f, as OpenCV's
    IMREAD_REDUCED_GRAYSCALE_f did, so the model sees the pixels it was trained on.
    """
    reduction = jpeg_reduction(header.width, header.height, min_side) if min_side else 1
    try:
        pixels = simplejpeg.decode_jpeg(
            data,
            colorspace="GRAY",
            min_height=-(-header.height // reduction),
            min_width=-(-header.width // reduction),
            strict=True,
        )
    except ValueError as error:
        raise CorruptImage(
            f"the JPEG data could not be decoded: {_decoder_reason(error)}"
        ) from error
    return apply_orientation(pixels[:, :, 0], header.orientation)


def _decoder_reason(error: Exception) -> str:
    """libjpeg's own words, without a TurboJPEG function prefix, and short."""
    reason = re.sub(r"^\w+\(\):\s*", "", str(error)).strip()
    return reason[:200] or "unknown decoder error"


ORIENTATIONS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda p: cv2.flip(p, 1),
    3: lambda p: cv2.rotate(p, cv2.ROTATE_180),
    4: lambda p: cv2.flip(p, 0),
    5: cv2.transpose,
    6: lambda p: cv2.rotate(p, cv2.ROTATE_90_CLOCKWISE),
    7: lambda p: cv2.rotate(cv2.transpose(p), cv2.ROTATE_180),
    8: lambda p: cv2.rotate(p, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels the way EXIF ``orientation`` says viewers show them."""
    transform = ORIENTATIONS.get(orientation)
    return transform(pixels) if transform else pixels


def _without_gamma_chunks(data: bytes, header: ImageHeader) -> bytes:
    """The PNG without colour-management chunks before its image data (see GAMMA_CHUNKS)."""
    kept = [
        data[start:end]
        for kind, start, end in _png_chunks(data)
        if start < header.data_offset and kind not in GAMMA_CHUNKS
    ]
    if sum(len(c) for c in kept) == header.data_offset - len(PNG_MAGIC):
        return data
    return b"".join([PNG_MAGIC, *kept, data[header.data_offset :]])


def _decode_png(data: bytes, header: ImageHeader) -> np.ndarray:
    """Gray 8-bit via libpng's row transforms (strip alpha, RGB to gray, 16 to 8 bits)."""
    buffer = np.frombuffer(_without_gamma_chunks(data, header), dtype=np.uint8)
    try:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
    except cv2.error:
        pixels = None
    if pixels is None or pixels.size == 0:
        raise CorruptImage("the PNG data is corrupt or incomplete and could not be decoded")
    return pixels


def decode_image(
    data: bytes, max_pixels: int, min_side: int | None = None, max_bytes: int | None = None
) -> DecodedImage:
    """Check, then decode to 2-D uint8 gray. Raises an :class:`~aistack.errors.AistackError` (4xx).

    Limits come first: the encoded size (``max_bytes``), then the pixel count the header
    declares (``max_pixels``), so a decompression bomb is refused without allocating.

    With ``min_side``, a large JPEG is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain,
    keeping its shorter side at least ``min_side``: several times faster than a full decode
    and all that the model input and overlays need. PNG and DICOM have no such scaling.
    """
    if not data:
        raise EmptyInput("the image is empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(f"image of {len(data):,} bytes exceeds the limit of {max_bytes:,}")
    if sniff_format(data) == "DICOM":
        return _dicom().decode_dicom(data, max_pixels)
    header = read_header(data)
    check_pixel_limit(header, max_pixels)
    if not _is_complete(data, header):
        raise CorruptImage(f"the {header.format} data is truncated")
    if header.format == "JPEG":
        pixels = _decode_jpeg(data, header, min_side)
    else:
        pixels = _decode_png(data, header)
    return DecodedImage(pixels=pixels, format=header.format)
