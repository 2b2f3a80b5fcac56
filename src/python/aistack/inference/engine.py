"""The engine interface every runtime injects: a batch of model inputs in, one pass out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    image_size: int
    classes: tuple[str, ...]


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
