"""PredictionStore against a real SQLite file: the same code path the service uses."""

from __future__ import annotations

import hashlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from aistack.store import PredictionRecord, PredictionStore


def make_record(n: int = 0, **overrides: object) -> PredictionRecord:
    values: dict[str, object] = {
        "created_at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC) + timedelta(seconds=n),
        "model_name": "covid19",
        "model_version": 3,
        "input_sha256": hashlib.sha256(str(n).encode()).hexdigest(),
        "probabilities": {"covid": 0.7, "normal": 0.2, "pneumonia_bac": 0.1},
        "label": "covid",
        "covid_positive": True,
        "threshold": 0.65,
        "latency_ms": 12.5,
        "endpoint": "v2",
        "image_file": f"{n:04d}.png",
        "heatmap_file": None,
        "overlay_file": None,
    }
    values.update(overrides)
    return PredictionRecord.create(**values)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "aistack.db"


@pytest.fixture
def store(db_path: Path):
    store = PredictionStore(f"sqlite:///{db_path}")
    store.create_schema()
    yield store
    store.close()


def test_round_trip(store: PredictionStore) -> None:
    record = make_record(heatmap_file="h.png", overlay_file="o.png", endpoint="v1-heatmap")
    store.add(record)
    assert store.get(record.id) == record
    assert len(record.id) == 32
    int(record.id, 16)


def test_unknown_id_is_none(store: PredictionStore) -> None:
    assert store.get("0" * 32) is None


def test_recent_is_newest_first_and_limited(store: PredictionStore) -> None:
    records = [make_record(n) for n in (3, 0, 4, 1, 2)]
    for record in records:
        store.add(record)
    expected = sorted(records, key=lambda r: r.created_at, reverse=True)
    assert store.recent() == expected
    assert store.recent(limit=2) == expected[:2]
    assert store.count() == 5


def test_concurrent_adds_all_land(store: PredictionStore) -> None:
    threads, per_thread = 8, 25

    def worker(t: int) -> list[str]:
        ids = []
        for i in range(per_thread):
            record = make_record(t * per_thread + i)
            store.add(record)
            ids.append(record.id)
        return ids

    with ThreadPoolExecutor(threads) as pool:
        ids = [i for batch in pool.map(worker, range(threads)) for i in batch]
    assert store.count() == threads * per_thread
    assert len(set(ids)) == threads * per_thread
    assert all(store.get(i) is not None for i in ids[::17])


def test_created_at_comes_back_as_utc(store: PredictionStore) -> None:
    paris = timezone(timedelta(hours=2))
    record = make_record(created_at=datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=paris))
    store.add(record)
    loaded = store.get(record.id)
    assert loaded is not None
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert loaded.created_at == datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


def test_naive_created_at_is_refused(store: PredictionStore) -> None:
    with pytest.raises(Exception, match="timezone-aware"):
        store.add(make_record(created_at=datetime(2024, 5, 1, 12, 0)))
    assert store.count() == 0


def test_sqlite_file_uses_wal(store: PredictionStore, db_path: Path) -> None:
    store.count()  # opens a connection, which applies the pragma
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_in_memory_url_shares_one_database() -> None:
    store = PredictionStore("sqlite://")
    store.create_schema()
    store.add(make_record())
    assert store.count() == 1
    store.close()


def test_recent_of_one_client_and_existing_ids(store: PredictionStore) -> None:
    mine = make_record(1, client="alice")
    theirs = make_record(2, client="bob")
    anonymous = make_record(3)
    for record in (mine, theirs, anonymous):
        store.add(record)
    assert [r.id for r in store.recent(10, client="alice")] == [mine.id]
    assert len(store.recent(10)) == 3
    assert store.existing_ids([mine.id, "f" * 32, anonymous.id]) == {mine.id, anonymous.id}


def test_a_database_from_before_the_client_column_is_upgraded_in_place(db_path: Path) -> None:
    """A var/aistack.db written by the previous release keeps its rows and gains the column."""
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as connection:
        connection.execute(
            "CREATE TABLE predictions (id VARCHAR(32) PRIMARY KEY, created_at DATETIME, "
            "model_name VARCHAR(128), model_version INTEGER, input_sha256 VARCHAR(64), "
            "probabilities VARCHAR(1024), label VARCHAR(32), covid_positive BOOLEAN, "
            "threshold FLOAT, latency_ms FLOAT, endpoint VARCHAR(32), image_file VARCHAR(255), "
            "heatmap_file VARCHAR(255), overlay_file VARCHAR(255))"
        )
        connection.execute(
            "INSERT INTO predictions VALUES ('" + "a" * 32 + "', '2024-05-01 12:00:00', "
            "'covid19', 1, 'x', '{\"covid\": 1.0, \"normal\": 0.0, \"pneumonia_bac\": 0.0}', "
            "'covid', 1, 0.65, 3.0, 'v2', NULL, NULL, NULL)"
        )
    store = PredictionStore(f"sqlite:///{db_path}")
    try:
        store.create_schema()
        old = store.get("a" * 32)
        assert old is not None and old.client is None and old.label == "covid"
        store.add(make_record(5, client="alice"))
        assert [r.client for r in store.recent(5)] == ["alice", None]
    finally:
        store.close()
