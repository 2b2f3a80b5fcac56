"""The IntegratedML backend: the same predictor interface, answered by IRIS in SQL.

Training loads a patient-grouped split of the prepared table into two IRIS tables (training
patients' and held-out patients' first-window rows: IntegratedML takes no row weights, so it
learns from one row per patient), then runs ``CREATE MODEL ... PREDICTING ("ICU") FROM``,
``TRAIN MODEL`` (optionally after ``SET ML CONFIGURATION``, optionally ``USING {...}``) and
``VALIDATE MODEL ... FROM`` the held-out table, and reads ``INFORMATION_SCHEMA.
ML_TRAINED_MODELS`` and ``ML_VALIDATION_METRICS``. What IRIS does not keep (the training data
hash, the threshold) goes into a small record table beside the model.

Scoring inserts the rows into a scoring table under a fresh batch id, reads
``PREDICT(m USE t)`` and ``PROBABILITY(m USE t FOR 1)`` for that batch, and deletes it.
Explanations fall back to occlusion (IntegratedML exposes no per-prediction contributions):
each present feature is set to missing in turn, all variants are scored in one batch, and a
feature's contribution is the probability it accounts for (``p(row) - p(row without it)``).

Every statement comes from a small pure function below, so it can be read and compiled
without IRIS. Names are checked against strict patterns and quoted by the sqlalchemy-iris
dialect; every value is bound as a ``?`` parameter (DB-API ``qmark``, as
intersystems-irispython's ``iris.connect`` expects). JSON in ``USING`` takes only plain keys
and plain scalar values. The connection comes from a DSN, ``iris://user:password@host:1972/
NAMESPACE`` (``AISTACK_IRIS_DSN`` for the CLI and the e2e test).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Protocol

import numpy as np
import sqlalchemy as sa
from sqlalchemy.schema import CreateTable, DropTable

from aistack.icu.dataset import LABEL, PreparedTable, patient_folds
from aistack.icu.predictor import METRIC_NAMES, Contribution, ModelMetadata, Row, strongest
from aistack.icu.rows import feature_matrix

IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9]{0,59}")
"""Model, trained-model, validation-run, configuration, schema and table names."""
COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_ ]{0,127}")
"""Column names: the workbook's (letters, digits, underscores, spaces), always quoted."""
USING_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
USING_TEXT = re.compile(r"[A-Za-z0-9_.:%-]{0,128}")
BATCH = "BATCH_ID"
ROW_NO = "ROW_NO"
IRIS_THRESHOLD = 0.5
"""``PREDICT`` of a binary IntegratedML model labels 1 from probability 0.5."""
INSERT_CHUNK = 500
EXPLANATION_METHOD = (
    "occlusion: each present feature set to missing in turn, scored by IntegratedML; "
    "contribution = p(row) - p(row without the feature)"
)


class DbApiConnection(Protocol):
    """What is used of a DB-API 2.0 connection (``iris.connect(...)`` returns one)."""

    def cursor(self) -> Any: ...

    def commit(self) -> None: ...


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[object, ...] = ()


@cache
def dialect() -> sa.engine.Dialect:
    """sqlalchemy-iris's dialect with the driver's ``qmark`` parameters."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    return make_url("iris://").get_dialect()(paramstyle="qmark")


def identifier(name: str) -> str:
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain IRIS name (letters and digits, 60 at most)")
    return name


def column(name: str) -> str:
    if not COLUMN.fullmatch(name):
        raise ValueError(f"{name!r} is not a column name this backend accepts")
    return dialect().identifier_preparer.quote_identifier(name)


@dataclass(frozen=True)
class IrisNames:
    """Where the backend's objects live in the namespace."""

    schema: str = "AIStackICU"
    model: str = "IcuAdmission"
    train_table: str = "TrainRows"
    holdout_table: str = "HoldoutRows"
    scoring_table: str = "ScoringRows"
    record_table: str = "ModelRecords"

    def __post_init__(self) -> None:
        for value in vars(self).values():
            identifier(value)


# --- tables (SQLAlchemy Core, compiled by the sqlalchemy-iris dialect)


def _table(names: IrisNames, name: str, features: Sequence[str], kind: str) -> sa.Table:
    for feature in features:
        column(feature)
    columns: list[sa.Column] = []
    if kind == "scoring":
        columns += [sa.Column(BATCH, sa.String(32)), sa.Column(ROW_NO, sa.Integer)]
    columns += [sa.Column(f, sa.Float) for f in features]
    if kind == "training":
        columns.append(sa.Column(LABEL, sa.Integer))
    return sa.Table(identifier(name), sa.MetaData(), *columns, schema=names.schema)


def record_table(names: IrisNames) -> sa.Table:
    return sa.Table(
        identifier(names.record_table),
        sa.MetaData(),
        sa.Column("MODEL_NAME", sa.String(64)),
        sa.Column("TRAINED_MODEL_NAME", sa.String(64)),
        sa.Column("VALIDATION_RUN_NAME", sa.String(64)),
        sa.Column("DATA_HASH", sa.String(64)),
        sa.Column("THRESHOLD", sa.Float),
        sa.Column("CREATED_AT", sa.String(32)),
        schema=names.schema,
    )


def _compiled(construct: sa.sql.ClauseElement) -> Statement:
    compiled = construct.compile(dialect=dialect())
    order = getattr(compiled, "positiontup", None) or ()  # DDL has no parameters
    return Statement(str(compiled).strip(), tuple(compiled.params[k] for k in order))


def create_table_sql(table: sa.Table) -> Statement:
    return _compiled(CreateTable(table))


def drop_table_sql(table: sa.Table) -> Statement:
    return _compiled(DropTable(table, if_exists=True))


def insert_sql(table: sa.Table) -> Statement:
    """``INSERT ... VALUES (?, ...)`` for ``executemany`` with rows in the table's column order."""
    compiled = sa.insert(table).compile(dialect=dialect())
    return Statement(str(compiled))


def table_exists_sql(names: IrisNames, table: str) -> Statement:
    return Statement(
        "SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        (names.schema, identifier(table)),
    )


def columns_sql(names: IrisNames, table: str) -> Statement:
    return Statement(
        "SELECT COLUMN_NAME FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ? "
        "AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        (names.schema, identifier(table)),
    )


def delete_batch_sql(table: sa.Table, batch: str) -> Statement:
    return _compiled(sa.delete(table).where(table.c[BATCH] == batch))


# --- IntegratedML statements


def _qualified(names: IrisNames, table: str) -> str:
    preparer = dialect().identifier_preparer
    return f"{preparer.quote_identifier(names.schema)}.{preparer.quote_identifier(table)}"


def using_clause(settings: Mapping[str, object] | None) -> str:
    """`` USING {...}`` from plain keys and scalar values, or nothing."""
    if not settings:
        return ""
    for key, value in settings.items():
        if not USING_KEY.fullmatch(key):
            raise ValueError(f"USING key {key!r} is not a plain name")
        plain = isinstance(value, bool | int | float) and not (
            isinstance(value, float) and not math.isfinite(value)
        )
        if not plain and not (isinstance(value, str) and USING_TEXT.fullmatch(value)):
            raise ValueError(f"USING value {value!r} for {key!r} is not a plain number or word")
    return " USING " + json.dumps(dict(settings), sort_keys=True)


def model_exists_sql(names: IrisNames) -> Statement:
    return Statement(
        "SELECT COUNT(*) FROM INFORMATION_SCHEMA.ML_MODELS WHERE MODEL_NAME = ?", (names.model,)
    )


def drop_model_sql(names: IrisNames) -> Statement:
    return Statement(f"DROP MODEL {identifier(names.model)}")


def create_model_sql(names: IrisNames, using: Mapping[str, object] | None = None) -> Statement:
    return Statement(
        f"CREATE MODEL {identifier(names.model)} PREDICTING ({column(LABEL)}) "
        f"FROM {_qualified(names, names.train_table)}{using_clause(using)}"
    )


def set_configuration_sql(configuration: str) -> Statement:
    return Statement(f"SET ML CONFIGURATION {identifier(configuration)}")


def train_model_sql(
    names: IrisNames, trained: str, using: Mapping[str, object] | None = None
) -> Statement:
    return Statement(
        f"TRAIN MODEL {identifier(names.model)} AS {identifier(trained)} "
        f"FROM {_qualified(names, names.train_table)}{using_clause(using)}"
    )


def validate_model_sql(names: IrisNames, trained: str, run: str) -> Statement:
    return Statement(
        f"VALIDATE MODEL {identifier(names.model)} AS {identifier(run)} "
        f"USE {identifier(trained)} FROM {_qualified(names, names.holdout_table)}"
    )


def trained_models_sql(names: IrisNames) -> Statement:
    return Statement(
        "SELECT MODEL_NAME, TRAINED_MODEL_NAME, PROVIDER, TRAINED_TIMESTAMP, MODEL_TYPE, "
        "MODEL_INFO FROM INFORMATION_SCHEMA.ML_TRAINED_MODELS WHERE MODEL_NAME = ? "
        "ORDER BY TRAINED_TIMESTAMP DESC",
        (names.model,),
    )


def validation_metrics_sql(names: IrisNames, run: str) -> Statement:
    return Statement(
        "SELECT METRIC_NAME, METRIC_VALUE, TARGET_VALUE "
        "FROM INFORMATION_SCHEMA.ML_VALIDATION_METRICS "
        "WHERE MODEL_NAME = ? AND VALIDATION_RUN_NAME = ?",
        (names.model, identifier(run)),
    )


def score_sql(names: IrisNames, trained: str, batch: str) -> Statement:
    model, trained = identifier(names.model), identifier(trained)
    return Statement(
        f"SELECT {column(ROW_NO)}, PREDICT({model} USE {trained}) AS PREDICTED, "
        f"PROBABILITY({model} USE {trained} FOR 1) AS PROBABILITY "
        f"FROM {_qualified(names, names.scoring_table)} WHERE {column(BATCH)} = ? "
        f"ORDER BY {column(ROW_NO)}",
        (batch,),
    )


def latest_record_sql(names: IrisNames, trained: str | None = None) -> Statement:
    table = record_table(names)
    query = sa.select(table).where(table.c["MODEL_NAME"] == sa.bindparam("model", names.model))
    if trained is not None:
        trained_name = sa.bindparam("trained", identifier(trained))
        query = query.where(table.c["TRAINED_MODEL_NAME"] == trained_name)
    return _compiled(query.order_by(table.c["CREATED_AT"].desc()))


def metrics_from_rows(rows: Sequence[Sequence[object]]) -> dict[str, float]:
    """``ML_VALIDATION_METRICS`` rows → metrics by name: the positive class's value (target
    ``1``) where IRIS gives one per class, else the row without a target value."""
    chosen: dict[str, tuple[int, float]] = {}
    for name, value, target in rows:
        rank = {"1": 0, "": 1}.get("" if target is None else str(target).strip())
        if rank is None or value is None:
            continue
        if str(name) not in chosen or rank < chosen[str(name)][0]:
            chosen[str(name)] = (rank, float(value))
    return {name: chosen[name][1] for name in METRIC_NAMES if name in chosen}


# --- running statements


def run(connection: DbApiConnection, statement: Statement) -> list[tuple]:
    """Execute one statement with its bound parameters; rows when it returns any."""
    cursor = connection.cursor()
    try:
        cursor.execute(statement.sql, list(statement.params))
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []
    finally:
        cursor.close()


def insert_rows(
    connection: DbApiConnection, table: sa.Table, rows: Sequence[Sequence[object]]
) -> None:
    statement = insert_sql(table)
    cursor = connection.cursor()
    try:
        for start in range(0, len(rows), INSERT_CHUNK):
            cursor.executemany(statement.sql, [list(r) for r in rows[start : start + INSERT_CHUNK]])
    finally:
        cursor.close()


def _bound(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _recreate(connection: DbApiConnection, table: sa.Table) -> None:
    run(connection, drop_table_sql(table))
    run(connection, create_table_sql(table))


def connect(dsn: str) -> DbApiConnection:
    """A DB-API connection from ``iris://user:password@host:port/NAMESPACE``."""
    import iris  # noqa: PLC0415 - intersystems-irispython, the iris extra
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    url = make_url(dsn)
    if url.drivername not in ("iris", "iris+intersystems"):
        raise ValueError(f"expected an iris:// DSN, not {url.drivername}://")
    return iris.connect(
        hostname=url.host or "localhost",
        port=url.port or 1972,
        namespace=url.database or "USER",
        username=url.username or "",
        password=url.password or "",
    )


# --- the predictor


@dataclass
class IntegratedMLPredictor:
    """``IcuPredictor`` answered by a trained IntegratedML model over DB-API.

    One predictor per connection, used by one thread at a time (DB-API connections are not
    shared between threads); open one per worker.
    """

    connection: DbApiConnection
    names: IrisNames
    trained_model: str
    metadata: ModelMetadata
    _scoring_ready: bool = field(default=False, repr=False)

    @classmethod
    def open(
        cls,
        connection: DbApiConnection,
        names: IrisNames | None = None,
        trained_model: str | None = None,
    ) -> IntegratedMLPredictor:
        """The latest model this backend trained (or ``trained_model``), with its metrics;
        its features are the training table's columns (the model's inputs, by name)."""
        names = names or IrisNames()
        columns = [str(r[0]) for r in run(connection, columns_sql(names, names.train_table))]
        features = tuple(c for c in columns if c != LABEL)
        if not features:
            raise LookupError(f"IRIS has no training table {names.schema}.{names.train_table}")
        records = run(connection, latest_record_sql(names, trained_model))
        if not records:
            raise LookupError(f"no trained IntegratedML model {names.model} recorded in IRIS")
        _, trained, run_name, data_hash, threshold, created = records[0]
        trained_rows = [r for r in run(connection, trained_models_sql(names)) if r[1] == trained]
        if not trained_rows:
            raise LookupError(f"IRIS has no trained model {trained} of {names.model}")
        metrics = metrics_from_rows(run(connection, validation_metrics_sql(names, run_name)))
        _, _, provider, trained_at, model_type, model_info = trained_rows[0]
        metadata = ModelMetadata(
            backend="integratedml",
            version=str(trained),
            training_data_hash=str(data_hash),
            threshold=float(threshold),
            features=tuple(features),
            metrics=metrics,
            evaluation=f"VALIDATE MODEL on held-out patients' first-window rows (run {run_name})",
            explanation_method=EXPLANATION_METHOD,
            contribution_unit="probability",
            details={
                "model": names.model,
                "provider": provider,
                "model_type": model_type,
                "model_info": model_info,
                "trained_at": str(trained_at),
                "recorded_at": created,
            },
        )
        return cls(connection, names, str(trained), metadata)

    def _scoring_table(self) -> sa.Table:
        table = _table(self.names, self.names.scoring_table, self.metadata.features, "scoring")
        if not self._scoring_ready:
            exists = run(self.connection, table_exists_sql(self.names, self.names.scoring_table))
            if not exists or not exists[0][0]:
                run(self.connection, create_table_sql(table))
            self._scoring_ready = True
        return table

    def _score(self, x: np.ndarray) -> list[float]:
        if not len(x):
            return []
        table = self._scoring_table()
        batch = uuid.uuid4().hex
        rows = [[batch, i, *map(_bound, values)] for i, values in enumerate(x)]
        insert_rows(self.connection, table, rows)
        try:
            answers = run(self.connection, score_sql(self.names, self.trained_model, batch))
        finally:
            run(self.connection, delete_batch_sql(table, batch))
            self.connection.commit()
        by_row = {int(r[0]): float(r[2]) for r in answers}
        if len(by_row) != len(x):
            raise RuntimeError(f"IRIS scored {len(by_row)} of {len(x)} rows")
        return [by_row[i] for i in range(len(x))]

    def predict_proba(self, rows: Sequence[Row]) -> list[float]:
        return self._score(feature_matrix(rows, self.metadata.features))

    def explain(self, row: Row, top: int = 5) -> list[Contribution]:
        return self.explain_rows([row], top)[0]

    def explain_rows(self, rows: Sequence[Row], top: int = 5) -> list[list[Contribution]]:
        x = feature_matrix(rows, self.metadata.features)
        explanations = []
        for values in x:
            present = np.flatnonzero(~np.isnan(values))
            variants = np.repeat(values[None, :], len(present) + 1, axis=0)
            variants[np.arange(1, len(present) + 1), present] = np.nan
            scored = self._score(variants)
            contributions = [
                Contribution(self.metadata.features[j], float(values[j]), scored[0] - scored[k + 1])
                for k, j in enumerate(present)
            ]
            explanations.append(strongest(contributions, top))
        return explanations


# --- training


@dataclass(frozen=True)
class IntegratedMLTraining:
    using: Mapping[str, object] | None = None
    """Provider settings for ``CREATE MODEL`` and ``TRAIN MODEL`` (e.g. ``{"seed": 1}``)."""
    configuration: str | None = None
    """An ML configuration to ``SET`` before training (e.g. ``AutoML``)."""
    holdout_fold: int = 0
    """Which of the 5 patient folds is held out for ``VALIDATE MODEL``."""
    seed: int = 0


def holdout_split(table: PreparedTable, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training patients' first-window rows, held-out patients' first-window rows)."""
    train_rows, held_out = list(patient_folds(table, 5, seed))[fold]
    first = np.flatnonzero(table.is_first_window)
    return np.intersect1d(train_rows, first), held_out


def training_statements(
    names: IrisNames,
    features: Sequence[str],
    trained: str,
    run_name: str,
    options: IntegratedMLTraining,
) -> list[Statement]:
    """The model statements of one training, in order (tables are loaded before them)."""
    statements = [create_model_sql(names, options.using)]
    if options.configuration:
        statements.append(set_configuration_sql(options.configuration))
    statements += [
        train_model_sql(names, trained, options.using),
        validate_model_sql(names, trained, run_name),
    ]
    return statements


def train_integratedml(
    connection: DbApiConnection,
    table: PreparedTable,
    names: IrisNames | None = None,
    options: IntegratedMLTraining | None = None,
) -> IntegratedMLPredictor:
    """Load the split, train and validate in IRIS, record, and open the trained model."""
    names = names or IrisNames()
    options = options or IntegratedMLTraining()
    features = table.features
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    trained, run_name = f"{names.model}T{stamp}", f"{names.model}V{stamp}"
    train_rows, held_out = holdout_split(table, options.holdout_fold, options.seed)
    x, y = table.x, table.y
    for name, rows in ((names.train_table, train_rows), (names.holdout_table, held_out)):
        target = _table(names, name, features, "training")
        _recreate(connection, target)
        insert_rows(connection, target, [[*map(_bound, x[i]), int(y[i])] for i in rows])
    _recreate(connection, _table(names, names.scoring_table, features, "scoring"))
    if run(connection, model_exists_sql(names))[0][0]:
        run(connection, drop_model_sql(names))
    for statement in training_statements(names, features, trained, run_name, options):
        run(connection, statement)
    records = record_table(names)
    if not run(connection, table_exists_sql(names, names.record_table))[0][0]:
        run(connection, create_table_sql(records))
    created = datetime.now(UTC).isoformat(timespec="microseconds")  # sorts as it happened
    row = [names.model, trained, run_name, table.data_hash, IRIS_THRESHOLD, created]
    insert_rows(connection, records, [row])
    connection.commit()
    return IntegratedMLPredictor.open(connection, names, trained)
