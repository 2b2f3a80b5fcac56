"""`aistack train xray | input-check`: new model versions, and how training reports progress.

Training writes a new version folder and never relabels what is served, except to keep a
lone unlabelled version served once a second one appears.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aistack.cli.common import (
    DEFAULT_MODEL_DIR,
    ModelDir,
    ModelVersion,
    chosen_version_dir,
    err_console,
    say,
    served_by_serve,
    tell,
)

if TYPE_CHECKING:
    from aistack.xray.train import FoldResult, ProgressReport, TrainingConfig

train_app = typer.Typer(no_args_is_help=True, help="Train a model.")


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
    _, note = served_by_serve(out)
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
    version_dir = chosen_version_dir(model_dir, version)
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
