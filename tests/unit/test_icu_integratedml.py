"""The IntegratedML backend without IRIS: its SQL as text and through the sqlalchemy-iris
dialect, names that cannot inject, and the whole backend run against a DB-API double.

``IrisDbApiDouble`` (tests/doubles/iris_dbapi.py) stands in for IRIS over DB-API. The parity
test installs the committed local model as the double's trained model: the same rows must
then get the same probabilities through SQL as in process. The test marked ``iris`` runs the
real thing when ``AISTACK_IRIS_DSN`` names an IRIS with IntegratedML.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable

import numpy as np
import pytest
import sqlalchemy as sa

from aistack.errors import InvalidRequest
from aistack.icu import integratedml as iml
from aistack.icu.dataset import LABEL, PreparedTable, prepare, read_workbook
from aistack.icu.defaults import WORKBOOK_NAME
from aistack.icu.local import load_local
from aistack.icu.predictor import METRIC_NAMES, IcuPredictor, predict
from tests.conftest import DATA_DIR
from tests.doubles.iris_dbapi import IrisDbApiDouble

WORKBOOK = DATA_DIR / "icu" / WORKBOOK_NAME
NAMES = iml.IrisNames()
FEATURES = ("AGE_PERCENTIL", "DISEASE GROUPING 1", "WINDOW", "PCR_MEDIAN")
QUOTED = '"AIStackICU"'


# --- SQL as text


def test_integratedml_statements_read_as_documented():
    using = {"seed": 1, "TrainMode": "BALANCE"}
    assert iml.create_model_sql(NAMES, using).sql == (
        'CREATE MODEL IcuAdmission PREDICTING ("ICU") FROM "AIStackICU"."TrainRows" '
        'USING {"TrainMode": "BALANCE", "seed": 1}'
    )
    assert iml.train_model_sql(NAMES, "IcuAdmissionT1").sql == (
        'TRAIN MODEL IcuAdmission AS IcuAdmissionT1 FROM "AIStackICU"."TrainRows"'
    )
    assert iml.validate_model_sql(NAMES, "IcuAdmissionT1", "IcuAdmissionV1").sql == (
        "VALIDATE MODEL IcuAdmission AS IcuAdmissionV1 USE IcuAdmissionT1 "
        'FROM "AIStackICU"."HoldoutRows"'
    )
    assert iml.set_configuration_sql("AutoML").sql == "SET ML CONFIGURATION AutoML"
    assert iml.drop_model_sql(NAMES).sql == "DROP MODEL IcuAdmission"
    score = iml.score_sql(NAMES, "IcuAdmissionT1", "abc")
    assert score.sql == (
        'SELECT "ROW_NO", PREDICT(IcuAdmission USE IcuAdmissionT1) AS PREDICTED, '
        "PROBABILITY(IcuAdmission USE IcuAdmissionT1 FOR 1) AS PROBABILITY "
        'FROM "AIStackICU"."ScoringRows" WHERE "BATCH_ID" = ? ORDER BY "ROW_NO"'
    )
    assert score.params == ("abc",)
    metrics = iml.validation_metrics_sql(NAMES, "IcuAdmissionV1")
    assert metrics.sql.endswith("WHERE MODEL_NAME = ? AND VALIDATION_RUN_NAME = ?")
    assert "INFORMATION_SCHEMA.ML_VALIDATION_METRICS" in metrics.sql
    assert metrics.params == ("IcuAdmission", "IcuAdmissionV1")
    trained = iml.trained_models_sql(NAMES)
    assert "INFORMATION_SCHEMA.ML_TRAINED_MODELS WHERE MODEL_NAME = ?" in trained.sql
    assert iml.model_exists_sql(NAMES).params == ("IcuAdmission",)


def test_table_statements_are_compiled_by_the_sqlalchemy_iris_dialect():
    training = iml._table(NAMES, NAMES.train_table, FEATURES, "training")
    ddl = iml.create_table_sql(training).sql
    assert ddl.startswith(f'CREATE TABLE {QUOTED}."TrainRows" (')
    for name in FEATURES:  # reserved words (WINDOW) and spaces are quoted, never bare
        assert f'"{name}" FLOAT' in ddl
    assert '"ICU" INTEGER' in ddl
    scoring = iml._table(NAMES, NAMES.scoring_table, FEATURES, "scoring")
    assert '"BATCH_ID" VARCHAR(32)' in iml.create_table_sql(scoring).sql
    assert iml.drop_table_sql(training).sql == f'DROP TABLE IF EXISTS {QUOTED}."TrainRows"'
    insert = iml.insert_sql(scoring).sql
    assert insert.startswith(f'INSERT INTO {QUOTED}."ScoringRows" ("BATCH_ID", "ROW_NO", ')
    assert insert.count("?") == len(FEATURES) + 2
    delete = iml.delete_batch_sql(scoring, "b1")
    assert delete.sql.startswith(f'DELETE FROM {QUOTED}."ScoringRows" WHERE ')
    assert delete.params == ("b1",)
    latest = iml.latest_record_sql(NAMES, "IcuAdmissionT1")
    assert latest.params == ("IcuAdmission", "IcuAdmissionT1") and "DESC" in latest.sql


@pytest.mark.parametrize(
    "statement",
    [
        iml.create_model_sql(NAMES),
        iml.train_model_sql(NAMES, "T1", {"seed": 3}),
        iml.validate_model_sql(NAMES, "T1", "V1"),
        iml.score_sql(NAMES, "T1", "b"),
        iml.validation_metrics_sql(NAMES, "V1"),
        iml.trained_models_sql(NAMES),
        iml.table_exists_sql(NAMES, "TrainRows"),
        iml.columns_sql(NAMES, "TrainRows"),
    ],
    ids=lambda s: s.sql.split(" ", 2)[0] + " " + s.sql.split(" ", 2)[1],
)
def test_hand_written_statements_compile_for_iris_with_one_placeholder_per_value(statement):
    compiled = sa.text(statement.sql).compile(dialect=iml.dialect())
    assert str(compiled) == statement.sql and statement.sql.count("?") == len(statement.params)


@pytest.mark.parametrize(
    "attempt",
    [
        lambda: iml.identifier("IcuAdmission; DROP TABLE x"),
        lambda: iml.identifier("Icu_Admission"),
        lambda: iml.column('PCR" FROM x --'),
        lambda: iml.IrisNames(model="Icu Admission"),
        lambda: iml.train_model_sql(NAMES, "T1 USING {}"),
        lambda: iml.using_clause({"seed": "1}; DROP MODEL x"}),
        lambda: iml.using_clause({"a b": 1}),
        lambda: iml.using_clause({"seed": float("nan")}),
        lambda: iml.set_configuration_sql("AutoML; x"),
    ],
)
def test_names_and_settings_that_could_inject_are_refused(attempt: Callable[[], object]):
    with pytest.raises(ValueError):
        attempt()


def test_metrics_are_read_for_the_positive_class():
    rows = [
        ("Precision", 0.9, "0"),
        ("Precision", 0.6, "1"),
        ("Recall", 0.7, "1"),
        ("F-Measure", 0.65, None),
        ("F-Measure", 0.5, "1"),
        ("Accuracy", 0.8, None),
        ("Micro-F", 0.1, None),
    ]
    assert iml.metrics_from_rows(rows) == {
        "Precision": 0.6,
        "Recall": 0.7,
        "F-Measure": 0.5,
        "Accuracy": 0.8,
    }


# --- the backend against the double


@pytest.fixture(scope="module")
def table() -> PreparedTable:
    if not WORKBOOK.is_file():
        pytest.skip(f"the ICU workbook is not at {WORKBOOK}")
    return prepare(read_workbook(WORKBOOK))


def sql_of(db: IrisDbApiDouble) -> list[str]:
    return [sql.split(" (")[0][:60] for sql, _ in db.statements]


def test_training_runs_the_documented_statements_with_bound_values(table):
    db = IrisDbApiDouble()
    options = iml.IntegratedMLTraining(using={"seed": 1}, configuration="AutoML")
    predictor = iml.train_integratedml(db, table, options=options)
    order = [s.split(" ")[0] + " " + s.split(" ")[1] for s in sql_of(db)]
    assert order.index("CREATE MODEL") < order.index("SET ML") < order.index("TRAIN MODEL")
    assert order.index("TRAIN MODEL") < order.index("VALIDATE MODEL")
    create = next(s for s, _ in db.statements if s.startswith("CREATE MODEL"))
    assert create.endswith('USING {"seed": 1}')
    train_rows = db.tables["AIStackICU.TrainRows"][1]
    holdout_rows = db.tables["AIStackICU.HoldoutRows"][1]
    assert len(train_rows) + len(holdout_rows) == 353  # first-window rows, one per patient
    for sql, _ in db.statements:  # values travel as parameters, never in the text
        assert table.data_hash not in sql and not re.search(r"\b0\.\d{3,}", sql), sql
    meta = predictor.metadata
    assert meta.backend == "integratedml" and meta.training_data_hash == table.data_hash
    assert meta.version.startswith("IcuAdmissionT") and meta.threshold == 0.5
    assert set(meta.metrics) == set(METRIC_NAMES) and 0.5 < meta.metrics["ROC-AUC"] <= 1
    assert meta.contribution_unit == "probability" and db.commits >= 1
    assert isinstance(predictor, IcuPredictor) and meta.features == table.features
    reopened = iml.IntegratedMLPredictor.open(db)  # a later process: everything read from IRIS
    assert reopened.metadata == meta
    # trained again: the model is dropped and redefined, the record keeps both
    iml.train_integratedml(db, table, options=iml.IntegratedMLTraining(holdout_fold=1))
    assert sum(s.startswith("DROP MODEL") for s, _ in db.statements) == 1


def test_both_backends_answer_the_same_rows_the_same(table):
    """Parity: the committed local model installed as the double's IntegratedML model."""
    local = load_local()
    db = IrisDbApiDouble(trained_scorer=local.model.probabilities)
    remote = iml.train_integratedml(db, table)
    rows = table.first_window().drop(columns=[LABEL]).head(40).to_dict("records")
    rows[0] = {k: v for k, v in rows[0].items() if not (isinstance(v, float) and math.isnan(v))}
    rows[1] = {**rows[1], "AGE_PERCENTIL": "Above 90th", "PCR_MEDIAN": None}
    np.testing.assert_allclose(remote.predict_proba(rows), local.predict_proba(rows), atol=1e-12)
    assert db.tables["AIStackICU.ScoringRows"][1] == []  # each batch is deleted after scoring
    for predictor in (local, remote):
        answers = predict(predictor, rows[:2], top=3)
        assert len(answers) == 2 and all(0 < a.probability < 1 for a in answers)
        assert all(1 <= len(a.top_features) <= 3 for a in answers)
        with pytest.raises(InvalidRequest, match="PCR_MEDIN"):
            predictor.predict_proba([{"PCR_MEDIN": 1.0}])
    # occlusion: removing the named feature moves the probability by the named amount
    why = remote.explain(rows[2], top=1)[0]
    without = {**rows[2], why.feature: None}
    moved = remote.predict_proba([rows[2]])[0] - remote.predict_proba([without])[0]
    assert why.contribution == pytest.approx(moved) and why.contribution != 0


@pytest.mark.iris
def test_integratedml_in_a_live_iris(table):
    dsn = os.environ.get("AISTACK_IRIS_DSN")
    if not dsn:
        pytest.skip(
            "AISTACK_IRIS_DSN is not set: this test needs IRIS with IntegratedML, e.g. "
            "AISTACK_IRIS_DSN=iris://_SYSTEM:SYS@localhost:1972/USER"
        )
    names = iml.IrisNames(schema="AIStackICUTest")
    connection = iml.connect(dsn)
    predictor = iml.train_integratedml(connection, table, names)
    rows = table.first_window().drop(columns=[LABEL]).head(5).to_dict("records")
    probabilities = predictor.predict_proba(rows)
    assert len(probabilities) == 5 and all(0 <= p <= 1 for p in probabilities)
    assert predictor.metadata.metrics and predictor.explain(rows[0], top=2)
    again = iml.IntegratedMLPredictor.open(connection, names)
    assert again.metadata.version == predictor.metadata.version
    assert again.metadata.features == table.features
