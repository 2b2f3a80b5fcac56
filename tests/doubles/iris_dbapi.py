"""A test double of InterSystems IRIS with IntegratedML, over DB-API 2.0.

It stands in for a connection from ``iris.connect(...)`` (remote) or
``iris.dbapi.connect(mode="embedded")`` (inside IRIS): it records every statement with its
bound parameters, keeps the tables it is asked to create, trains a small LightGBM model where
IRIS would run its provider (or installs ``trained_scorer`` as every trained model, for
parity with a local model), and answers the INFORMATION_SCHEMA views and ``PREDICT`` /
``PROBABILITY`` queries with rows shaped like IRIS's. ``DROP MODEL`` drops the model's
trained models with it, as IRIS does; scoring with a trained model that is gone raises
:class:`SqlErrorDouble`, as IRIS's driver raises a ``DatabaseError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import lightgbm
import numpy as np

from aistack.icu.dataset import LABEL
from aistack.icu.metrics import classification_metrics


class SqlErrorDouble(Exception):
    """What the driver raises for a statement IRIS refuses (SQLCODE < 0)."""


QUALIFIED = re.compile(r'"(\w+)"\."(\w+)"')


@dataclass
class IrisDbApiDouble:
    """A DB-API 2.0 connection that answers like IRIS with IntegratedML (see module doc)."""

    trained_scorer: Callable[[np.ndarray], np.ndarray] | None = None
    """Installed as every trained model's scorer (parity); otherwise TRAIN MODEL fits one."""
    statements: list[tuple[str, object]] = field(default_factory=list)
    tables: dict[str, tuple[list[str], list[list[object]]]] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)
    trained: dict[str, dict] = field(default_factory=dict)
    metrics: dict[str, list[tuple]] = field(default_factory=dict)
    commits: int = 0
    closed: bool = False
    fail_scoring: str | None = None
    """A fault to inject: every PREDICT/PROBABILITY query fails with this SQL error."""

    def cursor(self) -> CursorDouble:
        if self.closed:
            raise SqlErrorDouble("Connection is closed")
        return CursorDouble(self)

    def commit(self) -> None:
        self.commits += 1

    def close(self) -> None:
        self.closed = True

    def table(self, sql: str) -> tuple[list[str], list[list[object]]]:
        schema, name = QUALIFIED.search(sql).groups()
        return self.tables[f"{schema}.{name}"]

    def frame(self, key: str) -> tuple[list[str], np.ndarray]:
        columns, rows = self.tables[key]
        values = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
        return columns, values


class CursorDouble:
    def __init__(self, db: IrisDbApiDouble) -> None:
        self.db = db
        self.description: tuple | None = None
        self._rows: list[tuple] = []

    def close(self) -> None:
        pass

    def executemany(self, sql: str, seq: Sequence[Sequence[object]]) -> None:
        assert sql.startswith("INSERT INTO"), sql
        self.db.statements.append((sql, [list(r) for r in seq]))
        columns, rows = self.db.table(sql)
        assert all(len(r) == len(columns) for r in seq)
        rows += [list(r) for r in seq]

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        self.db.statements.append((sql, list(params)))
        assert sql.count("?") == len(params), sql
        self.description, self._rows = None, []
        answer = self._answer(sql, list(params))
        if answer is not None:
            self.description, self._rows = (("column",),), answer

    def fetchall(self) -> list[tuple]:
        return self._rows

    def _answer(self, sql: str, params: list[object]) -> list[tuple] | None:
        db = self.db
        if sql.startswith("CREATE TABLE"):
            schema, name = QUALIFIED.search(sql).groups()
            body = sql[sql.index("(") + 1 : sql.rindex(")")]
            db.tables[f"{schema}.{name}"] = (re.findall(r'"([^"]+)" \w', body), [])
            return None
        if sql.startswith("DROP TABLE IF EXISTS"):
            db.tables.pop(".".join(QUALIFIED.search(sql).groups()), None)
            return None
        if sql.startswith("DELETE FROM"):
            columns, rows = db.table(sql)
            rows[:] = [r for r in rows if r[columns.index("BATCH_ID")] != params[0]]
            return None
        if "INFORMATION_SCHEMA.COLUMNS" in sql:
            columns, _ = db.tables[f"{params[0]}.{params[1]}"]
            return [(c,) for c in columns]
        if "INFORMATION_SCHEMA.TABLES" in sql:
            return [(int(f"{params[0]}.{params[1]}" in db.tables),)]
        if "INFORMATION_SCHEMA.ML_MODELS" in sql:
            return [(int(params[0] in db.models),)]
        if match := re.fullmatch(r"DROP MODEL (\w+)", sql):
            del db.models[match[1]]
            db.trained = {k: t for k, t in db.trained.items() if t["model"] != match[1]}
            return None
        if match := re.match(r'CREATE MODEL (\w+) PREDICTING \("ICU"\) FROM ("\w+"\."\w+")', sql):
            db.models[match[1]] = {"source": match[2].replace('"', ""), "sql": sql}
            return None
        if sql.startswith("SET ML CONFIGURATION"):
            return None
        if match := re.match(r'TRAIN MODEL (\w+) AS (\w+) FROM ("\w+"\."\w+")', sql):
            db.trained[match[2]] = {"model": match[1], "scorer": self._fit(match[3])}
            return None
        if match := re.match(r'VALIDATE MODEL (\w+) AS (\w+) USE (\w+) FROM ("\w+"\."\w+")', sql):
            db.metrics[match[2]] = self._validate(match[3], match[4].replace('"', ""))
            return None
        if "INFORMATION_SCHEMA.ML_TRAINED_MODELS" in sql:
            return [
                (t["model"], name, "AutoML", "2026-11-26 00:00:00", "classification", "{}")
                for name, t in db.trained.items()
                if t["model"] == params[0]
            ]
        if "INFORMATION_SCHEMA.ML_VALIDATION_METRICS" in sql:
            return db.metrics.get(params[1], [])
        if match := re.search(r"PROBABILITY\((\w+) USE (\w+) FOR 1\)", sql):
            return self._score(match[2], sql, params[0])
        if sql.startswith('SELECT "AIStackICU"."ModelRecords"'):
            columns, rows = db.table(sql)
            found = [
                r for r in rows if r[0] == params[0] and (len(params) < 2 or r[1] == params[1])
            ]
            return [tuple(r) for r in sorted(found, key=lambda r: r[5], reverse=True)]
        raise AssertionError(f"the IRIS double does not know {sql!r}")

    def _features(self, key: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        columns, values = self.db.frame(key)
        keep = [i for i, c in enumerate(columns) if c not in (LABEL, "BATCH_ID", "ROW_NO")]
        labels = values[:, columns.index(LABEL)] if LABEL in columns else np.array([])
        return [columns[i] for i in keep], values[:, keep], labels

    def _fit(self, source: str) -> Callable[[np.ndarray], np.ndarray]:
        if self.db.trained_scorer is not None:
            return self.db.trained_scorer
        _, x, y = self._features(source.replace('"', ""))
        model = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=4, verbose=-1).fit(x, y)
        return lambda rows: model.predict_proba(rows)[:, 1]

    def _validate(self, trained: str, source: str) -> list[tuple]:
        _, x, y = self._features(source)
        p = self.db.trained[trained]["scorer"](x)
        metrics = classification_metrics(y, p, 0.5)
        flipped = classification_metrics(1 - y, 1 - p, 0.5)
        rows = [(name, round(metrics[name], 4), "1") for name in ("Precision", "Recall")]
        rows += [(name, round(flipped[name], 4), "0") for name in ("Precision", "Recall")]
        rows += [("F-Measure", round(metrics["F-Measure"], 4), "1")]
        return [*rows, *((name, metrics[name], None) for name in ("Accuracy", "ROC-AUC"))]

    def _score(self, trained: str, sql: str, batch: object) -> list[tuple]:
        if self.db.fail_scoring:
            raise SqlErrorDouble(self.db.fail_scoring)
        if trained not in self.db.trained:
            raise SqlErrorDouble(f"SQLCODE -400: trained model {trained} not found")
        columns, rows = self.db.table(sql)
        mine = [r for r in rows if r[columns.index("BATCH_ID")] == batch]
        x = np.array(
            [[np.nan if v is None else v for v in r[2:]] for r in mine], dtype=float
        ).reshape(len(mine), len(columns) - 2)
        p = self.db.trained[trained]["scorer"](x) if len(mine) else []
        answers = [(r[1], int(q >= 0.5), float(q)) for r, q in zip(mine, p, strict=True)]
        return sorted(answers)


class EmbeddedConnectionDouble:
    """One connection of ``iris.dbapi.connect(mode="embedded")`` to the database double."""

    def __init__(self, db: IrisDbApiDouble) -> None:
        self.db = db
        self.closed = False

    def cursor(self) -> CursorDouble:
        if self.closed:
            raise SqlErrorDouble("Connection is closed")
        return self.db.cursor()

    def commit(self) -> None:
        self.db.commit()

    def close(self) -> None:
        self.closed = True


class EmbeddedIrisDouble:
    """IRIS's ``iris`` module as ``iris_ep.install()`` returns it inside IRIS, as far as the
    embedded DB-API goes: ``dbapi.connect(mode="embedded")`` opens a connection to ``db``.
    Outside IRIS the real wrapper refuses embedded mode (``InterfaceError``), as here any
    other way of connecting is refused."""

    def __init__(self, db: IrisDbApiDouble) -> None:
        self.db = db
        self.dbapi = self
        self.connections: list[EmbeddedConnectionDouble] = []

    def connect(
        self, *args: object, mode: str = "auto", **kwargs: object
    ) -> EmbeddedConnectionDouble:
        if args or mode != "embedded" or set(kwargs) - {"namespace", "isolation_level"}:
            raise SqlErrorDouble(f"only embedded connections here, not {args} {mode} {kwargs}")
        connection = EmbeddedConnectionDouble(self.db)
        self.connections.append(connection)
        return connection
