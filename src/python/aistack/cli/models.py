"""`aistack models list | label | tf-config | warmup | litert`: versions, what is served, files.

`label` is the one place a served version is chosen; it also re-renders TF Serving's
models.config so that TF Serving and `aistack serve` serve the same version. `litert` writes
the LiteRT model the in-process engine runs, for a version exported without one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aistack.cli.common import (
    DEFAULT_MODEL_DIR,
    ModelDir,
    ModelVersion,
    chosen_version_dir,
    console,
    say,
    served_by_serve,
    tell,
)
from aistack.config import PROJECT_ROOT

models_app = typer.Typer(
    no_args_is_help=True,
    help="List model versions; choose which one is served; write TF Serving's files.",
)

DEFAULT_TF_CONFIG = PROJECT_ROOT / "tf-serving" / "models.config"
"""TF Serving's model config for the committed model folder (tf-serving/README.md)."""


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
    tf_config: Annotated[
        Path | None,
        typer.Option(
            help="models.config to re-render; default: tf-serving/models.config when "
            "--model-dir is the committed model folder and that file exists",
        ),
    ] = None,
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
    if tf_config is None and _is_committed_model_dir(model_dir) and DEFAULT_TF_CONFIG.is_file():
        tf_config = DEFAULT_TF_CONFIG
    if tf_config is not None:
        try:
            _write_tf_config(model_dir, tf_config)
        except (LookupError, FileNotFoundError, ValueError) as error:
            say(f"{tf_config} not re-rendered, it no longer matches the labels: {error}")
            raise typer.Exit(1) from error


@models_app.command("tf-config")
def models_tf_config(
    model_dir: ModelDir = DEFAULT_MODEL_DIR,
    out: Annotated[
        Path,
        typer.Option(help="ModelServerConfig text file", show_default="tf-serving/models.config"),
    ] = DEFAULT_TF_CONFIG,
) -> None:
    """Write TF Serving's models.config: the labelled versions, stable and canary."""
    try:
        _write_tf_config(model_dir, out)
    except (LookupError, FileNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error), param_hint="--model-dir") from error


@models_app.command("warmup")
def models_warmup(
    version: Annotated[int, typer.Argument(min=1, help="an existing version")],
    model_dir: ModelDir = DEFAULT_MODEL_DIR,
) -> None:
    """Write the version's TF Serving warm-up requests (assets.extra), nothing else of it."""
    from aistack.inference import versions  # noqa: PLC0415
    from aistack.xray.warmup import write_warmup_requests  # noqa: PLC0415

    found = versions.available_versions(model_dir)
    if version not in found:
        raise typer.BadParameter(f"version {version} not in {model_dir} (have {found})")
    try:
        path, count = write_warmup_requests(model_dir / str(version))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    tell(f"{count} warm-up requests ({path.stat().st_size / 1024:.0f} KiB) in {path}")


@models_app.command("litert")
def models_litert(
    model_dir: ModelDir = DEFAULT_MODEL_DIR,
    version: ModelVersion = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="replace a LiteRT model that differs from a fresh conversion"),
    ] = False,
) -> None:
    """Write the version's LiteRT model (assets.extra/model.tflite), converted from its SavedModel.

    `serve` runs it in-process (AISTACK_INPROCESS_RUNTIME=litert). A model already there is
    never changed silently: the same bytes are left alone, different ones need --force.
    """
    from aistack.inference.litert import litert_model_path  # noqa: PLC0415

    version_dir = chosen_version_dir(model_dir, version)
    from aistack.xray.litert_export import (  # noqa: PLC0415 - imports TF
        litert_model_bytes,
        write_litert_model,
    )

    model = litert_model_bytes(version_dir)
    path = litert_model_path(version_dir)
    if path.is_file():
        if path.read_bytes() == model:
            tell(f"{path} is up to date: the same bytes as a fresh conversion")
            return
        if not force:
            say(
                f"{path} differs from a fresh conversion of {version_dir}'s SavedModel "
                "(another TensorFlow, or another model); left as it is, --force replaces it"
            )
            raise typer.Exit(1)
    write_litert_model(version_dir, model)
    tell(f"LiteRT model ({len(model) / 1e6:.1f} MB) in {path}")


def _is_committed_model_dir(model_dir: Path) -> bool:
    """Only the committed folder has tf-serving/models.config; others need --tf-config."""
    return model_dir.resolve() == DEFAULT_MODEL_DIR.resolve()


def _write_tf_config(model_dir: Path, out: Path) -> None:
    from aistack.inference import tfserving_config  # noqa: PLC0415

    tfserving_config.write_models_config(model_dir, out)
    labels = ", ".join(f"{k}={v}" for k, v in tfserving_config.served_labels(model_dir).items())
    tell(f"TF Serving config ({labels}) in {out}")
