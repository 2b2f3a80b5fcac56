"""Asynchronous prediction jobs: one repository for both runtimes (SQLite or IRIS).

A job is ``queued`` when accepted, ``running`` while a worker has it, then ``succeeded``
(pointing at the stored prediction) or ``failed`` (with the error a synchronous request
would have got). Updates only touch unfinished jobs, so a finished job never changes again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from aistack.store.tables import JobRow

MAX_MESSAGE_CHARS = 1024
"""Longer error messages are cut to the column's size."""


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class JobRecord:
    """A job as the core sees it; mirrors the ``prediction_jobs`` row."""

    id: str
    created_at: datetime
    updated_at: datetime
    status: JobStatus
    client: str | None
    version: int | None
    heatmap: bool
    prediction_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED


_COLUMNS = tuple(f.name for f in fields(JobRecord))


def _to_record(row: JobRow) -> JobRecord:
    values = {name: getattr(row, name) for name in _COLUMNS}
    return JobRecord(**{**values, "status": JobStatus(row.status)})


class JobStore:
    """Thread-safe: one short transaction per call, on the prediction store's engine."""

    def __init__(self, engine: Engine) -> None:
        JobRow.__table__.create(engine, checkfirst=True)
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def create(
        self, client: str | None, version: int | None, heatmap: bool, job_id: str | None = None
    ) -> JobRecord:
        """A new ``queued`` job; ``job_id`` (32 hex) lets a caller name files after it first."""
        now = datetime.now(UTC)
        record = JobRecord(
            id=job_id or uuid.uuid4().hex,
            created_at=now,
            updated_at=now,
            status=JobStatus.QUEUED,
            client=client,
            version=version,
            heatmap=heatmap,
        )
        with self._sessions.begin() as session:
            session.add(JobRow(**{name: getattr(record, name) for name in _COLUMNS}))
        return record

    def get(self, job_id: str) -> JobRecord | None:
        with self._sessions() as session:
            row = session.get(JobRow, job_id)
            return None if row is None else _to_record(row)

    def mark_running(self, job_id: str) -> None:
        self._update(job_id, status=JobStatus.RUNNING)

    def claim(self, job_id: str, stale_before: datetime) -> bool:
        """Mark running if queued, or running but untouched since ``stale_before`` (its
        worker died); False when another worker has it or it is finished.

        One conditional UPDATE: of runners sharing the database, exactly one wins a job.
        """
        claimable = or_(
            JobRow.status == JobStatus.QUEUED,
            (JobRow.status == JobStatus.RUNNING) & (JobRow.updated_at < stale_before),
        )
        return self._update(job_id, claimable, status=JobStatus.RUNNING)

    def mark_succeeded(self, job_id: str, prediction_id: str) -> None:
        self._update(job_id, status=JobStatus.SUCCEEDED, prediction_id=prediction_id)

    def mark_failed(self, job_id: str, code: str, message: str) -> None:
        self._update(
            job_id,
            status=JobStatus.FAILED,
            error_code=code,
            error_message=message[:MAX_MESSAGE_CHARS],
        )

    def unfinished(self) -> list[JobRecord]:
        """Queued or running jobs, oldest first."""
        query = (
            select(JobRow)
            .where(JobRow.status.in_(UNFINISHED))
            .order_by(JobRow.created_at, JobRow.id)
        )
        with self._sessions() as session:
            return [_to_record(row) for row in session.scalars(query)]

    def _update(self, job_id: str, condition: Any = None, **values: Any) -> bool:
        """Set ``values`` (and ``updated_at``) on the job if unfinished and ``condition``."""
        query = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.status.in_(UNFINISHED))
            .values(updated_at=datetime.now(UTC), **values)
        )
        if condition is not None:
            query = query.where(condition)
        with self._engine.begin() as connection:
            return connection.execute(query).rowcount == 1
