"""`aistack serve | train xray | evaluate xray | predict | models | bench`."""

from __future__ import annotations

import importlib
import json
import os
import shlex
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from aistack import __version__
from aistack.auth.cli import keys_app
from aistack.config import Settings

if TYPE_CHECKING:
    from aistack.inference.savedmodel import SavedModelEngine
    from aistack.xray.plausibility import InputCheck
    from aistack.xray.train import FoldResult, ProgressReport, TrainingConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TF_PROFILER_PLUGIN = "tensorflow.python.profiler.internal._pywrap_profiler_plugin"


class _LoadOnFirstUse(types.ModuleType):
    """Stands in for an extension module until an attribute of it is first read."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        sys.modules.pop(self.__name__, None)
        return getattr(importlib.import_module(self.__name__), name)


def defer_tf_profiler_plugin() -> None:
    """TensorFlow's oneDNN start-up notice once per process, not twice.

    ``import tensorflow`` loads ``_pywrap_profiler_plugin.so`` (the remote-profiling client),
    which carries its own copy of TensorFlow's platform code and absl logging: loading it
    prints the notice a second time, before absl is initialised, so TF_CPP_MIN_LOG_LEVEL
    cannot filter it. Nothing here profiles remotely, so that library is loaded only if
    ``tf.profiler.experimental.client`` is actually called.
    """
    sys.modules.setdefault(TF_PROFILER_PLUGIN, _LoadOnFirstUse(TF_PROFILER_PLUGIN))


defer_tf_profiler_plugin()

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="aistack: medical AI models served as dependable services.",
)
train_app = typer.Typer(no_args_is_help=True, help="Train a model.")
evaluate_app = typer.Typer(no_args_is_help=True, help="Evaluate a model on labelled data.")
models_app = typer.Typer(
    no_args_is_help=True, help="List model versions; choose which one is served."
)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
console = Console()
err_console = Console(stderr=True)

DEFAULT_MODEL_DIR = Settings.model_fields["model_dir"].default
"""The committed model (``AISTACK_MODEL_DIR`` changes what `serve` loads)."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})

ModelDir = Annotated[Path, typer.Option(help="model base folder (TF Serving layout)")]
ModelVersion = Annotated[
    int | None,
    typer.Option(
        "--model-version",
        "--version",
        min=1,
        help="default: AISTACK_MODEL_VERSION, else the version labelled stable, else the only one",
    ),
]


def _show_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="print the version and exit", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """aistack: medical AI models served as dependable services."""


def say(message: str) -> None:
    """A message for people, on stderr, so that stdout stays machine-readable."""
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


def tell(message: str) -> None:
    """A result line on stdout, unwrapped so that logs and greps see whole sentences."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="interface to bind [AISTACK_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [AISTACK_PORT]")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve the model with the v1 (2020) and v2 APIs and the web page."""
    from aistack.api.server import run  # noqa: PLC0415
    from aistack.config import get_settings  # noqa: PLC0415

    settings = get_settings()
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    if not settings.auth and not _is_loopback(settings.host):
        raise typer.BadParameter(
            f"AISTACK_AUTH=off serves every prediction and stored X-ray to anyone who can "
            f"connect; it is allowed on a loopback address only, not {settings.host!r}",
            param_hint="--host",
        )
    run(settings, log_level)


def _is_loopback(host: str) -> bool:
    import ipaddress  # noqa: PLC0415

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- versions


def _requested_version(model_dir: Path, version: int | None) -> int | None:
    """``--model-version``, else AISTACK_MODEL_VERSION when ``model_dir`` is what serve loads."""
    from aistack.config import get_settings  # noqa: PLC0415

    if version is not None:
        return version
    settings = get_settings()
    return settings.model_version if model_dir.resolve() == settings.model_dir.resolve() else None


def _version_dir(model_dir: Path, version: int | None) -> Path:
    """The version folder to use, or a usage error saying what is missing or how to choose."""
    from aistack.inference.versions import VersionNotChosen, resolve_version_dir  # noqa: PLC0415

    try:
        return resolve_version_dir(model_dir, _requested_version(model_dir, version))
    except VersionNotChosen as error:
        raise typer.BadParameter(str(error), param_hint="--model-version") from error
    except (FileNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error), param_hint="--model-dir") from error


def _load_engine(version_dir: Path) -> SavedModelEngine:
    """One warm-up batch size: the CLI classifies one image at a time."""
    from aistack.inference.savedmodel import SavedModelEngine  # noqa: PLC0415

    return SavedModelEngine(version_dir, warmup_batch_sizes=(1,))


@models_app.command("list")
def models_list(model_dir: ModelDir = DEFAULT_MODEL_DIR) -> None:
    """Versions with their labels, training date and out-of-fold accuracy; which is served."""
    from rich.table import Table  # noqa: PLC0415

    from aistack.inference import versions  # noqa: PLC0415

    found = versions.available_versions(model_dir)
    if not found:
        raise typer.BadParameter(
            f"no SavedModel versions under {model_dir}", param_hint="--model-dir"
        )
    try:
        labels = versions.read_labels(model_dir)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--model-dir") from error
    served, note = _served_by_serve(model_dir)
    table = Table("version", "served", "labels", "trained (UTC)", "images", "out-of-fold accuracy")
    for number in found:
        training = versions.read_model_info(model_dir / str(number)).get("training", {})
        accuracy = training.get("out_of_fold_accuracy")
        table.add_row(
            str(number),
            "yes" if number == served else "",
            ", ".join(sorted(k for k, v in labels.items() if v == number)),
            training.get("trained_at", "—")[:16].replace("T", " "),
            str(training.get("images", "—")),
            f"{accuracy:.3f}" if accuracy is not None else "—",
        )
    console.print(table)
    tell(note)


def _served_by_serve(model_dir: Path) -> tuple[int | None, str]:
    """(version `aistack serve` would load from ``model_dir``, a sentence saying why)."""
    from aistack.inference.versions import choose_version  # noqa: PLC0415

    requested = _requested_version(model_dir, None)
    try:
        choice = choose_version(model_dir, requested)
    except (LookupError, FileNotFoundError, ValueError) as error:
        return None, f"nothing is served: {error}"
    reason = "AISTACK_MODEL_VERSION" if choice.reason == "requested" else choice.reason
    return choice.version, f"served: version {choice.version} ({reason})"


@models_app.command("label")
def models_label(
    label: Annotated[str, typer.Argument(help="`stable` is the version `serve` loads")],
    version: Annotated[int, typer.Argument(min=1, help="an existing version")],
    model_dir: ModelDir = DEFAULT_MODEL_DIR,
) -> None:
    """Point a label at a version (version_labels.json); `serve` reads it when it starts."""
    from aistack.inference import versions  # noqa: PLC0415

    try:
        before = versions.read_labels(model_dir).get(label)
        versions.set_label(model_dir, label, version)
    except (FileNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error)) from error
    was = f" (was {before})" if before not in (None, version) else ""
    tell(f"{label} → version {version}{was} in {model_dir / versions.LABELS_FILE}")
    if label == versions.SERVED_LABEL:
        _, note = _served_by_serve(model_dir)
        tell(f"{note}; a running server keeps its model until restarted")


# --------------------------------------------------------------------------- train


@train_app.command("xray")
def train_xray(
    data: Annotated[Path, typer.Option(help="folder with covid/ normal/ pneumonia_bac/")],
    out: ModelDir = DEFAULT_MODEL_DIR,
    version: Annotated[
        int | None,
        typer.Option(
            "--model-version",
            "--version",
            min=1,
            help="new version folder, never an existing one; default the next free number",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 120,
    folds: Annotated[int, typer.Option(min=2, help="cross-validation folds = members")] = 5,
    image_size: Annotated[int, typer.Option(min=64)] = 224,
    seed: Annotated[int, typer.Option()] = 2020,
    limit_per_class: Annotated[int | None, typer.Option(help="smoke tests: images/class")] = None,
) -> None:
    """Train the chest X-ray classifier from scratch into a new version; serving is unchanged."""
    from aistack.inference.versions import next_version, read_model_info  # noqa: PLC0415
    from aistack.xray.export import export_saved_model  # noqa: PLC0415
    from aistack.xray.model_card import now_utc, write_training_card  # noqa: PLC0415
    from aistack.xray.train import TrainingConfig, train  # noqa: PLC0415

    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    version = version or next_version(out)
    _refuse_existing_version(out, version)
    config = TrainingConfig(
        epochs=epochs,
        folds=folds,
        image_size=image_size,
        seed=seed,
        limit_per_class=limit_per_class,
    )
    with _training_progress(epochs, folds) as (report, fold_done):
        try:
            model, result = train(data, config, report, fold_done)
        except (ValueError, FileNotFoundError) as error:
            raise typer.BadParameter(str(error)) from error
    _refuse_existing_version(out, version)  # another run may have taken it meanwhile
    _keep_serving_what_was_served(out)
    summary = {
        "data": str(data),
        "command": _train_command(data, out, config),
        "trained_at": now_utc(),
        **result.summary(),
    }
    target = export_saved_model(model, out, version, extra_info={"training": summary})
    _fit_input_check(data, target, image_size)
    card = write_training_card(target, read_model_info(target), str(out))
    for fold in result.folds:
        tell(
            f"fold {fold.fold + 1}: best epoch {fold.best_epoch}, validation accuracy "
            f"{fold.val_accuracy:.3f} on {fold.val_images} images"
        )
    tell(
        f"out-of-fold validation accuracy {result.out_of_fold_accuracy:.3f} on "
        f"{result.images} images; trained in {result.seconds:.0f} s"
    )
    tell(f"exported SavedModel to {target}, card {card}")
    _, note = _served_by_serve(out)
    tell(note)


def _fit_input_check(data: Path, version_dir: Path, image_size: int) -> None:
    from aistack.xray.plausibility import INPUT_CHECK_FILE, fit_from_folder  # noqa: PLC0415

    fit_from_folder(data, image_size).save(version_dir / INPUT_CHECK_FILE)
    tell(f"input check fitted on {data}: {version_dir / INPUT_CHECK_FILE}")


@train_app.command("input-check")
def train_input_check(
    data: Annotated[Path, typer.Option(help="the training folder the version was trained on")],
    model_dir: ModelDir = DEFAULT_MODEL_DIR,
    version: ModelVersion = None,
) -> None:
    """Fit the "is this a chest X-ray?" check of a model version on its training images."""
    from aistack.inference.versions import read_model_info  # noqa: PLC0415

    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    version_dir = _version_dir(model_dir, version)
    _fit_input_check(data, version_dir, int(read_model_info(version_dir)["image_size"]))


def _train_command(data: Path, out: Path, config: TrainingConfig) -> str:
    """The command that repeats this training (into the next free version), for the card."""
    command = ["aistack", "train", "xray", "--data", str(data), "--out", str(out)]
    command += ["--epochs", str(config.epochs), "--folds", str(config.folds)]
    command += ["--image-size", str(config.image_size), "--seed", str(config.seed)]
    if config.limit_per_class:
        command += ["--limit-per-class", str(config.limit_per_class)]
    return shlex.join(command)


def _refuse_existing_version(model_dir: Path, version: int) -> None:
    from aistack.inference.versions import next_version  # noqa: PLC0415

    if (model_dir / str(version)).exists():
        raise typer.BadParameter(
            f"{model_dir / str(version)} exists and versions are never overwritten; "
            f"leave --model-version out to write version {next_version(model_dir)}",
            param_hint="--model-version",
        )


def _keep_serving_what_was_served(model_dir: Path) -> None:
    """A lone unlabelled version is served by default; label it before a second one appears."""
    from aistack.inference import versions  # noqa: PLC0415

    try:
        choice = versions.choose_version(model_dir)
    except (LookupError, FileNotFoundError, ValueError):
        return
    if choice.reason == "only version":
        versions.set_label(model_dir, versions.SERVED_LABEL, choice.version)
        say(f"labelled version {choice.version} {versions.SERVED_LABEL}: it stays served")


@contextmanager
def _training_progress(
    epochs: int, folds: int
) -> Iterator[tuple[ProgressReport, Callable[[FoldResult], None]]]:
    """A progress bar on a terminal; elsewhere (logs, CI) one plain stderr line per epoch."""
    if err_console.is_terminal:
        with _progress_bar(epochs, folds) as callbacks:
            yield callbacks
        return
    started = time.monotonic()

    def report(fold: int, epoch: int, logs: dict) -> None:
        elapsed = time.monotonic() - started
        typer.echo(
            f"fold {fold + 1}/{folds} epoch {epoch}/{epochs} {_metrics(logs)} ({elapsed:.0f} s)",
            err=True,
        )

    def fold_done(result: FoldResult) -> None:
        typer.echo(
            f"fold {result.fold + 1}/{folds} done: best epoch {result.best_epoch}, validation "
            f"accuracy {result.val_accuracy:.3f} on {result.val_images} images",
            err=True,
        )

    typer.echo(f"training {folds} folds, {epochs} epochs each", err=True)
    yield report, fold_done


@contextmanager
def _progress_bar(
    epochs: int, folds: int
) -> Iterator[tuple[ProgressReport, Callable[[FoldResult], None]]]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    with Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        TextColumn("fold {task.fields[fold]}/{task.fields[folds]} epoch {task.fields[epoch]}"),
        TextColumn("{task.fields[metrics]}"),
        TimeRemainingColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task(
            "train", total=epochs * folds, fold=1, folds=folds, epoch=0, metrics="loading images"
        )

        def report(fold: int, epoch: int, logs: dict) -> None:
            progress.update(
                task,
                completed=fold * epochs + epoch,
                fold=fold + 1,
                epoch=epoch,
                metrics=_metrics(logs),
            )

        yield report, lambda result: None


def _metrics(logs: dict) -> str:
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    return " ".join(f"{k}={logs[k]:.3f}" for k in keys if k in logs)


# --------------------------------------------------------------------------- evaluate


@evaluate_app.command("xray")
def evaluate_xray(
    data: Annotated[Path, typer.Option(help="folder with covid/ normal/ pneumonia_bac/")],
    model_dir: ModelDir = DEFAULT_MODEL_DIR,
    version: ModelVersion = None,
    json_out: Annotated[Path, typer.Option(help="where the metrics are written as JSON")] = Path(
        "var/evaluation.json"
    ),
    record: Annotated[
        bool, typer.Option("--record", help="write the figures into the version's MODEL_CARD.md")
    ] = False,
) -> None:
    """Accuracy, per-class precision/recall/F1, ROC AUC (one-vs-rest), confusion matrix."""
    from aistack.xray.evaluate import evaluate, format_text, write_json  # noqa: PLC0415
    from aistack.xray.model_card import record_evaluation  # noqa: PLC0415

    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    version_dir = _version_dir(model_dir, version)
    result = evaluate(_load_engine(version_dir), data)
    console.print(format_text(result), highlight=False)
    write_json(result, json_out)
    tell(f"metrics written to {json_out}")
    if record:
        command = ["aistack", "evaluate", "xray", "--data", str(data), "--model-dir"]
        command += [str(model_dir), "--model-version", version_dir.name, "--record"]
        card = record_evaluation(version_dir, result, shlex.join(command))
        tell(f"figures recorded in {card}")


# --------------------------------------------------------------------------- predict


@app.command()
def predict(
    images: Annotated[
        list[Path], typer.Argument(help="JPEG or PNG chest X-rays", show_default=False)
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
    version_dir = _version_dir(model_dir, version)
    engine = _load_engine(version_dir)
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


# --------------------------------------------------------------------------- bench


@app.command()
def bench(
    url: Annotated[str, typer.Option(help="server base URL")] = "http://127.0.0.1:8088",
    images: Annotated[Path, typer.Option(help="folder of images (searched recursively)")] = (
        Path("../shared/data/xray/test")
    ),
    clients: Annotated[int, typer.Option(min=1, max=256)] = 8,
    endpoint: Annotated[str, typer.Option(help="v1-heatmap | v1-predict | v2")] = "v1-heatmap",
    json_out: Annotated[Path | None, typer.Option(help="write summary and requests")] = None,
    plot: Annotated[Path | None, typer.Option(help="write a PNG plot")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="AISTACK_API_KEY", help="key sent as a bearer token (predict role)"),
    ] = None,
) -> None:
    """Each client posts every image of the folder, concurrently (the 2020 experiment)."""
    from aistack.bench import bench_command  # noqa: PLC0415

    if endpoint not in {"v1-heatmap", "v1-predict", "v2"}:
        raise typer.BadParameter("choose v1-heatmap, v1-predict or v2", param_hint="--endpoint")
    try:
        bench_command(url, images, clients, endpoint, json_out, plot, console, api_key=api_key)
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error)) from error


if __name__ == "__main__":
    app()
