"""Load a folder of chest X-rays laid out as ``DIR/<class>/<image>`` into model inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aistack.imaging.decode import decode_image
from aistack.imaging.preprocess import DECODE_MIN_SIDE, to_model_input
from aistack.xray.labels import CLASSES

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
TRAINING_MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class LabelledImages:
    pixels: np.ndarray  # (N, size, size, 1) uint8
    labels: np.ndarray  # (N,) int, index into CLASSES
    paths: tuple[Path, ...]


def list_images(root: Path) -> list[tuple[Path, int]]:
    """Every image under ``root/<class>/`` with its class index, in a stable order."""
    missing = [name for name in CLASSES if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} lacks class folders: {', '.join(missing)}")
    return [
        (path, index)
        for index, name in enumerate(CLASSES)
        for path in sorted((root / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]


def load_images(root: Path, image_size: int) -> LabelledImages:
    items = list_images(root)
    if not items:
        raise FileNotFoundError(f"no images under {root}")
    pixels = np.stack(
        [
            to_model_input(
                decode_image(p.read_bytes(), TRAINING_MAX_PIXELS, DECODE_MIN_SIDE).pixels,
                image_size,
            )
            for p, _ in items
        ]
    )
    labels = np.array([label for _, label in items], dtype=np.int64)
    return LabelledImages(pixels, labels, tuple(p for p, _ in items))
