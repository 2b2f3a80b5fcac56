"""Draw a class-activation heatmap over the image it explains, and encode the result.

A Grad-CAM is tiny (e.g. 14x14) and unitless; people need it stretched over the original
picture in colour to see *where* the model looked.
"""

from __future__ import annotations

import cv2
import numpy as np

from aistack.imaging.preprocess import to_grayscale_uint8


def colorize_heatmap(
    cam: np.ndarray, size: tuple[int, int], colormap: int = cv2.COLORMAP_JET
) -> np.ndarray:
    """A (h, w) map in 0..1 as a BGR uint8 image of ``size`` = (width, height).

    Resized before colouring so the colours blend smoothly instead of showing blocky cells;
    clipped afterwards because interpolation (and sloppy callers) can leave 0..1.
    """
    if cam.ndim != 2:
        raise ValueError(f"cam must be 2-D (h, w), got shape {cam.shape}")
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {size}")
    resized = cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    scaled = np.rint(np.clip(resized, 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.applyColorMap(scaled, colormap)


def blend(image: np.ndarray, colorized: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``colorized`` (BGR, image-sized) over ``image`` shown in grayscale, BGR uint8.

    The image is shown in grayscale, as the model saw it, so the heatmap colours stand out.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image_bgr = cv2.cvtColor(to_grayscale_uint8(image), cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(colorized, alpha, image_bgr, 1.0 - alpha, 0.0)


def overlay_heatmap(
    image: np.ndarray, cam: np.ndarray, alpha: float = 0.5, colormap: int = cv2.COLORMAP_JET
) -> np.ndarray:
    """Blend the coloured ``cam`` over ``image`` (any decoded image), BGR uint8 at its size."""
    height, width = image.shape[:2]
    return blend(image, colorize_heatmap(cam, (width, height), colormap), alpha)


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the longer side is at most ``max_side``; big uploads then overlay cheaply."""
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    height, width = image.shape[:2]
    longer = max(height, width)
    if longer <= max_side:
        return image
    scale = max_side / longer
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, new_size, interpolation=cv2.INTER_AREA)


def _encode(extension: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(extension, image, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode the image as {extension}")
    return buffer.tobytes()


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes: small, fine for photographic overlays shown in a browser."""
    return _encode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes; compression level 1 because encode speed matters more than size."""
    return _encode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
