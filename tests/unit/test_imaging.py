"""Unit tests of aistack.imaging: safe decoding, model-input preprocessing and heatmap overlays.

Every test image is generated here (OpenCV, Pillow, numpy, hand-built bytes), so the tests
say exactly what each input is.
"""

from __future__ import annotations

import io
import struct
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
from aistack.imaging.decode import decode_image
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


def test_decode_jpeg_rgb_gives_bgr() -> None:
    rgb = np.zeros((24, 48, 3), np.uint8)
    rgb[:, :24] = (220, 20, 20)  # red left half
    rgb[:, 24:] = (20, 20, 220)  # blue right half
    decoded = decode_image(pil_bytes(Image.fromarray(rgb, "RGB"), "JPEG", quality=95), MAX_PIXELS)
    assert decoded.format == "JPEG"
    assert decoded.pixels.shape == (24, 48, 3)
    assert decoded.pixels.dtype == np.uint8
    left, right = decoded.pixels[4:20, 4:20], decoded.pixels[4:20, 28:44]
    assert left[..., 2].mean() > 200 and left[..., 0].mean() < 50  # red is channel 2 in BGR
    assert right[..., 0].mean() > 200 and right[..., 2].mean() < 50


def test_decode_png_gray_8bit_is_exact() -> None:
    pixels = noise(17, 23, channels=1)
    decoded = decode_image(pil_bytes(Image.fromarray(pixels, "L"), "PNG"), MAX_PIXELS)
    assert decoded.format == "PNG"
    assert decoded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(decoded.pixels, pixels)


def test_decode_png_rgb_8bit_is_exact_bgr() -> None:
    rgb = noise(17, 23)
    decoded = decode_image(pil_bytes(Image.fromarray(rgb, "RGB"), "PNG"), MAX_PIXELS)
    assert decoded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(decoded.pixels, rgb[..., ::-1])


def test_decode_png_rgba_keeps_colour() -> None:
    rgba = noise(17, 23, channels=4)
    rgba[..., 3] = 128  # half transparent everywhere
    decoded = decode_image(pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), MAX_PIXELS)
    assert decoded.pixels.dtype == np.uint8
    # ANYCOLOR without UNCHANGED drops alpha: the colour channels come back as BGR.
    assert decoded.pixels.shape == (17, 23, 3)
    np.testing.assert_array_equal(decoded.pixels, rgba[..., 2::-1])


def test_decode_png_gray_16bit_keeps_depth_and_values() -> None:
    pixels = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 109  # up to 65291
    decoded = decode_image(cv2_bytes(pixels, ".png"), MAX_PIXELS)
    assert decoded.format == "PNG"
    assert decoded.pixels.dtype == np.uint16
    np.testing.assert_array_equal(decoded.pixels, pixels)
    assert decoded.pixels.max() > 255


def test_decode_png_rgb_16bit_keeps_depth() -> None:
    pixels = (noise(10, 12).astype(np.uint16) << 8) | 0xAB
    decoded = decode_image(cv2_bytes(pixels, ".png"), MAX_PIXELS)
    assert decoded.pixels.dtype == np.uint16
    np.testing.assert_array_equal(decoded.pixels, pixels)


MODEL_INPUT_CASES = {
    "jpeg_gray": lambda: pil_bytes(Image.fromarray(gradient(30, 50), "L"), "JPEG"),
    "jpeg_rgb": lambda: pil_bytes(Image.fromarray(noise(30, 50), "RGB"), "JPEG"),
    "png_gray8": lambda: pil_bytes(Image.fromarray(noise(30, 50, 1), "L"), "PNG"),
    "png_rgb8": lambda: pil_bytes(Image.fromarray(noise(30, 50), "RGB"), "PNG"),
    "png_rgba8": lambda: pil_bytes(Image.fromarray(noise(30, 50, 4), "RGBA"), "PNG"),
    "png_gray16": lambda: cv2_bytes(np.full((30, 50), 40000, np.uint16), ".png"),
    "png_small": lambda: pil_bytes(Image.fromarray(noise(8, 5, 1), "L"), "PNG"),  # upsampled
}


@pytest.mark.parametrize("name", MODEL_INPUT_CASES)
def test_to_model_input_shape_from_every_format(name: str) -> None:
    decoded = decode_image(MODEL_INPUT_CASES[name](), MAX_PIXELS)
    model_input = to_model_input(decoded.pixels, MODEL_SIZE)
    assert model_input.shape == (MODEL_SIZE, MODEL_SIZE, 1)
    assert model_input.dtype == np.uint8


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
    """Pillow's decompression-bomb guard also answers 413, not a generic 422."""
    with pytest.raises(ImageTooLarge):
        decode_image(png_declaring(100_000, 100_000), max_pixels=10**12)


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
    assert pixels.shape == (300, 500)  # 1/4 scale, gray; 1/8 would be 150 < 256
    assert decode_image(data, max_pixels=10_000_000, min_side=700).pixels.shape == (1200, 2000, 3)


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
    assert decode_image(data, MAX_PIXELS).pixels.shape == (64, 64, 3)
    for cut in (len(data) // 4, len(data) // 2, 3 * len(data) // 4):
        with pytest.raises(CorruptImage):
            decode_image(data[:cut], MAX_PIXELS)


def test_truncated_jpeg_with_embedded_preview_is_corrupt(jpeg_noise: bytes) -> None:
    """A preview JPEG in a header segment has its own SOS and EOI; they must not count."""
    preview = cv2_bytes(gradient(8, 8), ".jpg")
    segment = b"\xff\xe2" + struct.pack(">H", len(preview) + 2) + preview
    data = jpeg_noise[:2] + segment + jpeg_noise[2:]
    assert decode_image(data, MAX_PIXELS).pixels.shape == (64, 64, 3)
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


# --------------------------------------------------------------------------- wrong inputs


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
    "dicom": (b"\x00" * 128 + b"DICM" + b"\x00" * 64, UnsupportedFormat),
    "jpeg_header_then_garbage": (b"\xff\xd8\xff" + bytes(noise(1, 500, 1, seed=3)), CorruptImage),
    "jpeg_app0_then_text": (b"\xff\xd8\xff\xe0" + b"hello world " * 40, CorruptImage),
    "png_signature_then_garbage": (b"\x89PNG\r\n\x1a\n" + b"garbage!" * 40, CorruptImage),
    "png_without_ihdr": (png_declaring(10, 10).replace(b"IHDR", b"IHDX"), CorruptImage),
    "png_huge": (png_declaring(100_000, 100_000), ImageTooLarge),
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
    assert decode_image(encode_png(image), MAX_PIXELS).pixels.shape == (30, 40, 3)
    assert decode_image(encode_jpeg(image), MAX_PIXELS).pixels.shape == (30, 40, 3)


@pytest.mark.parametrize("encode", [encode_jpeg, encode_png])
def test_encode_failure_raises_runtime_error(encode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlay.cv2, "imencode", lambda *args, **kwargs: (False, None))
    with pytest.raises(RuntimeError):
        encode(noise(4, 4))
