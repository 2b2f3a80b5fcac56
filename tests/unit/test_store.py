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
