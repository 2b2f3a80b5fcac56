"""Model inputs and outputs as TF Serving carries them, shared by the REST and gRPC engines.

Pixels go out as one lossless PNG per image, for the signatures' ``image_bytes`` input. The
exported model decodes it to gray and area-resizes S x S to S x S, which is the identity, so
TF Serving computes on exactly the pixels the in-process engine would: no JPEG loss, no
second resize, identical probabilities and heatmaps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import cv2
import numpy as np

from aistack.errors import BackendFailed
from aistack.inference.engine import EngineOutput, ModelInfo, check_pixels

INPUT = "image_bytes"
PROBABILITIES = "probabilities"
HEATMAP = "heatmap"
AVAILABLE = "AVAILABLE"
UNKNOWN_LABEL = "Unrecognized servable version label"
"""TF Serving answers an unknown version label with INVALID_ARGUMENT (HTTP 400) and this text."""
ERROR_TEXT_LIMIT = 300
"""TF Serving's messages can quote whole request values; errors keep only their start."""
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]
"""Fast deflate: on loopback or a LAN the encode time matters more than ~20 % of bytes."""


def signature_for(heatmap: bool) -> str:
    """``gradcam``: probabilities and heatmap from one pass; ``serving_default``: probabilities."""
    return "gradcam" if heatmap else "serving_default"


def output_names(heatmap: bool) -> tuple[str, ...]:
    return (PROBABILITIES, HEATMAP) if heatmap else (PROBABILITIES,)


def encode_pixels(pixels: np.ndarray, image_size: int) -> list[bytes]:
    """(N, S, S, 1) uint8 as made by ``imaging.preprocess`` → N PNG files."""
    check_pixels(pixels, image_size)
    if len(pixels) == 0:
        raise ValueError("expected at least one image")
    images = []
    for image in pixels:
        ok, buffer = cv2.imencode(".png", image[:, :, 0], PNG_PARAMS)
        if not ok:
            raise ValueError("OpenCV could not encode the pixels as PNG")
        images.append(buffer.tobytes())
    return images


def engine_output(
    outputs: Mapping[str, Any], batch: int, info: ModelInfo, heatmap: bool, source: str
) -> EngineOutput:
    """Named outputs (nested lists or arrays) → :class:`EngineOutput`, shapes checked.

    Anything else than (batch, classes) probabilities and (batch, h, w) heatmaps is a
    :class:`BackendFailed`: a wrong model or version behind the address must not pass.
    """
    probabilities = _float_array(outputs, PROBABILITIES, source)
    if probabilities.shape != (batch, len(info.classes)):
        raise BackendFailed(
            f"{source}: probabilities have shape {probabilities.shape}, "
            f"expected {(batch, len(info.classes))}"
        )
    if not heatmap:
        return EngineOutput(probabilities, None)
    heatmaps = _float_array(outputs, HEATMAP, source)
    if heatmaps.ndim != 3 or len(heatmaps) != batch:
        raise BackendFailed(
            f"{source}: heatmaps have shape {heatmaps.shape}, expected ({batch}, h, w)"
        )
    return EngineOutput(probabilities, heatmaps)


def _float_array(outputs: Mapping[str, Any], name: str, source: str) -> np.ndarray:
    if name not in outputs:
        raise BackendFailed(f"{source}: the answer has no {name!r} output")
    try:
        return np.asarray(outputs[name], dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise BackendFailed(f"{source}: output {name!r} is not a numeric tensor") from error


def not_available(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """``version N is STATE`` for each ``model_version_status`` entry that cannot serve.

    TF Serving answers a request for a version that is still loading (or unloading) as if
    the version did not exist ("Servable not found", 404 / NOT_FOUND); its status tells the
    two apart, so a loading backend is reported unavailable rather than missing.
    """
    return [
        f"version {entry.get('version')} is {entry.get('state')}"
        for entry in entries
        if entry.get("state") != AVAILABLE
    ]


def shorten(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    """One line of at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "…"
