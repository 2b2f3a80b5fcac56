"""The engine interface every runtime injects: a batch of model inputs in, one pass out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from aistack.inference.versions import MODEL_INFO_FILE, read_model_info


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    image_size: int
    classes: tuple[str, ...]


def model_info(version_dir: Path) -> ModelInfo:
    """What a version says of itself (``assets.extra/model_info.json``): every engine's info."""
    meta = read_model_info(version_dir)
    if not meta:
        raise FileNotFoundError(f"{version_dir} has no model info ({MODEL_INFO_FILE})")
    return ModelInfo(
        name=meta["name"],
        version=int(meta["version"]),
        image_size=int(meta["image_size"]),
        classes=tuple(meta["classes"]),
    )


def check_pixels(pixels: np.ndarray, image_size: int) -> None:
    """The input every in-process engine accepts; anything else is a caller's bug, said plainly."""
    if pixels.dtype != np.uint8 or pixels.shape[1:] != (image_size, image_size, 1):
        raise ValueError(
            f"expected uint8 (N, {image_size}, {image_size}, 1), got {pixels.dtype} {pixels.shape}"
        )


@dataclass(frozen=True)
class EngineOutput:
    """Probabilities (N, classes) and, when asked, Grad-CAM maps (N, h, w) scaled to 0..1."""

    probabilities: np.ndarray
    heatmaps: np.ndarray | None
    backend: str | None = None
    """Which backend computed it, when a router chose among several."""


class InferenceEngine(Protocol):
    """One call yields probabilities and the heatmap: the model runs once per image."""

    info: ModelInfo
    backend: str
    """Names where inference runs (``inprocess``, later TF Serving backends): a metrics label."""

    def infer(self, pixels: np.ndarray, heatmap: bool) -> EngineOutput:
        """``pixels``: (N, size, size, 1) uint8 as made by ``imaging.preprocess``."""
        ...
