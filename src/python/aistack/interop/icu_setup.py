"""The ICU model in IRIS, as the installer sets it up: the prepared table, then CREATE /
TRAIN / VALIDATE MODEL, through the embedded SQL of the installer's namespace.

``AIStack.Installer``'s ``EnsureIcuModel`` calls :func:`ensure_model`, which reads the
Sirio-Libanes workbook at ``AISTACK_ICU_WORKBOOK`` (docker-compose.yml mounts it read-only;
the image never holds data), prepares it with :mod:`aistack.icu.dataset` and trains with
:func:`aistack.icu.integratedml.train_integratedml`, as ``aistack icu train --backend
integratedml`` does from outside. Then the Management Portal's SQL page can run
``SELECT PREDICT(IcuAdmission ...)`` too (docs/IRIS.md).

It is safe to run at every start of the container: without the workbook it does nothing and
says why; when IRIS already records a model trained on the same prepared table (its data
hash), it trains nothing.

:func:`portal_sql` gives the statements docs/IRIS.md offers for the Management Portal's SQL
page, built by the functions the backend runs, with the values written in (the page takes
no parameters); a test keeps the document and the code equal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aistack.icu import integratedml as iml
from aistack.icu.dataset import LABEL, load_prepared
from aistack.icu.integratedml import (
    DbApiConnection,
    IntegratedMLPredictor,
    IntegratedMLTraining,
    IrisNames,
    Statement,
    train_integratedml,
)
from aistack.icu.predictor import ModelMetadata
from aistack.interop.icu import embedded_connection

WORKBOOK_ENV = "AISTACK_ICU_WORKBOOK"
PORTAL_SUFFIX = "Portal"
"""Trained-model and validation-run names for what a user runs by hand (IcuAdmissionTPortal,
IcuAdmissionVPortal): apart from the installer's, which carry the time they were made."""
TRAINING = IntegratedMLTraining(seed=2020)
"""The split ``aistack icu train --backend integratedml`` makes by default; AutoML, the
system's default ML configuration, with its own settings."""


@dataclass(frozen=True)
class SetupResult:
    status: Literal["skipped", "current", "trained"]
    message: str


def ensure_model(
    workbook: str | None = None,
    connect: Callable[[], DbApiConnection] = embedded_connection,
    names: IrisNames | None = None,
) -> SetupResult:
    """Train the ICU model in IRIS unless there is no workbook or it is trained already."""
    path = workbook if workbook is not None else os.environ.get(WORKBOOK_ENV, "")
    if not path:
        return SetupResult(
            "skipped", f"{WORKBOOK_ENV} is not set: no workbook to train the ICU model on"
        )
    if not Path(path).is_file():
        return SetupResult(
            "skipped",
            f"no ICU workbook at {path} ({WORKBOOK_ENV}): is it mounted? (docker-compose.yml)",
        )
    table = load_prepared(Path(path))
    connection = connect()
    try:
        current = _recorded_model(connection, names)
        if current is not None and current.training_data_hash == table.data_hash:
            return SetupResult(
                "current",
                f"IntegratedML model {current.version} is already trained on this table "
                f"(data hash {table.data_hash[:12]})",
            )
        predictor = train_integratedml(connection, table, names, TRAINING)
    finally:
        close = getattr(connection, "close", None)
        if callable(close):
            close()
    meta = predictor.metadata
    figures = ", ".join(f"{name} {value:.3f}" for name, value in meta.metrics.items())
    return SetupResult(
        "trained",
        f"trained IntegratedML model {meta.version} on {table.summary()['patients']} "
        f"patients (data hash {table.data_hash[:12]}); VALIDATE MODEL: {figures or 'none'}",
    )


def _recorded_model(connection: DbApiConnection, names: IrisNames | None) -> ModelMetadata | None:
    """The model this backend last recorded, or None when there is none to open."""
    try:
        return IntegratedMLPredictor.open(connection, names).metadata
    except Exception:  # noqa: BLE001 - no tables, no record, no trained model: train one
        return None


# --- the statements a user runs on the Management Portal's SQL page


def literal(value: object) -> str:
    """A bound value written into the SQL text (strings quoted, quotes doubled)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool | int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def inline(statement: Statement) -> str:
    """The statement with its ``?`` parameters replaced by their values, in order."""
    pieces = statement.sql.split("?")
    if len(pieces) != len(statement.params) + 1:
        raise ValueError(f"{len(statement.params)} values for {len(pieces) - 1} parameters")
    text = pieces[0]
    for value, piece in zip(statement.params, pieces[1:], strict=True):
        text += literal(value) + piece
    return text


def predictions_sql(names: IrisNames, trained: str | None = None, top: int = 20) -> str:
    """``PREDICT`` and ``PROBABILITY`` for the held-out patients, beside their label: with
    the model's default trained model (the latest trained), or ``trained``."""
    model = iml.identifier(names.model)
    use = f" USE {iml.identifier(trained)}" if trained else ""
    return (
        f"SELECT TOP {int(top)} PREDICT({model}{use}) AS PREDICTED, "
        f"PROBABILITY({model}{use} FOR 1) AS PROBABILITY, {iml.column(LABEL)} AS ACTUAL "
        f"FROM {iml._qualified(names, names.holdout_table)}"
    )


def portal_sql(names: IrisNames | None = None) -> dict[str, list[str]]:
    """docs/IRIS.md's statements for the Management Portal's SQL page, by purpose."""
    names = names or IrisNames()
    trained, run = f"{names.model}T{PORTAL_SUFFIX}", f"{names.model}V{PORTAL_SUFFIX}"
    return {
        "inspect": [
            inline(iml.trained_models_sql(names)),
            "SELECT VALIDATION_RUN_NAME, METRIC_NAME, METRIC_VALUE, TARGET_VALUE "
            "FROM INFORMATION_SCHEMA.ML_VALIDATION_METRICS "
            f"WHERE MODEL_NAME = {literal(names.model)} ORDER BY VALIDATION_RUN_NAME",
            f"SELECT * FROM {iml._qualified(names, names.record_table)} "
            f"ORDER BY {iml.column('CREATED_AT')} DESC",
        ],
        "predict": [predictions_sql(names)],
        "train": [
            iml.train_model_sql(names, trained).sql,
            iml.validate_model_sql(names, trained, run).sql,
            inline(iml.validation_metrics_sql(names, run)),
            predictions_sql(names, trained),
        ],
        "recreate": [
            iml.drop_model_sql(names).sql,
            iml.create_model_sql(names).sql,
        ],
    }
