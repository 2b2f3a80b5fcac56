"""Refuse inputs that are plainly not chest X-rays, before the classifier labels them anyway.

The classifier answers for any picture (a black square comes out "covid" at about 0.6), so
each model input is first compared with what the training X-rays looked like. Six cheap,
explainable measurements of the (S, S) model input:

- brightness: mean grey level;
- contrast: standard deviation of the grey levels;
- dark fraction: share of near-black pixels (other scans sit on a large black background);
- detail: mean absolute difference between the half-size image and a blurred copy of it
  (ribs, edges and vessel lines; noise and text have far more, blank or blurred images less);
- layout distance: Mahalanobis distance of a small thumbnail, standardised per image, in a
  PCA of the training thumbnails (how unusual the arrangement of light and dark is);
- layout residual: the share of that thumbnail the PCA cannot reproduce (an arrangement no
  training X-ray resembles: rotated, inverted, patterns, text, photographs).

Each measurement has the range [low, high] seen on the training images. Its excess is how far
it lies outside that range, in units of the range's width (on a log scale for contrast and
detail, which vary by ratios); negative inside. The image's score is the largest excess, and
the image is refused when that exceeds ``margin``. Size is checked first: too small an
original carries no usable anatomy whatever its pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from aistack.errors import NotAChestXray
from aistack.xray.dataset import load_images

INPUT_CHECK_FILE = "assets.extra/input_check.json"
"""Relative to a model version folder; absent means no check for that version."""

MIN_SIDE = 64
"""Smaller originals on either side are refused: no training image is under 237 pixels on a
side, and below 64 pixels ribs and lung markings are no longer resolved, so the model would
classify an enlarged blur."""

MARGIN = 0.5
"""Allowed excess beyond a training range, in units of its width."""

THUMB_SIDE = 16
COMPONENTS = 3
DETAIL_SIGMA = 2.0
DARK_LEVEL = 16
LOG_FLOOR = 0.01
SIGNIFICANT_DIGITS = 7
FORMAT_VERSION = 1


@dataclass(frozen=True)
class _Measure:
    name: str
    label: str
    log_scale: bool
    low_reason: str | None  # None: only high values are implausible
    high_reason: str


MEASURES: tuple[_Measure, ...] = (
    _Measure(
        "brightness",
        "mean grey level",
        False,
        "it is much darker overall than a chest X-ray",
        "it is much brighter overall than a chest X-ray",
    ),
    _Measure(
        "contrast",
        "grey-level spread",
        True,
        "it is almost uniform, with too little contrast for an X-ray",
        "it has far more contrast than a chest X-ray, as stark black-and-white graphics do",
    ),
    _Measure(
        "dark_fraction",
        "near-black fraction",
        False,
        None,
        "too much of it is black background, as in MRI or CT slices and dark graphics",
    ),
    _Measure(
        "detail",
        "fine detail",
        True,
        "it has too little fine detail, like a blank, blurred or greatly enlarged picture",
        "it has far more fine detail than an X-ray, as noise, text or a fine pattern would",
    ),
    _Measure(
        "layout_distance",
        "layout distance",
        False,
        None,
        "its arrangement of light and dark areas is far from a frontal chest X-ray's",
    ),
    _Measure(
        "layout_residual",
        "unexplained layout",
        False,
        None,
        "its arrangement of light and dark areas matches no training chest X-ray, as with "
        "rotated or inverted X-rays, patterns, text and photographs",
    ),
)


def _rounded(values: np.ndarray) -> tuple[float, ...]:
    """Fitted numbers are kept at float32-like precision, so the JSON stays small and exact."""
    return tuple(float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in np.ravel(values))


def _as_2d(model_input: np.ndarray, image_size: int) -> np.ndarray:
    pixels = np.asarray(model_input)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.shape != (image_size, image_size):
        raise ValueError(f"expected a ({image_size}, {image_size}[, 1]) input, got {pixels.shape}")
    return pixels.astype(np.float32)


def _global_measures(pixels: np.ndarray) -> tuple[float, float, float, float]:
    """(brightness, contrast, dark fraction, detail) of a 2-D float image."""
    half = pixels.shape[0] // 2
    small = cv2.resize(pixels, (half, half), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), DETAIL_SIGMA)
    return (
        float(pixels.mean()),
        float(pixels.std()),
        float(np.count_nonzero(pixels < DARK_LEVEL)) / pixels.size,
        float(cv2.absdiff(small, blurred).mean()),
    )


def _thumbnail(pixels: np.ndarray, side: int) -> np.ndarray:
    """Standardised per image, so the layout terms ignore brightness and contrast."""
    thumb = cv2.resize(pixels, (side, side), interpolation=cv2.INTER_AREA).ravel()
    thumb = thumb.astype(np.float64)
    return (thumb - thumb.mean()) / max(float(thumb.std()), 1.0)


def _scaled(values: np.ndarray) -> np.ndarray:
    logs = np.array([m.log_scale for m in MEASURES])
    return np.where(logs, np.log(np.maximum(values, LOG_FLOOR)), values)


@dataclass(frozen=True)
class InputCheck:
    """Training ranges of the six measurements, and the thumbnail PCA behind two of them."""

    image_size: int
    margin: float
    fitted_images: int
    ranges: tuple[tuple[float, float], ...]  # (low, high) per MEASURES entry, in raw units
    thumb_side: int
    thumb_mean: tuple[float, ...]
    components: tuple[tuple[float, ...], ...]
    variances: tuple[float, ...]

    @classmethod
    def fit(cls, images: np.ndarray, margin: float = MARGIN) -> InputCheck:
        """Fit on (N, S, S, 1) uint8 model inputs of genuine chest X-rays."""
        if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 1:
            raise ValueError(f"expected (N, S, S, 1) model inputs, got {images.shape}")
        if len(images) <= COMPONENTS:
            raise ValueError(f"need more than {COMPONENTS} images, got {len(images)}")
        size = int(images.shape[1])
        thumbs = np.stack([_thumbnail(_as_2d(x, size), THUMB_SIDE) for x in images])
        mean = thumbs.mean(axis=0)
        _, singular, basis = np.linalg.svd(thumbs - mean, full_matrices=False)
        variances = np.maximum(singular[:COMPONENTS] ** 2 / (len(images) - 1), 1e-9)
        pca_only = cls(
            image_size=size,
            margin=margin,
            fitted_images=len(images),
            ranges=(),
            thumb_side=THUMB_SIDE,
            thumb_mean=_rounded(mean),
            components=tuple(_rounded(row) for row in basis[:COMPONENTS]),
            variances=_rounded(variances),
        )
        values = np.stack([pca_only.measurements(x) for x in images])
        ranges = zip(_rounded(values.min(axis=0)), _rounded(values.max(axis=0)), strict=True)
        return replace(pca_only, ranges=tuple(ranges))

    @cached_property
    def _pca(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.array(self.thumb_mean),
            np.array(self.components),
            np.array(self.variances),
        )

    def measurements(self, model_input: np.ndarray) -> np.ndarray:
        """The raw measurements, in MEASURES order."""
        pixels = _as_2d(model_input, self.image_size)
        mean, basis, variances = self._pca
        centred = _thumbnail(pixels, self.thumb_side) - mean
        coords = basis @ centred
        residual = centred - coords @ basis
        return np.array(
            [
                *_global_measures(pixels),
                float(np.sqrt(np.sum(coords**2 / variances))),
                float(np.mean(residual**2)),
            ]
        )

    def excesses(self, values: np.ndarray) -> np.ndarray:
        """Per measurement: distance outside its training range in range widths (<= 0 inside)."""
        bounds = _scaled(np.array(self.ranges).T)
        scaled = _scaled(values)
        width = np.maximum(bounds[1] - bounds[0], 1e-9)
        below = (bounds[0] - scaled) / width
        below[[m.low_reason is None for m in MEASURES]] = -np.inf
        return np.maximum(below, (scaled - bounds[1]) / width)

    def score(self, model_input: np.ndarray) -> float:
        """Largest excess beyond a training range; higher = less like the training X-rays."""
        return float(self.excesses(self.measurements(model_input)).max())

    def check(self, model_input: np.ndarray, width: int, height: int) -> None:
        """Raise NotAChestXray, saying why, unless the input plausibly is a chest X-ray.

        ``width`` and ``height`` are the original image's, before resizing to the model input.
        """
        if min(width, height) < MIN_SIDE:
            raise NotAChestXray(
                f"this is not a usable chest X-ray: the image is {width}x{height} pixels, "
                f"and at least {MIN_SIDE} pixels on each side are needed"
            )
        values = self.measurements(model_input)
        excess = self.excesses(values)
        worst = int(np.argmax(excess))
        if excess[worst] > self.margin:
            raise NotAChestXray(self._reason(worst, float(values[worst])))

    def _reason(self, index: int, value: float) -> str:
        measure = MEASURES[index]
        low, high = self.ranges[index]
        seen = f"{low:.3g} to {high:.3g}" if measure.low_reason else f"at most {high:.3g}"
        too_low = measure.low_reason is not None and value < low
        why = measure.low_reason if too_low else measure.high_reason
        return (
            f"this does not look like a chest X-ray: {why} ({measure.label} {value:.3g}; "
            f"{seen} on the {self.fitted_images} training X-rays)"
        )

    def to_json(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "image_size": self.image_size,
            "margin": self.margin,
            "fitted_images": self.fitted_images,
            "ranges": {m.name: list(r) for m, r in zip(MEASURES, self.ranges, strict=True)},
            "thumb_side": self.thumb_side,
            "thumb_mean": list(self.thumb_mean),
            "components": [list(row) for row in self.components],
            "variances": list(self.variances),
        }

    @classmethod
    def from_json(cls, data: dict) -> InputCheck:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported input check format {data.get('format_version')!r}")
        return cls(
            image_size=int(data["image_size"]),
            margin=float(data["margin"]),
            fitted_images=int(data["fitted_images"]),
            ranges=tuple(tuple(map(float, data["ranges"][m.name])) for m in MEASURES),
            thumb_side=int(data["thumb_side"]),
            thumb_mean=tuple(map(float, data["thumb_mean"])),
            components=tuple(tuple(map(float, row)) for row in data["components"]),
            variances=tuple(map(float, data["variances"])),
        )

    def save(self, path: Path) -> None:
        """One key per line: the ranges stay readable, the long number lists stay compact."""
        path.parent.mkdir(parents=True, exist_ok=True)
        items = self.to_json().items()
        lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in items]
        path.write_text("{\n" + ",\n".join(lines) + "\n}\n")

    @classmethod
    def load(cls, path: Path) -> InputCheck:
        return cls.from_json(json.loads(path.read_text()))


def fit_from_folder(train_dir: Path, image_size: int = 224) -> InputCheck:
    """Fit on every image under ``train_dir/<class>/``, prepared as the service prepares them."""
    return InputCheck.fit(load_images(train_dir, image_size).pixels)


def load_for_version(version_dir: Path) -> InputCheck | None:
    """The check saved with a model version, or None when that version has none."""
    path = version_dir / INPUT_CHECK_FILE
    return InputCheck.load(path) if path.is_file() else None
