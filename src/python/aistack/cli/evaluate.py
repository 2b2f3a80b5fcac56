"""`aistack evaluate xray`: a version's metrics on labelled images, optionally on its card."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from aistack.cli.common import (
    DEFAULT_MODEL_DIR,
    ModelDir,
    ModelVersion,
    chosen_version_dir,
    console,
    load_engine,
    tell,
)

evaluate_app = typer.Typer(no_args_is_help=True, help="Evaluate a model on labelled data.")


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
    version_dir = chosen_version_dir(model_dir, version)
    result = evaluate(load_engine(version_dir), data)
    console.print(format_text(result), highlight=False)
    write_json(result, json_out)
    tell(f"metrics written to {json_out}")
    if record:
        command = ["aistack", "evaluate", "xray", "--data", str(data), "--model-dir"]
        command += [str(model_dir), "--model-version", version_dir.name, "--record"]
        card = record_evaluation(version_dir, result, shlex.join(command))
        tell(f"figures recorded in {card}")
