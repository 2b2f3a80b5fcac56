"""Turn a decoded image into the model's input: one grayscale channel, square, uint8.

Training, evaluation and serving all go through this function, so the model sees pixels
prepared the same way everywhere.
"""

from __future__ import annotations

import cv2
import numpy as np

DECODE_MIN_SIDE = 512
"""Large JPEGs are decoded at reduced scale down to this shorter side (``decode_image``'s
``min_side``): ample for a 224-pixel model input and for overlays, and 2-4x cheaper to
decode. Training and serving both use it, so the model sees the same pixels."""


def to_grayscale_uint8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray/BGR/BGRA, 8 or 16 bit) as a 2-D uint8 array."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


def to_model_input(image: np.ndarray, size: int) -> np.ndarray:
    """Grayscale, area-resized to ``size`` x ``size``, shaped (size, size, 1) uint8."""
    gray = to_grayscale_uint8(image)
    interpolation = cv2.INTER_AREA if min(gray.shape) >= size else cv2.INTER_LINEAR
    resized = cv2.resize(gray, (size, size), interpolation=interpolation)
    return resized[:, :, np.newaxis]
