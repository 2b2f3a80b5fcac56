"""The store's tables compile for InterSystems IRIS (sqlalchemy-iris), offline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from aistack.store.tables import ApiKeyRow, PredictionRow

pytest.importorskip("sqlalchemy_iris", reason="sqlalchemy-iris is a dev dependency")


@pytest.fixture(scope="module")
def iris_dialect():
    return make_url("iris://user:pwd@localhost:1972/USER").get_dialect()()


def test_table_and_indexes_compile_for_iris(iris_dialect):
    ddl = str(CreateTable(PredictionRow.__table__).compile(dialect=iris_dialect))
    assert "CREATE TABLE predictions" in ddl
    assert "PRIMARY KEY (id)" in ddl
    # Only types IRIS has natively: no JSON, no unbounded text (a stream column on IRIS).
    assert "JSON" not in ddl and "TEXT" not in ddl.upper().replace("CONTEXT", "")
    indexes = [
        str(CreateIndex(ix).compile(dialect=iris_dialect)) for ix in PredictionRow.__table__.indexes
    ]
    assert any("input_sha256" in ix for ix in indexes)


def test_an_insert_compiles_and_binds_plain_values(iris_dialect):
    values = {
        "id": "a" * 32,
        "created_at": datetime.now(UTC),
        "model_name": "covid19",
        "model_version": 1,
        "input_sha256": "0" * 64,
        "probabilities": {"covid": 1.0},
        "label": "covid",
        "covid_positive": True,
        "threshold": 0.65,
        "latency_ms": 1.0,
        "endpoint": "v2",
    }
    compiled = insert(PredictionRow).values(**values).compile(dialect=iris_dialect)
    assert str(compiled).startswith("INSERT INTO predictions")
    assert set(compiled.params) == set(values)
    column = PredictionRow.__table__.c.probabilities
    bound = column.type.bind_processor(iris_dialect)
    stored = bound(values["probabilities"]) if bound else values["probabilities"]
    assert isinstance(stored, str) and '"covid"' in stored


def test_the_api_keys_table_compiles_for_iris(iris_dialect):
    ddl = str(CreateTable(ApiKeyRow.__table__).compile(dialect=iris_dialect))
    assert "CREATE TABLE api_keys" in ddl and "UNIQUE (name)" in ddl
    assert "TEXT" not in ddl.upper()


def test_the_added_client_column_compiles_for_iris(iris_dialect):
    """add_missing_nullable_columns() sends ALTER TABLE ... ADD with this type on IRIS."""
    column = PredictionRow.__table__.c.client
    assert column.nullable
    assert column.type.compile(dialect=iris_dialect) == "VARCHAR(64)"
