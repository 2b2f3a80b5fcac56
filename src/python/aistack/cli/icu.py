"""`aistack icu train | validate | predict`: the ICU-admission predictor from the command line.

`train` writes a new version folder under models/icu (local backend) or trains a model in
IRIS (IntegratedML backend, ``--dsn`` or ``AISTACK_IRIS_DSN``); `validate` cross-validates
the whole recipe over patients and can record the figures in a version; `predict` scores a
CSV of first-window rows keyed by the workbook's column names.
"""

from __future__ import annotations

import csv
import json
import shlex
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from aistack.cli.common import console, say, tell
from aistack.icu.defaults import DEFAULT_MODEL_DIR, DEFAULT_WORKBOOK, FILLS

if TYPE_CHECKING:
    from aistack.icu.dataset import PreparedTable
    from aistack.icu.predictor import IcuPredictor

icu_app = typer.Typer(
    no_args_is_help=True, help="ICU-admission predictor (Sirio-Libanes COVID-19 data)."
)


class Backend(StrEnum):
    local = "local"
    integratedml = "integratedml"


class FillOption(StrEnum):
    forward = "forward"
    forward_backward = "forward-backward"


assert tuple(FillOption) == FILLS  # one list of fills, spelt in the dataset module

Data = Annotated[Path, typer.Option(help="the Sirio-Libanes ICU workbook (.xlsx)")]
Fill = Annotated[
    FillOption, typer.Option(help="missing values inside each patient: see docs/ICU.md")
]
ModelDir = Annotated[Path, typer.Option(help="folder of ICU model versions")]
Version = Annotated[
    int | None,
    typer.Option("--model-version", min=1, help="default: the 'stable' label, else the highest"),
]
Dsn = Annotated[
    str | None,
    typer.Option(envvar="AISTACK_IRIS_DSN", help="iris://user:password@host:1972/NAMESPACE"),
]
Seed = Annotated[int, typer.Option(help="draws the patient folds")]


def _prepared(data: Path, fill: FillOption) -> PreparedTable:
    from aistack.icu.dataset import load_prepared  # noqa: PLC0415

    try:
        return load_prepared(data, fill.value)
    except (FileNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error), param_hint="--data") from error


def _data_option(data: Path) -> list[str]:
    """``--data PATH`` for a recorded command, left out when it is the default workbook."""
    return [] if data.resolve() == DEFAULT_WORKBOOK.resolve() else ["--data", str(data)]


def metrics_table(title: str, rows: dict[str, dict[str, str]]) -> Table:
    """One column per metric (IntegratedML's names), one row per measurement."""
    from aistack.icu.predictor import METRIC_NAMES  # noqa: PLC0415

    table = Table(title=title, title_justify="left")
    table.add_column("")
    for name in METRIC_NAMES:
        table.add_column(name, justify="right")
    for label, values in rows.items():
        table.add_row(label, *(values.get(name, "-") for name in METRIC_NAMES))
    return table


def _formatted(metrics: dict[str, float]) -> dict[str, str]:
    return {name: f"{value:.3f}" for name, value in metrics.items()}


@icu_app.command("train")
def train(
    backend: Annotated[Backend, typer.Option(help="local (embedded) or IRIS IntegratedML")] = (
        Backend.local
    ),
    data: Data = DEFAULT_WORKBOOK,
    time_budget: Annotated[
        float, typer.Option("--time-budget", min=1, help="AutoML search seconds (local)")
    ] = 60.0,
    fill: Fill = FillOption.forward,
    out: ModelDir = DEFAULT_MODEL_DIR,
    version: Annotated[
        int | None,
        typer.Option("--model-version", min=1, help="new version; default the next free number"),
    ] = None,
    seed: Seed = 2020,
    dsn: Dsn = None,
    configuration: Annotated[
        str | None, typer.Option(help="IntegratedML: SET ML CONFIGURATION before training")
    ] = None,
    using: Annotated[
        str | None, typer.Option(help='IntegratedML: USING settings as JSON, e.g. {"seed": 1}')
    ] = None,
) -> None:
    """Train a new model: a version folder (local) or a trained IntegratedML model."""
    table = _prepared(data, fill)
    say(
        f"prepared {table.summary()['patients']} patients "
        f"({table.summary()['admitted_later']} admitted later), hash {table.data_hash[:12]}"
    )
    if backend is Backend.integratedml:
        _train_integratedml(table, dsn, configuration, using, seed)
        return
    _train_local(table, data, time_budget, fill, out, version, seed)


def _train_local(
    table: PreparedTable,
    data: Path,
    time_budget: float,
    fill: FillOption,
    out: Path,
    version: int | None,
    seed: int,
) -> None:
    from aistack.icu.training import TrainingConfig, save_version  # noqa: PLC0415
    from aistack.icu.training import train as train_recipe  # noqa: PLC0415
    from aistack.inference.versions import next_version  # noqa: PLC0415

    version = version or next_version(out)
    target = out / str(version)
    if target.exists():
        raise typer.BadParameter(
            f"{target} exists and versions are never overwritten", param_hint="--model-version"
        )
    config = TrainingConfig(time_budget_s=time_budget, seed=seed)
    recipe = train_recipe(table, config, say)
    command = ["aistack", "icu", "train", *_data_option(data), "--time-budget", f"{time_budget:g}"]
    command += ["--fill", fill.value, "--seed", str(seed)]
    command += [] if out == DEFAULT_MODEL_DIR else ["--out", str(out)]
    predictor = save_version(
        recipe, table, config, target, workbook=data.name, command=shlex.join(command)
    )
    console.print(
        metrics_table(
            f"version {version}: {recipe.estimator}, threshold {recipe.threshold:.3f}",
            {"out of fold (training patients)": _formatted(recipe.out_of_fold_metrics)},
        )
    )
    tell(f"trained in {recipe.seconds:.0f} s; wrote {target} ({predictor.model.file_name})")
    tell(f"cross-validate it: aistack icu validate --model-version {version} --record")


def _train_integratedml(
    table: PreparedTable, dsn: str | None, configuration: str | None, using: str | None, seed: int
) -> None:
    from aistack.icu.integratedml import (  # noqa: PLC0415
        IntegratedMLTraining,
        connect,
        train_integratedml,
    )

    if not dsn:
        raise typer.BadParameter("IntegratedML needs --dsn or AISTACK_IRIS_DSN", param_hint="--dsn")
    try:
        settings = json.loads(using) if using else None
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"not JSON: {error}", param_hint="--using") from error
    options = IntegratedMLTraining(using=settings, configuration=configuration, seed=seed)
    try:
        predictor = train_integratedml(connect(dsn), table, options=options)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    meta = predictor.metadata
    console.print(
        metrics_table(f"IntegratedML {meta.version}", {"VALIDATE MODEL": _formatted(meta.metrics)})
    )


@icu_app.command("validate")
def validate(
    data: Data = DEFAULT_WORKBOOK,
    time_budget: Annotated[
        float, typer.Option("--time-budget", min=1, help="AutoML search seconds per fold")
    ] = 30.0,
    folds: Annotated[int, typer.Option(min=2, help="patient folds")] = 5,
    fill: Fill = FillOption.forward,
    seed: Seed = 0,
    plot: Annotated[Path, typer.Option(help="calibration plot (PNG)")] = Path(
        "var/icu/calibration.png"
    ),
    json_out: Annotated[Path, typer.Option(help="the figures as JSON")] = Path(
        "var/icu/validation.json"
    ),
    record: Annotated[
        bool, typer.Option("--record", help="store the figures in a version and its card")
    ] = False,
    model_dir: ModelDir = DEFAULT_MODEL_DIR,
    version: Version = None,
) -> None:
    """Patient-grouped cross-validation of the local recipe: mean ± sd and a calibration plot."""
    from aistack.icu.local import read_record, record_validation, version_dir  # noqa: PLC0415
    from aistack.icu.model_card import write_card  # noqa: PLC0415
    from aistack.icu.training import TrainingConfig  # noqa: PLC0415
    from aistack.icu.validation import calibration_plot, cross_validate  # noqa: PLC0415

    table = _prepared(data, fill)
    target = None
    if record:
        try:
            target = version_dir(model_dir, version)
        except FileNotFoundError as error:
            raise typer.BadParameter(str(error), param_hint="--model-version") from error
        if read_record(target)["training_data_hash"] != table.data_hash:
            raise typer.BadParameter(
                f"version {target.name} was trained on other data (prepared-table hash differs: "
                "check --data and --fill)",
                param_hint="--record",
            )
    config = TrainingConfig(time_budget_s=time_budget)
    result = cross_validate(table, config, folds, seed, say)
    summary = result.summary()
    title = f"{folds}-fold patient-grouped cross-validation ({len(result.labels)} patients)"
    rows = {f"fold {f.fold}": _formatted(f.metrics) for f in result.folds}
    rows["mean ± sd"] = {k: f"{m:.3f} ± {s:.3f}" for k, (m, s) in result.mean_sd().items()}
    console.print(metrics_table(title, rows))
    calibration_plot(result, plot, title)
    command = ["aistack", "icu", "validate", *_data_option(data), "--fill", fill.value]
    command += ["--time-budget", f"{time_budget:g}", "--folds", str(folds), "--seed", str(seed)]
    summary |= {"command": shlex.join(command), "time_budget_s": time_budget}
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(summary, indent=2) + "\n")
    tell(f"Brier score {summary['brier_score']:.3f}; plot {plot}; figures {json_out}")
    if target is not None:
        from aistack.xray.model_card import now_utc  # noqa: PLC0415

        summary["validated_at"] = now_utc()
        record_validation(target, summary)
        tell(f"recorded in {target / 'model.json'} and {write_card(target)}")


@icu_app.command("predict")
def predict(
    file: Annotated[Path, typer.Argument(help="CSV of first-window rows, workbook column names")],
    backend: Annotated[Backend, typer.Option()] = Backend.local,
    model_dir: ModelDir = DEFAULT_MODEL_DIR,
    version: Version = None,
    top: Annotated[int, typer.Option(min=0, help="features to explain each prediction")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    dsn: Dsn = None,
) -> None:
    """Probability of ICU admission, label at the model's threshold, top features per row."""
    from aistack.errors import InvalidRequest  # noqa: PLC0415
    from aistack.icu.dataset import PATIENT  # noqa: PLC0415
    from aistack.icu.predictor import predict as predict_rows  # noqa: PLC0415

    rows = _read_csv(file)
    predictor = _predictor(backend, model_dir, version, dsn)
    try:
        answers = predict_rows(predictor, rows, top)
    except InvalidRequest as error:
        raise typer.BadParameter(error.message, param_hint="FILE") from error
    names = [str(i + 1 if row.get(PATIENT) is None else row[PATIENT]) for i, row in enumerate(rows)]
    if as_json:
        for name, answer in zip(names, answers, strict=True):
            tell(json.dumps({"row": name, **answer.to_dict()}))
        return
    meta = predictor.metadata
    table = Table(
        title=f"{meta.backend} model {meta.version}, threshold {meta.threshold:.3f}",
        title_justify="left",
    )
    for heading in ("row", "probability", "label", f"top features ({meta.contribution_unit})"):
        table.add_column(heading)
    for name, answer in zip(names, answers, strict=True):
        why = ", ".join(
            f"{c.feature}={'missing' if c.value is None else f'{c.value:g}'} "
            f"({c.contribution:+.2f})"
            for c in answer.top_features
        )
        table.add_row(name, f"{answer.probability:.3f}", str(answer.label), why)
    console.print(table)


def _read_csv(file: Path) -> list[dict[str, str | None]]:
    if not file.is_file():
        raise typer.BadParameter(f"{file} is not a file", param_hint="FILE")
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        rows = [{k: (v if v != "" else None) for k, v in row.items() if k} for row in reader]
    if not rows:
        raise typer.BadParameter(f"{file} has no rows under a header line", param_hint="FILE")
    return rows


def _predictor(
    backend: Backend, model_dir: Path, version: int | None, dsn: str | None
) -> IcuPredictor:
    if backend is Backend.integratedml:
        from aistack.icu.integratedml import IntegratedMLPredictor, connect  # noqa: PLC0415

        if not dsn:
            raise typer.BadParameter("IntegratedML needs --dsn or AISTACK_IRIS_DSN")
        return IntegratedMLPredictor.open(connect(dsn))
    from aistack.icu.local import load_local  # noqa: PLC0415

    try:
        return load_local(model_dir, version)
    except FileNotFoundError as error:
        raise typer.BadParameter(str(error), param_hint="--model-version") from error
