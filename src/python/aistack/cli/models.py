"""`aistack models list | label`: the version folders and which one `serve` loads."""

from __future__ import annotations

from typing import Annotated

import typer

from aistack.cli.common import DEFAULT_MODEL_DIR, ModelDir, console, served_by_serve, tell

models_app = typer.Typer(
    no_args_is_help=True, help="List model versions; choose which one is served."
)


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
    served, note = served_by_serve(model_dir)
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
        _, note = served_by_serve(model_dir)
        tell(f"{note}; a running server keeps its model until restarted")
