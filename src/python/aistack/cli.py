"""`aistack serve | train xray | evaluate xray | predict | bench`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from aistack.config import Settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="aistack: medical AI models served as dependable services.",
)
train_app = typer.Typer(no_args_is_help=True, help="Train a model.")
evaluate_app = typer.Typer(no_args_is_help=True, help="Evaluate a model on labelled data.")
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
console = Console()

DEFAULT_MODEL_DIR = Settings.model_fields["model_dir"].default
"""The committed model (``AISTACK_MODEL_DIR`` changes what `serve` loads)."""


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
    run(settings.model_copy(update=overrides), log_level)


@train_app.command("xray")
def train_xray(
    data: Annotated[Path, typer.Option(help="folder with covid/ normal/ pneumonia_bac/")],
    out: Annotated[Path, typer.Option(help="model base folder (TF Serving layout)")] = (
        DEFAULT_MODEL_DIR
    ),
    version: Annotated[int | None, typer.Option(help="version folder; default next")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 120,
    folds: Annotated[int, typer.Option(min=2, help="cross-validation folds = members")] = 5,
    image_size: Annotated[int, typer.Option(min=64)] = 224,
    seed: Annotated[int, typer.Option()] = 2020,
    limit_per_class: Annotated[int | None, typer.Option(help="smoke tests: images/class")] = None,
) -> None:
    """Train the chest X-ray classifier from scratch and export a SavedModel version."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    from aistack.inference.savedmodel import available_versions  # noqa: PLC0415
    from aistack.xray.export import export_saved_model  # noqa: PLC0415
    from aistack.xray.train import TrainingConfig, train  # noqa: PLC0415

    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    config = TrainingConfig(
        epochs=epochs,
        folds=folds,
        image_size=image_size,
        seed=seed,
        limit_per_class=limit_per_class,
    )
    version = version or (max(available_versions(out), default=0) + 1)
    with Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        TextColumn("fold {task.fields[fold]}/{task.fields[folds]} epoch {task.fields[epoch]}"),
        TextColumn("{task.fields[metrics]}"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(
            "train", total=epochs * folds, fold=1, folds=folds, epoch=0, metrics="loading images"
        )

        def report(fold: int, epoch: int, logs: dict) -> None:
            metrics = " ".join(
                f"{k}={logs[k]:.3f}"
                for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                if k in logs
            )
            progress.update(
                task, completed=fold * epochs + epoch, fold=fold + 1, epoch=epoch, metrics=metrics
            )

        try:
            model, result = train(data, config, report)
        except (ValueError, FileNotFoundError) as error:
            raise typer.BadParameter(str(error)) from error
    summary = {"data": str(data), **result.summary()}
    target = export_saved_model(model, out, version, extra_info={"training": summary})
    for fold in result.folds:
        console.print(
            f"fold {fold.fold + 1}: best epoch {fold.best_epoch}, validation accuracy "
            f"{fold.val_accuracy:.3f} on {fold.val_images} images"
        )
    console.print(
        f"out-of-fold validation accuracy {result.out_of_fold_accuracy:.3f} on "
        f"{result.images} images; trained in {result.seconds:.0f} s"
    )
    console.print(f"exported SavedModel to [bold]{target}[/bold]")


def _engine(model_dir: Path, version: int | None):
    from aistack.inference.savedmodel import SavedModelEngine  # noqa: PLC0415

    try:
        return SavedModelEngine.from_model_dir(model_dir, version)
    except FileNotFoundError as error:
        raise typer.BadParameter(str(error), param_hint="--model-dir") from error


@evaluate_app.command("xray")
def evaluate_xray(
    data: Annotated[Path, typer.Option(help="folder with covid/ normal/ pneumonia_bac/")],
    model_dir: Annotated[Path, typer.Option()] = DEFAULT_MODEL_DIR,
    version: Annotated[int | None, typer.Option(help="default: highest")] = None,
    json_out: Annotated[Path, typer.Option(help="where the metrics are written as JSON")] = Path(
        "var/evaluation.json"
    ),
) -> None:
    """Accuracy, per-class precision/recall/F1, ROC AUC (one-vs-rest), confusion matrix."""
    from aistack.xray.evaluate import evaluate, format_text, write_json  # noqa: PLC0415

    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    result = evaluate(_engine(model_dir, version), data)
    console.print(format_text(result), highlight=False)
    write_json(result, json_out)
    console.print(f"metrics written to {json_out}")


@app.command()
def predict(
    image: Annotated[
        Path, typer.Argument(help="a JPEG or PNG chest X-ray", exists=True, dir_okay=False)
    ],
    heatmap: Annotated[Path | None, typer.Option(help="write the Grad-CAM overlay here")] = None,
    model_dir: Annotated[Path, typer.Option()] = DEFAULT_MODEL_DIR,
    version: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Classify one image; optionally write its heatmap overlay (PNG or JPEG by suffix)."""
    import cv2  # noqa: PLC0415

    from aistack.config import get_settings  # noqa: PLC0415
    from aistack.errors import AistackError  # noqa: PLC0415
    from aistack.xray.service import render_heatmaps, run_model  # noqa: PLC0415

    settings = get_settings()
    engine = _engine(model_dir, version)
    try:
        run = run_model(
            engine,
            image.read_bytes(),
            settings.max_pixels,
            heatmap is not None,
            max_bytes=settings.max_body_bytes,
        )
    except AistackError as error:
        console.print(f"[red]{image}: {error.message}[/red]")
        raise typer.Exit(2) from error
    label = engine.info.classes[int(run.probabilities.argmax())]
    console.print_json(
        data={
            "image": str(image),
            "label": label,
            "probabilities": {
                c: round(float(p), 4)
                for c, p in zip(engine.info.classes, run.probabilities, strict=True)
            },
        }
    )
    if heatmap is not None and run.heatmap is not None:
        _, blended = render_heatmaps(run.image, run.heatmap, settings.heatmap_alpha)
        if not cv2.imwrite(str(heatmap), blended):
            raise typer.BadParameter(f"cannot write {heatmap}", param_hint="--heatmap")
        console.print(f"heatmap written to {heatmap}")


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
) -> None:
    """Each client posts every image of the folder, concurrently (the 2020 experiment)."""
    from aistack.bench import bench_command  # noqa: PLC0415

    if endpoint not in {"v1-heatmap", "v1-predict", "v2"}:
        raise typer.BadParameter("choose v1-heatmap, v1-predict or v2", param_hint="--endpoint")
    try:
        bench_command(url, images, clients, endpoint, json_out, plot, console)
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error)) from error


if __name__ == "__main__":
    app()
