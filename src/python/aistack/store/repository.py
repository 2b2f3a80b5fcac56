"""Prediction repository: plain dataclasses in and out, so the core never touches ORM objects."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from aistack.store.tables import Base, PredictionRow


@dataclass(frozen=True)
class PredictionRecord:
    """A prediction as the core sees it; mirrors the ``predictions`` row column for column."""

    id: str
    created_at: datetime
    model_name: str
    model_version: int
    input_sha256: str
    probabilities: dict[str, float]
    label: str
    covid_positive: bool
    threshold: float
    latency_ms: float
    endpoint: str
    image_file: str | None = None
    heatmap_file: str | None = None
    overlay_file: str | None = None
    client: str | None = None
    backend: str | None = None
    """Which inference backend served it (``inprocess``, or a configured TF Serving one)."""
    patient_id: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    accession_number: str | None = None
    """The DICOM input's identifiers (``imaging.dicom.DicomIdentifiers``); None otherwise."""
    fhir_observation_id: str | None = None
    fhir_report_id: str | None = None
    """Its Observation and DiagnosticReport in the FHIR resource store; None when not stored
    there (the IRIS runtime, or predictions stored before the store existed)."""

    @classmethod
    def create(cls, **values: Any) -> PredictionRecord:
        """Fill ``id`` (32-hex uuid4) and ``created_at`` (now, UTC) unless given."""
        values.setdefault("id", uuid.uuid4().hex)
        values.setdefault("created_at", datetime.now(UTC))
        return cls(**values)


_COLUMNS = tuple(f.name for f in fields(PredictionRecord))


def _to_record(row: PredictionRow) -> PredictionRecord:
    return PredictionRecord(**{name: getattr(row, name) for name in _COLUMNS})


def _sqlite_engine(database_url: str) -> Engine:
    """SQLite tuned for a threaded server: any thread may use a connection, WAL for readers."""
    url = make_url(database_url)
    connect_args = {"check_same_thread": False, "timeout": 30}
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        # One shared connection, otherwise every pooled connection sees its own empty DB.
        engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool)
    else:
        Path(url.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


class PredictionStore:
    """Thread-safe store: one short session per call, engine pool shared across threads."""

    def __init__(self, database_url: str) -> None:
        self._is_sqlite = make_url(database_url).get_backend_name() == "sqlite"
        self._engine = (
            _sqlite_engine(database_url)
            if self._is_sqlite
            else create_engine(database_url, pool_pre_ping=True)
        )
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        # SQLite allows one writer at a time; queueing here beats "database is locked" retries.
        self._write_lock = threading.Lock() if self._is_sqlite else None

    @property
    def engine(self) -> Engine:
        return self._engine

    def create_schema(self) -> None:
        """Create missing tables, and add nullable columns that newer versions introduced.

        Only additive, nullable columns are added in place, so a database written by an
        older aistack keeps its rows and works with this one.
        """
        Base.metadata.create_all(self._engine)
        add_missing_nullable_columns(self._engine)

    def add(self, record: PredictionRecord) -> None:
        row = PredictionRow(**{name: getattr(record, name) for name in _COLUMNS})
        if self._write_lock is None:
            self._insert(row)
        else:
            with self._write_lock:
                self._insert(row)

    def _insert(self, row: PredictionRow) -> None:
        with self._sessions.begin() as session:
            session.add(row)

    def get(self, prediction_id: str) -> PredictionRecord | None:
        with self._sessions() as session:
            row = session.get(PredictionRow, prediction_id)
            return None if row is None else _to_record(row)

    def recent(self, limit: int = 50, client: str | None = None) -> list[PredictionRecord]:
        """Newest first (of ``client``'s alone when given); ``id`` breaks timestamp ties."""
        query = (
            select(PredictionRow)
            .order_by(PredictionRow.created_at.desc(), PredictionRow.id.desc())
            .limit(limit)
        )
        if client is not None:
            query = query.where(PredictionRow.client == client)
        with self._sessions() as session:
            return [_to_record(row) for row in session.scalars(query)]

    def count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(PredictionRow)) or 0

    def existing_ids(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` have a row (the file sweep's test for orphans)."""
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = select(PredictionRow.id).where(PredictionRow.id.in_(chunk))
            with self._sessions() as session:
                found.update(session.scalars(query))
        return found

    def close(self) -> None:
        self._engine.dispose()


def add_missing_nullable_columns(engine: Engine) -> list[str]:
    """``ALTER TABLE ... ADD`` each nullable model column the live table lacks."""
    inspector = inspect(engine)
    added = []
    for table in Base.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present or not column.nullable:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as connection:
                connection.execute(
                    text(f"ALTER TABLE {table.name} ADD {column.name} {kind}")  # names from code
                )
            added.append(f"{table.name}.{column.name}")
    return added
