"""Unit tests of aistack.imaging: safe decoding, model-input preprocessing and heatmap overlays.

Every test image is generated here (OpenCV, Pillow, numpy, hand-built bytes), so the tests
say exactly what each input is.
"""

from __future__ import annotations

import io
import re
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from aistack.errors import (
    AistackError,
    CorruptImage,
    EmptyInput,
    ImageTooLarge,
    NotAnImage,
    PayloadTooLarge,
    UnsupportedFormat,
)
from aistack.imaging import overlay
from aistack.imaging.decode import JPEG_MAGIC, PNG_MAGIC, decode_image
from aistack.imaging.overlay import (
    colorize_heatmap,
    encode_jpeg,
    encode_png,
    fit_within,
    overlay_heatmap,
)
from aistack.imaging.preprocess import to_grayscale_uint8, to_model_input

MAX_PIXELS = 1_000_000
MODEL_SIZE = 32
ORIENTATION_TAG = 0x0112


# --------------------------------------------------------------------------- helpers


def pil_bytes(image: Image.Image, image_format: str, **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **save_args)
    return buffer.getvalue()


def cv2_bytes(pixels: np.ndarray, extension: str) -> bytes:
    ok, buffer = cv2.imencode(extension, pixels)
    assert ok
    return buffer.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR claims ``width``x``height`` 8-bit gray pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def gradient(height: int, width: int) -> np.ndarray:
    """Smooth uint8 ramp: survives JPEG almost unchanged, and is not symmetric."""
    rows = np.linspace(0, 120, height)[:, None]
    cols = np.linspace(0, 120, width)[None, :]
    return (rows + cols).astype(np.uint8)


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def jpeg_noise() -> bytes:
    """A JPEG with lots of entropy-coded data, so cutting it in half cuts the scan."""
    return cv2_bytes(noise(64, 64), ".jpg")


@pytest.fixture(scope="module")
def png_noise() -> bytes:
    return cv2_bytes(noise(64, 64), ".png")


# --------------------------------------------------------------------------- decoding


def test_decode_jpeg_gray_stays_single_channel() -> None:
    pixels = gradient(30, 50)
    decoded = decode_image(pil_bytes(Image.fromarray(pixels, "L"), "JPEG", quality=95), MAX_PIXELS)
    assert decoded.format == "JPEG"
    assert decoded.pixels.shape == (30, 50)
    assert decoded.pixels.dtype == np.uint8
    assert (decoded.width, decoded.height) == (50, 30)
    assert np.abs(decoded.pixels.astype(int) - pixels).max() <= 4


def test_decode_jpeg_rgb_gives_luma() -> None:
    rgb = np.zeros((24, 48, 3), np.uint8)
    rgb[:, :24] = (220, 20, 20)  # red left half: luma 0.299*220 + 0.587*20 + 0.114*20 = 80
    rgb[:, 24:] = (20, 20, 220)  # blue right half: luma 43
    decoded = decode_image(pil_bytes(Image.fromarray(rgb, "RGB"), "JPEG", quality=95), MAX_PIXELS)
    assert decoded.format == "JPEG"
    assert decoded.pixels.shape == (24, 48)
    assert decoded.pixels.dtype == np.uint8
    assert abs(decoded.pixels[4:20, 4:20].mean() - 80) < 3
    assert abs(decoded.pixels[4:20, 28:44].mean() - 43) < 3


def test_decode_jpeg_rgb_matches_luma_of_colour_decode() -> None:
    """Gray straight from libjpeg (its Y channel) is what cvtColor made of the colour decode.

    Only for colours inside the RGB gamut: saturated noise clips on the way to RGB.
    """
    base = gradient(48, 64).astype(int)
    tinted = np.clip(np.stack([base + 12, base + 6, base], axis=2), 0, 255).astype(np.uint8)
    data = pil_bytes(Image.fromarray(tinted, "RGB"), "JPEG", quality=90)
    colour = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    expected = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY).astype(int)
    assert np.abs(decode_image(data, MAX_PIXELS).pixels.astype(int) - expected).max() <= 2


def test_decode_png_gray_8bit_is_exact() -> None:
    pixels = noise(17, 23, channels=1)
    decoded = decode_image(pil_bytes(Image.fromarray(pixels, "L"), "PNG"), MAX_PIXELS)
    assert decoded.format == "PNG"
    assert decoded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(decoded.pixels, pixels)


def luma(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(int)


def test_decode_png_rgb_8bit_gives_luma() -> None:
    rgb = noise(17, 23)
    decoded = decode_image(pil_bytes(Image.fromarray(rgb, "RGB"), "PNG"), MAX_PIXELS)
    assert decoded.pixels.shape == (17, 23)
    assert decoded.pixels.dtype == np.uint8
    # libpng's fixed-point luma may round differently from OpenCV's by one level.
    assert np.abs(decoded.pixels.astype(int) - luma(rgb[..., ::-1].copy())).max() <= 1


def test_decode_png_rgba_ignores_alpha() -> None:
    rgba = noise(17, 23, channels=4)
    rgba[..., 3] = 128  # half transparent everywhere
    decoded = decode_image(pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), MAX_PIXELS)
    assert decoded.pixels.shape == (17, 23)
    assert decoded.pixels.dtype == np.uint8
    expected = luma(rgba[..., 2::-1].copy())  # alpha dropped, not composited
    assert np.abs(decoded.pixels.astype(int) - expected).max() <= 1


def test_decode_png_gray_16bit_keeps_the_high_byte() -> None:
    pixels = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 109  # up to 65291
    decoded = decode_image(cv2_bytes(pixels, ".png"), MAX_PIXELS)
    assert decoded.format == "PNG"
    assert decoded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(decoded.pixels, pixels >> 8)


def test_decode_png_rgb_16bit_gives_8bit_luma() -> None:
    pixels = (noise(10, 12).astype(np.uint16) << 8) | 0xAB
    decoded = decode_image(cv2_bytes(pixels, ".png"), MAX_PIXELS)
    assert decoded.pixels.shape == (10, 12)
    assert decoded.pixels.dtype == np.uint8
    expected = luma((pixels >> 8).astype(np.uint8))
    assert np.abs(decoded.pixels.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("chunk", [b"gAMA", b"sRGB"])
def test_png_gamma_chunks_do_not_change_the_gray(chunk: bytes) -> None:
    """libpng would convert colour to gray in linear light; the model was trained on luma."""
    plain = cv2_bytes(noise(20, 20), ".png")
    payload = struct.pack(">I", 45455) if chunk == b"gAMA" else b"\x00"
    tagged = plain[:33] + png_chunk(chunk, payload) + plain[33:]
    np.testing.assert_array_equal(
        decode_image(tagged, MAX_PIXELS).pixels, decode_image(plain, MAX_PIXELS).pixels
    )


MODEL_INPUT_CASES = {
    "jpeg_gray": lambda: pil_bytes(Image.fromarray(gradient(30, 50), "L"), "JPEG"),
    "jpeg_rgb": lambda: pil_bytes(Image.fromarray(noise(30, 50), "RGB"), "JPEG"),
    "png_gray8": lambda: pil_bytes(Image.fromarray(noise(30, 50, 1), "L"), "PNG"),
    "png_rgb8": lambda: pil_bytes(Image.fromarray(noise(30, 50), "RGB"), "PNG"),
    "png_rgba8": lambda: pil_bytes(Image.fromarray(noise(30, 50, 4), "RGBA"), "PNG"),
    "png_gray16": lambda: cv2_bytes(np.full((30, 50), 40000, np.uint16), ".png"),
    "png_rgba16": lambda: cv2_bytes(np.full((30, 50, 4), 40000, np.uint16), ".png"),
    "png_palette": lambda: pil_bytes(Image.fromarray(noise(30, 50), "RGB").quantize(16), "PNG"),
    "png_interlaced": lambda: pil_bytes(Image.fromarray(noise(30, 50, 1), "L"), "PNG"),
    "png_small": lambda: pil_bytes(Image.fromarray(noise(8, 5, 1), "L"), "PNG"),  # upsampled
}


@pytest.mark.parametrize("name", MODEL_INPUT_CASES)
def test_to_model_input_shape_from_every_format(name: str) -> None:
    decoded = decode_image(MODEL_INPUT_CASES[name](), MAX_PIXELS)
    model_input = to_model_input(decoded.pixels, MODEL_SIZE)
    assert model_input.shape == (MODEL_SIZE, MODEL_SIZE, 1)
    assert model_input.dtype == np.uint8


@pytest.mark.parametrize("name", MODEL_INPUT_CASES)
def test_decode_gives_2d_uint8_from_every_format(name: str) -> None:
    pixels = decode_image(MODEL_INPUT_CASES[name](), MAX_PIXELS).pixels
    assert pixels.ndim == 2
    assert pixels.dtype == np.uint8


def test_to_model_input_maps_16bit_by_high_byte() -> None:
    decoded = decode_image(cv2_bytes(np.full((30, 50), 0x8000, np.uint16), ".png"), MAX_PIXELS)
    model_input = to_model_input(decoded.pixels, MODEL_SIZE)
    assert np.all(model_input == 0x80)


def test_to_model_input_gray_matches_color_luma() -> None:
    gray = noise(40, 40, 1)
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(to_model_input(bgr, 20), to_model_input(gray, 20))


# --------------------------------------------------------------------------- EXIF orientation


def bright_corner_jpeg(orientation: int) -> tuple[bytes, np.ndarray]:
    """40 wide x 20 high, dark, with a bright 8x8 block in its top-left corner as stored."""
    pixels = np.full((20, 40), 10, np.uint8)
    pixels[:8, :8] = 250
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    data = pil_bytes(Image.fromarray(pixels, "L"), "JPEG", quality=95, exif=exif.tobytes())
    return data, pixels


def test_exif_orientation_6_is_rotated_clockwise() -> None:
    data, _ = bright_corner_jpeg(6)
    decoded = decode_image(data, MAX_PIXELS)
    assert decoded.pixels.shape == (40, 20)  # now 20 wide x 40 high
    assert (decoded.width, decoded.height) == (20, 40)
    # Rotating 90° clockwise moves the stored top-left corner to the top-right.
    assert decoded.pixels[:8, -8:].mean() > 200
    for corner in (decoded.pixels[:8, :8], decoded.pixels[-8:, :8], decoded.pixels[-8:, -8:]):
        assert corner.mean() < 50


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_what_viewers_show(orientation: int) -> None:
    data, _ = bright_corner_jpeg(orientation)
    decoded = decode_image(data, MAX_PIXELS)
    with Image.open(io.BytesIO(data)) as image:
        expected = np.asarray(ImageOps.exif_transpose(image))
    assert decoded.pixels.shape == expected.shape
    assert np.abs(decoded.pixels.astype(int) - expected).max() <= 2


def test_exif_orientation_reaches_model_input() -> None:
    data, _ = bright_corner_jpeg(6)
    model_input = to_model_input(decode_image(data, MAX_PIXELS).pixels, 40)[:, :, 0]
    assert model_input[:8, -8:].mean() > model_input[:8, :8].mean() + 100


# --------------------------------------------------------------------------- limits


def test_png_declaring_huge_size_is_rejected_from_header() -> None:
    data = png_declaring(100_000, 100_000)
    assert len(data) < 200
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ImageTooLarge) as raised:
            decode_image(data, MAX_PIXELS)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert raised.value.status == 413
    assert elapsed < 1.0  # header only; decoding 10^10 pixels would take far longer
    assert peak < 10_000_000  # never allocates anything like the declared 10 GB


def test_png_declaring_huge_size_is_rejected_even_with_a_huge_limit() -> None:
    """A limit above what the decoders accept is lowered to theirs: still a clear 413."""
    with pytest.raises(ImageTooLarge, match="the limit is 1,073,741,824 pixels"):
        decode_image(png_declaring(100_000, 100_000), max_pixels=10**12)


def png_header_only(width: int, height: int, bits: int, colour_type: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"")


@pytest.mark.parametrize(
    ("width", "height", "limit"), [(7070, 7071, 40_000_000), (100_000, 100_000, 50_000_000)]
)
def test_over_limit_message_states_the_image_and_the_configured_limit(
    width: int, height: int, limit: int
) -> None:
    data = png_header_only(width, height, 16, 6) + png_chunk(b"IEND", b"")
    with pytest.raises(ImageTooLarge) as raised:
        decode_image(data, max_pixels=limit)
    message = raised.value.message
    assert f"{width}x{height} = {width * height:,} pixels" in message
    assert "4 channel(s) of 16 bits" in message
    assert message.endswith(f"the limit is {limit:,} pixels")
    assert "89,478,485" not in message and "decompression" not in message  # not Pillow's


def test_over_limit_jpeg_message_states_its_components() -> None:
    data = bytearray(cv2_bytes(noise(16, 16), ".jpg"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 5000, 6000)  # height, width
    with pytest.raises(ImageTooLarge, match=r"6000x5000 = 30,000,000 pixels, 3 channel\(s\) of 8"):
        decode_image(bytes(data), MAX_PIXELS)


def test_jpeg_declaring_huge_size_is_rejected_from_header() -> None:
    data = bytearray(cv2_bytes(gradient(16, 16), ".jpg"))
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)  # height, width
    with pytest.raises(ImageTooLarge):
        decode_image(bytes(data), MAX_PIXELS)


def test_ordinary_image_above_max_pixels_is_rejected() -> None:
    data = cv2_bytes(noise(100, 100, 1), ".png")
    with pytest.raises(ImageTooLarge) as raised:
        decode_image(data, max_pixels=9_999)
    assert raised.value.status == 413
    assert decode_image(data, max_pixels=10_000).pixels.shape == (100, 100)  # limit inclusive


def test_encoded_size_over_max_bytes_is_rejected_before_decoding() -> None:
    data = cv2_bytes(noise(100, 100, 1), ".png")
    with pytest.raises(PayloadTooLarge) as raised:
        decode_image(data, max_pixels=10_000, max_bytes=len(data) - 1)
    assert raised.value.status == 413
    assert decode_image(data, max_pixels=10_000, max_bytes=len(data)).pixels.shape == (100, 100)


def test_reduced_decode_keeps_the_shorter_side_at_least_min_side() -> None:
    data = cv2_bytes(noise(1200, 2000, 3), ".jpg")
    pixels = decode_image(data, max_pixels=10_000_000, min_side=256).pixels
    assert pixels.shape == (300, 500)  # 1/4 scale; 1/8 would be 150 < 256
    assert decode_image(data, max_pixels=10_000_000, min_side=700).pixels.shape == (1200, 2000)


@pytest.mark.parametrize(("height", "width"), [(1100, 1500), (1537, 1029), (2049, 4100)])
def test_reduced_decode_is_exactly_opencvs_power_of_two_scaling(height: int, width: int) -> None:
    """Training went through OpenCV's 1/2, 1/4, 1/8 DCT scaling: the pixels must not change."""
    data = cv2_bytes(noise(height, width, 3, seed=height), ".jpg")
    pixels = decode_image(data, max_pixels=10_000_000, min_side=512).pixels
    reduction = {1029: 2, 1100: 2, 2049: 4}[min(height, width)]
    flag = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4}[reduction]
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    np.testing.assert_array_equal(pixels, expected)


# --------------------------------------------------------------------------- damaged files


def test_truncated_jpeg_is_corrupt(jpeg_noise: bytes) -> None:
    with pytest.raises(CorruptImage):
        decode_image(jpeg_noise[: len(jpeg_noise) // 2], MAX_PIXELS)


def test_jpeg_missing_only_its_last_byte_is_corrupt(jpeg_noise: bytes) -> None:
    with pytest.raises(CorruptImage):
        decode_image(jpeg_noise[:-1], MAX_PIXELS)


def test_truncated_png_is_corrupt(png_noise: bytes) -> None:
    with pytest.raises(CorruptImage):
        decode_image(png_noise[: len(png_noise) // 2], MAX_PIXELS)


def test_truncated_progressive_jpeg_is_corrupt() -> None:
    data = pil_bytes(Image.fromarray(noise(64, 64), "RGB"), "JPEG", progressive=True)
    assert data.count(b"\xff\xda") > 1  # several scans
    assert decode_image(data, MAX_PIXELS).pixels.shape == (64, 64)
    for cut in (len(data) // 4, len(data) // 2, 3 * len(data) // 4):
        with pytest.raises(CorruptImage):
            decode_image(data[:cut], MAX_PIXELS)


def test_truncated_jpeg_with_embedded_preview_is_corrupt(jpeg_noise: bytes) -> None:
    """A preview JPEG in a header segment has its own SOS and EOI; they must not count."""
    preview = cv2_bytes(gradient(8, 8), ".jpg")
    segment = b"\xff\xe2" + struct.pack(">H", len(preview) + 2) + preview
    data = jpeg_noise[:2] + segment + jpeg_noise[2:]
    assert decode_image(data, MAX_PIXELS).pixels.shape == (64, 64)
    with pytest.raises(CorruptImage):
        decode_image(data[: len(segment) + len(jpeg_noise) // 2], MAX_PIXELS)


def test_jpeg_with_trailing_garbage_still_decodes(jpeg_noise: bytes) -> None:
    clean = decode_image(jpeg_noise, MAX_PIXELS).pixels
    padded = decode_image(jpeg_noise + b"trailing garbage\x00\x01" * 20, MAX_PIXELS).pixels
    np.testing.assert_array_equal(padded, clean)


@pytest.mark.parametrize(
    "trailer",
    [b"\xff\xda\x00\x0c" + b"x" * 40, bytes(noise(1, 100_000, 1, seed=7))],
    ids=["sos_marker_bytes", "random_100k"],
)
def test_jpeg_with_appended_data_containing_markers_still_decodes(
    jpeg_noise: bytes, trailer: bytes
) -> None:
    """Motion photos append a whole video after EOI; its bytes may hold FFDA anywhere."""
    clean = decode_image(jpeg_noise, MAX_PIXELS).pixels
    np.testing.assert_array_equal(decode_image(jpeg_noise + trailer, MAX_PIXELS).pixels, clean)


def test_png_with_trailing_garbage_still_decodes(png_noise: bytes) -> None:
    clean = decode_image(png_noise, MAX_PIXELS).pixels
    np.testing.assert_array_equal(decode_image(png_noise + b"junk" * 10, MAX_PIXELS).pixels, clean)


EOI = b"\xff\xd9"
IEND = png_chunk(b"IEND", b"")


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_truncated_jpeg_with_an_end_marker_appended_is_corrupt(
    fraction: float, progressive: bool
) -> None:
    """Appending FFD9 fools an end-marker check; libjpeg's corrupt-data warning does not."""
    data = pil_bytes(Image.fromarray(noise(256, 256), "RGB"), "JPEG", progressive=progressive)
    cut = data[: int(len(data) * fraction)] + EOI
    for min_side in (None, 64):  # DCT-scaled decoding reads all the entropy data too
        with pytest.raises(CorruptImage, match="premature end"):
            decode_image(cut, MAX_PIXELS, min_side=min_side)


def split_idat(data: bytes, size: int) -> tuple[bytes, list[bytes]]:
    """(signature + chunks before IDAT, the image data re-cut into IDAT chunks of ``size``)."""
    first = data.find(b"IDAT") - 4
    end = data.find(b"IEND") - 4
    stream, position = b"", first
    while position < end:
        length = struct.unpack(">I", data[position : position + 4])[0]
        stream += data[position + 8 : position + 8 + length]
        position += 12 + length
    return data[:first], [
        png_chunk(b"IDAT", stream[i : i + size]) for i in range(0, len(stream), size)
    ]


def test_truncated_png_with_iend_appended_is_corrupt(png_noise: bytes) -> None:
    head, idats = split_idat(png_noise, 1024)
    assert len(idats) > 4
    assert decode_image(head + b"".join(idats) + IEND, MAX_PIXELS).pixels.shape == (64, 64)
    cuts = {
        "inside_a_chunk": png_noise[: len(png_noise) // 2] + IEND,
        "at_a_chunk_boundary": head + b"".join(idats[: len(idats) // 2]) + IEND,
        "short_but_valid_zlib": head
        + png_chunk(b"IDAT", zlib.compress(zlib.decompress(b"".join(c[8:-4] for c in idats))[:999]))
        + IEND,
    }
    for name, data in cuts.items():
        with pytest.raises(CorruptImage):
            decode_image(data, MAX_PIXELS)
            pytest.fail(f"{name} was accepted")


def test_png_chunk_claiming_gigabytes_is_refused_from_the_header() -> None:
    """OpenCV would allocate a chunk's declared length before finding the data missing."""
    data = png_declaring(10, 10)
    bomb = data[:33] + struct.pack(">I", 1_500_000_000) + b"tEXt" + b"x" * 20 + IEND
    with pytest.raises(CorruptImage, match="chunk"):
        decode_image(bomb, MAX_PIXELS)


def test_animated_png_is_unsupported() -> None:
    """OpenCV decodes APNG frames through full-size RGBA buffers whatever is asked for."""
    data = png_declaring(10, 10)
    animation = png_chunk(b"acTL", struct.pack(">II", 2, 0))
    with pytest.raises(UnsupportedFormat, match="animated"):
        decode_image(data[:33] + animation + data[33:], MAX_PIXELS)


def test_cmyk_jpeg_is_unsupported() -> None:
    data = pil_bytes(Image.new("CMYK", (16, 16), (10, 20, 30, 40)), "JPEG")
    with pytest.raises(UnsupportedFormat, match="CMYK"):
        decode_image(data, MAX_PIXELS)


def test_12_bit_jpeg_is_unsupported() -> None:
    data = bytearray(cv2_bytes(gradient(16, 16), ".jpg"))
    data[data.find(b"\xff\xc0") + 4] = 12  # the frame's sample precision
    with pytest.raises(UnsupportedFormat, match="12-bit"):
        decode_image(bytes(data), MAX_PIXELS)


WORST_PNG_MEMORY = textwrap.dedent(
    """
    import struct, sys, zlib
    from aistack.imaging.decode import decode_image

    def chunk(kind, payload):
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    def peak_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    side = int(sys.argv[1])
    packer = zlib.compressobj(9)
    row = bytes(1 + side * 8)  # filter byte + RGBA, 16 bits a sample
    stream = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    data = (
        b"\\x89PNG\\r\\n\\x1a\\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0))
        + chunk(b"IDAT", stream)
        + chunk(b"IEND", b"")
    )
    before = peak_mb()
    pixels = decode_image(data, side * side).pixels
    print(pixels.shape[0], pixels.shape[1], pixels.dtype, peak_mb() - before)
    """
)


def test_worst_case_png_decodes_without_a_full_size_rgba16_copy() -> None:
    """A 16-bit RGBA PNG costs about its gray output (twice: OpenCV's array is copied for
    Python), not the 8 bytes a pixel of a colour decode."""
    side = 4000
    result = subprocess.run(
        [sys.executable, "-c", WORST_PNG_MEMORY, str(side)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    height, width, dtype, growth_mb = result.stdout.split()
    assert (int(height), int(width), dtype) == (side, side, "uint8")
    gray_mb = side * side / 2**20
    assert float(growth_mb) < 3 * gray_mb  # an RGBA16 intermediate alone would be 8 * gray_mb


# --------------------------------------------------------------------------- wrong inputs


def jpeg_with_size(height: int, width: int) -> bytes:
    data = bytearray(cv2_bytes(gradient(16, 16), ".jpg"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def other_format(image_format: str) -> bytes:
    return pil_bytes(Image.fromarray(noise(8, 8), "RGB"), image_format)


BAD_INPUTS: dict[str, tuple[bytes, type[AistackError]]] = {
    "empty": (b"", EmptyInput),
    "text": (b"name,age\nalice,42\nbob,37\n" * 4, NotAnImage),
    "json": (b'{"image": "not really"}', NotAnImage),
    "gif": (other_format("GIF"), UnsupportedFormat),
    "bmp": (other_format("BMP"), UnsupportedFormat),
    "tiff": (other_format("TIFF"), UnsupportedFormat),
    "webp": (other_format("WEBP"), UnsupportedFormat),
    "dicom": (b"\x00" * 128 + b"DICM" + b"\x00" * 64, CorruptImage),
    "jpeg_header_then_garbage": (b"\xff\xd8\xff" + bytes(noise(1, 500, 1, seed=3)), CorruptImage),
    "jpeg_app0_then_text": (b"\xff\xd8\xff\xe0" + b"hello world " * 40, CorruptImage),
    "png_signature_then_garbage": (b"\x89PNG\r\n\x1a\n" + b"garbage!" * 40, CorruptImage),
    "png_without_ihdr": (png_declaring(10, 10).replace(b"IHDR", b"IHDX"), CorruptImage),
    "png_huge": (png_declaring(100_000, 100_000), ImageTooLarge),
    "png_zero_width": (png_declaring(0, 10), CorruptImage),
    "png_zero_height": (png_declaring(10, 0), CorruptImage),
    "png_ihdr_bad_crc": (
        png_declaring(10, 10)[:29] + b"\x00\x00\x00\x00" + png_declaring(10, 10)[33:],
        CorruptImage,
    ),
    "png_invalid_colour_type": (png_header_only(10, 10, 8, 5) + IEND, CorruptImage),
    "png_invalid_bit_depth": (png_header_only(10, 10, 3, 0) + IEND, CorruptImage),
    "png_iend_before_idat": (png_declaring(10, 10)[:33] + IEND, CorruptImage),
    "jpeg_soi_then_eoi": (b"\xff\xd8\xff\xd9", CorruptImage),
    "jpeg_zero_height": (jpeg_with_size(0, 16), CorruptImage),
    "jpeg_zero_width": (jpeg_with_size(16, 0), CorruptImage),
    "jpeg_scan_before_frame": (b"\xff\xd8\xff\xda\x00\x08" + bytes(6) + EOI, CorruptImage),
    "jpeg_segment_length_zero": (b"\xff\xd8\xff\xe0\x00\x00" + bytes(40) + EOI, CorruptImage),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_raises_the_specific_error(name: str) -> None:
    data, expected = BAD_INPUTS[name]
    with pytest.raises(expected):
        decode_image(data, MAX_PIXELS)


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_every_decode_error_is_a_client_error(name: str) -> None:
    data, _ = BAD_INPUTS[name]
    with pytest.raises(AistackError) as raised:
        decode_image(data, MAX_PIXELS)
    error = raised.value
    assert 400 <= error.status < 500
    assert error.code and error.code != "internal_error"
    assert error.message


OBJECT_REPR = re.compile(r"<[^<>]*object at 0x[0-9a-fA-F]+")


def malformed_inputs() -> dict[str, bytes]:
    """Many broken uploads, each deterministic: random tails, cuts, flipped bytes, bad fields."""
    rng = np.random.default_rng(2024)
    jpeg = pil_bytes(Image.fromarray(noise(40, 48), "RGB"), "JPEG", quality=80)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    jpeg_exif = pil_bytes(Image.fromarray(gradient(40, 48), "L"), "JPEG", exif=exif.tobytes())
    png = cv2_bytes(noise(40, 48), ".png")
    cases: dict[str, bytes] = {}
    for magic_name, magic in (("png", PNG_MAGIC), ("jpeg", JPEG_MAGIC)):
        for i in range(40):
            tail = rng.integers(0, 256, int(rng.integers(0, 600)), dtype=np.uint8).tobytes()
            cases[f"{magic_name}_magic_random_{i}"] = magic + tail
    for name, valid, end in (
        ("jpeg", jpeg, EOI),
        ("jpeg_exif", jpeg_exif, EOI),
        ("png", png, IEND),
    ):
        for cut in np.linspace(1, len(valid) - 1, 25).astype(int):
            cases[f"{name}_cut_{cut}"] = valid[:cut]
            cases[f"{name}_cut_{cut}_end_appended"] = valid[:cut] + end
        for i in range(40):
            flipped = bytearray(valid)
            for position in rng.integers(2, len(valid), int(rng.integers(1, 6))):
                flipped[position] = int(rng.integers(0, 256))
            cases[f"{name}_flipped_{i}"] = bytes(flipped)
    app1 = jpeg_exif.find(b"Exif")
    for i in range(20):  # EXIF with a garbled TIFF block: orientation must fail soft
        garbled = bytearray(jpeg_exif)
        garbled[app1 + 6 : app1 + 40] = rng.integers(0, 256, 34, dtype=np.uint8).tobytes()
        cases[f"jpeg_exif_garbled_{i}"] = bytes(garbled)
    for width, height, bits, colour_type in ((0, 0, 8, 0), (1, 2**31, 8, 0), (2**32 - 1, 1, 16, 6)):
        cases[f"png_ihdr_{width}x{height}_{bits}_{colour_type}"] = (
            png_header_only(width, height, bits, colour_type) + IEND
        )
    cases["png_ihdr_too_long"] = PNG_MAGIC + png_chunk(b"IHDR", bytes(14)) + IEND
    cases["png_chunk_length_ffffffff"] = png[:33] + b"\xff\xff\xff\xffIDAT" + png[41:]
    cases["png_no_idat"] = png[:33] + png_chunk(b"tEXt", b"a\x00b") + IEND
    return cases


MALFORMED = malformed_inputs()


@pytest.mark.parametrize("min_side", [None, 16])
def test_malformed_inputs_give_4xx_errors_without_internals(min_side: int | None) -> None:
    """Every malformed input either decodes to gray or raises a 4xx AistackError whose message
    names no Python object (no ``<_io.BytesIO object at 0x...>``); nothing else escapes."""
    refused = 0
    for name, data in MALFORMED.items():
        try:
            pixels = decode_image(data, MAX_PIXELS, min_side=min_side).pixels
        except AistackError as error:
            refused += 1
            assert 400 <= error.status < 500, (name, error.status)
            assert error.message and not OBJECT_REPR.search(error.message), (name, error.message)
            assert "object at 0x" not in error.message, (name, error.message)
        else:
            assert pixels.ndim == 2 and pixels.dtype == np.uint8, name
    assert refused > len(MALFORMED) // 2  # most of them really are broken


def test_unsupported_format_message_names_the_format() -> None:
    with pytest.raises(UnsupportedFormat, match="GIF"):
        decode_image(other_format("GIF"), MAX_PIXELS)


# --------------------------------------------------------------------------- overlay


def hot_top_left_cam() -> np.ndarray:
    cam = np.zeros((14, 14), np.float32)
    cam[:4, :4] = 1.0
    return cam


def test_colorize_heatmap_upsamples_to_requested_size() -> None:
    colorized = colorize_heatmap(hot_top_left_cam(), (90, 60))  # (width, height)
    assert colorized.shape == (60, 90, 3)
    assert colorized.dtype == np.uint8
    jet = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_JET)[0]
    np.testing.assert_array_equal(colorized[0, 0], jet[1])  # hottest
    np.testing.assert_array_equal(colorized[-1, -1], jet[0])  # coldest


def test_colorize_heatmap_is_smooth_not_blocky() -> None:
    cam = np.array([[0.0, 1.0]], np.float32)
    colorized = colorize_heatmap(cam, (200, 1), cv2.COLORMAP_BONE)
    values = colorized[0, :, 0].astype(int)
    assert len(np.unique(values)) > 50  # many intermediate shades, not two blocks
    assert np.all(np.diff(values) >= 0)


def test_colorize_heatmap_clips_out_of_range_values() -> None:
    wild = np.array([[-3.0, 7.0]], np.float32)
    tame = np.array([[0.0, 1.0]], np.float32)
    size = (2, 1)  # no interpolation between the two cells
    np.testing.assert_array_equal(colorize_heatmap(wild, size), colorize_heatmap(tame, size))


def test_colorize_heatmap_accepts_float64_and_other_colormaps() -> None:
    cam = np.linspace(0, 1, 49, dtype=np.float64).reshape(7, 7)
    assert colorize_heatmap(cam, (21, 21), cv2.COLORMAP_VIRIDIS).shape == (21, 21, 3)


@pytest.mark.parametrize(
    "image",
    [
        noise(50, 70, 1),
        noise(50, 70, 3),
        noise(50, 70, 4),
        noise(50, 70, 1).astype(np.uint16) * 257,
    ],
    ids=["gray8", "bgr8", "bgra8", "gray16"],
)
def test_overlay_shape_and_dtype(image: np.ndarray) -> None:
    blended = overlay_heatmap(image, hot_top_left_cam())
    assert blended.shape == (50, 70, 3)
    assert blended.dtype == np.uint8


def test_overlay_alpha_zero_is_the_image_as_bgr() -> None:
    image = noise(50, 70, 3)
    expected = cv2.cvtColor(to_grayscale_uint8(image), cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(overlay_heatmap(image, hot_top_left_cam(), alpha=0.0), expected)


def test_overlay_alpha_zero_on_16bit_is_the_8bit_image() -> None:
    image = np.full((20, 20), 0x4000, np.uint16)
    blended = overlay_heatmap(image, hot_top_left_cam(), alpha=0.0)
    assert np.all(blended == 0x40)


def test_overlay_alpha_one_is_the_colorized_map() -> None:
    image, cam = noise(50, 70, 1), hot_top_left_cam()
    np.testing.assert_array_equal(
        overlay_heatmap(image, cam, alpha=1.0), colorize_heatmap(cam, (70, 50))
    )


def test_overlay_changes_most_where_the_cam_is_hot() -> None:
    image = np.full((112, 112), 128, np.uint8)
    plain = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR).astype(int)
    difference = np.abs(overlay_heatmap(image, hot_top_left_cam(), alpha=0.5) - plain).sum(axis=2)
    quadrants = {
        "top_left": difference[:56, :56].mean(),
        "top_right": difference[:56, 56:].mean(),
        "bottom_left": difference[56:, :56].mean(),
        "bottom_right": difference[56:, 56:].mean(),
    }
    assert max(quadrants, key=quadrants.__getitem__) == "top_left"
    assert quadrants["top_left"] > quadrants["bottom_right"]


@pytest.mark.parametrize("alpha", [-0.01, 1.01, float("nan")])
def test_overlay_rejects_alpha_outside_unit_interval(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        overlay_heatmap(noise(10, 10, 1), hot_top_left_cam(), alpha=alpha)


# --------------------------------------------------------------------------- fit_within


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [(200, 400, (50, 100)), (400, 200, (100, 50)), (300, 300, (100, 100)), (90, 1000, (9, 100))],
)
def test_fit_within_downscales_keeping_aspect_ratio(
    height: int, width: int, expected: tuple[int, int]
) -> None:
    fitted = fit_within(noise(height, width), 100)
    assert fitted.shape == (*expected, 3)
    assert fitted.dtype == np.uint8
    assert max(fitted.shape[:2]) == 100


def test_fit_within_leaves_small_images_alone() -> None:
    image = noise(60, 100, 1)
    assert fit_within(image, 100) is image
    assert fit_within(image, 1000) is image


def test_fit_within_keeps_16bit_depth_and_averages() -> None:
    image = np.full((400, 200), 1000, np.uint16)
    fitted = fit_within(image, 40)
    assert fitted.shape == (40, 20)
    assert fitted.dtype == np.uint16
    assert np.all(fitted == 1000)


# --------------------------------------------------------------------------- encoding


def test_encode_png_round_trips_exactly() -> None:
    image = overlay_heatmap(noise(30, 40, 1), hot_top_left_cam())
    data = encode_png(image)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded, image)


def test_encode_jpeg_round_trips_closely() -> None:
    image = cv2.cvtColor(gradient(60, 80), cv2.COLOR_GRAY2BGR)
    data = encode_jpeg(image, quality=95)
    assert data.startswith(b"\xff\xd8\xff")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image).mean() < 2


def test_encode_jpeg_quality_trades_size() -> None:
    image = noise(64, 64)
    assert len(encode_jpeg(image, quality=30)) < len(encode_jpeg(image, quality=95))


def test_encoded_overlay_is_accepted_by_decode_image() -> None:
    image = overlay_heatmap(noise(30, 40), hot_top_left_cam())
    assert decode_image(encode_png(image), MAX_PIXELS).pixels.shape == (30, 40)
    assert decode_image(encode_jpeg(image), MAX_PIXELS).pixels.shape == (30, 40)


@pytest.mark.parametrize("encode", [encode_jpeg, encode_png])
def test_encode_failure_raises_runtime_error(encode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlay.cv2, "imencode", lambda *args, **kwargs: (False, None))
    with pytest.raises(RuntimeError):
        encode(noise(4, 4))
