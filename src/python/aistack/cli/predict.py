"""`aistack predict`: one NDJSON line per image on stdout, optional heatmap overlays.

A bad image yields an error line rather than stopping the run, so a pipe always gets one
line per image it passed in. A DICOM file's line carries its identifiers under ``dicom``
(null for JPEG and PNG), so a result can be matched to the exam it came from.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aistack.cli.common import (
    DEFAULT_MODEL_DIR,
    ModelDir,
    ModelVersion,
    chosen_version_dir,
    load_engine,
    say,
)

if TYPE_CHECKING:
    from aistack.config import Settings
    from aistack.inference.savedmodel import SavedModelEngine
    from aistack.xray.plausibility import InputCheck

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


def predict(
    images: Annotated[
        list[Path],
        typer.Argument(help="chest X-rays: JPEG, PNG or DICOM files", show_default=False),
    ],
    heatmap: Annotated[
        Path | None,
        typer.Option(
            help="overlay file for one image (PNG or JPEG by suffix); for several, a folder "
            "that receives <stem>.heatmap.jpg"
        ),
    ] = None,
    model_dir: ModelDir = DEFAULT_MODEL_DIR,
    version: ModelVersion = None,
) -> None:
    """Classify images: one JSON object per image and line on stdout, messages on stderr.

    A bad image gets an {"image", "error"} line, the others are still classified, and the
    exit code is then 2.
    """
    from aistack.config import get_settings  # noqa: PLC0415
    from aistack.xray.plausibility import load_for_version  # noqa: PLC0415

    overlays = _overlay_paths(images, heatmap)
    settings = get_settings()
    version_dir = chosen_version_dir(model_dir, version)
    engine = load_engine(version_dir)
    input_check = load_for_version(version_dir)
    failed = 0
    for image, overlay in zip(images, overlays, strict=True):
        line = _predict_one(engine, image, overlay, settings, input_check)
        typer.echo(json.dumps(line))
        failed += "error" in line
    if failed:
        say(f"{failed} of {len(images)} images failed")
        raise typer.Exit(2)


def _overlay_paths(images: list[Path], heatmap: Path | None) -> list[Path | None]:
    """Where each overlay goes; checked before the model loads so mistakes cost nothing."""
    if heatmap is None:
        return [None] * len(images)
    if len(images) == 1 and not heatmap.is_dir():
        if heatmap.suffix.lower() not in IMAGE_SUFFIXES:
            raise typer.BadParameter("name a .png, .jpg or .jpeg file", param_hint="--heatmap")
        if not heatmap.parent.is_dir():
            raise typer.BadParameter(f"{heatmap.parent} is not a folder", param_hint="--heatmap")
        return [heatmap]
    if heatmap.suffix.lower() in IMAGE_SUFFIXES or (heatmap.exists() and not heatmap.is_dir()):
        raise typer.BadParameter(
            f"with several images, {heatmap} must be a folder", param_hint="--heatmap"
        )
    seen: dict[str, Path] = {}
    for image in images:
        other = seen.setdefault(image.stem, image)
        if other != image:
            raise typer.BadParameter(
                f"{other} and {image} would both write {image.stem}.heatmap.jpg",
                param_hint="--heatmap",
            )
    heatmap.mkdir(parents=True, exist_ok=True)
    return [heatmap / f"{image.stem}.heatmap.jpg" for image in images]


def _predict_one(
    engine: SavedModelEngine,
    image: Path,
    overlay: Path | None,
    settings: Settings,
    input_check: InputCheck | None,
) -> dict:
    """The JSON line for one image: its prediction, or its error (also said on stderr)."""
    from aistack.errors import AistackError  # noqa: PLC0415
    from aistack.xray.service import is_covid_positive, is_low_confidence, run_model  # noqa: PLC0415

    try:
        run = run_model(
            engine,
            _read_image(image),
            settings.max_pixels,
            overlay is not None,
            max_bytes=settings.max_body_bytes,
            input_check=input_check,
        )
        if overlay is not None:
            _write_overlay(run, overlay, settings.heatmap_alpha)
    except AistackError as error:
        say(f"{image}: {error.message}")
        return {"image": str(image), "error": {"code": error.code, "message": error.message}}
    probabilities = run.probabilities
    classes = engine.info.classes
    line = {
        "image": str(image),
        "label": classes[int(probabilities.argmax())],
        "probabilities": {
            c: round(float(p), 4) for c, p in zip(classes, probabilities, strict=True)
        },
        "covid_positive": is_covid_positive(probabilities, settings.covid_threshold),
        "threshold": settings.covid_threshold,
        "low_confidence": is_low_confidence(probabilities, settings.low_confidence_margin),
        "model": {"name": engine.info.name, "version": engine.info.version},
        "dicom": asdict(run.image.dicom) if run.image.dicom is not None else None,
    }
    if overlay is not None:
        line["heatmap"] = str(overlay)
        say(f"heatmap written to {overlay}")
    return line


def _read_image(path: Path) -> bytes:
    from aistack.errors import BadRequest, NotFound  # noqa: PLC0415

    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise NotFound("no such file") from error
    except OSError as error:
        raise BadRequest(f"cannot read: {error.strerror or error}") from error


def _write_overlay(run, path: Path, alpha: float) -> None:
    import cv2  # noqa: PLC0415

    from aistack.errors import AistackError  # noqa: PLC0415
    from aistack.xray.service import render_heatmaps  # noqa: PLC0415

    _, blended = render_heatmaps(run.image, run.heatmap, alpha)
    if not cv2.imwrite(str(path), blended):
        raise AistackError(f"cannot write the heatmap to {path}")
