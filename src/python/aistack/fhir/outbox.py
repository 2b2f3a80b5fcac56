"""The standalone runtime's FHIR outbox: every stored prediction is published, eventually.

A prediction is stored first; publishing must never lose it nor delay its answer. So when
``AISTACK_FHIR_PUBLISH_URL`` is set, storing a prediction also writes a ``pending`` row in
``fhir_outbox``, **in the same transaction** as the prediction's row (a SQLAlchemy
``after_insert`` event on the predictions table, enabled for this runtime's database only):
no crash can leave a prediction without its outbox row, or the reverse.

A worker thread publishes the due rows (:class:`~aistack.fhir.publish.PredictionPublisher`):

* published: ``published``;
* :class:`~aistack.fhir.publish.PublishRejected` (the server refused the Bundle, or the
  prediction cannot become one): ``failed``, with the reason, for a person to look at;
* any other failure: still ``pending``, tried again after ``AISTACK_FHIR_PUBLISH_RETRY_S``,
  then twice as long each time up to ``AISTACK_FHIR_PUBLISH_MAX_RETRY_S`` (or later, when
  the server's ``Retry-After`` says so). A prediction whose result must reach the record
  is never given up while the server is merely away.

Rows live in the database, so a restart resumes the pending ones. Replicas sharing the
database each run a worker; a worker first *claims* a row with one conditional UPDATE that
pushes its next attempt past a lease, so exactly one replica publishes it at a time (and
a worker that dies mid-publish leaves the row due again once the lease ends).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Integer, String, event, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, Mapper, mapped_column, sessionmaker

from aistack.config import Settings
from aistack.fhir.publish import (
    FhirPublisher,
    PredictionPublisher,
    PublishError,
    PublishRejected,
    PublishResult,
)
from aistack.logs import log_event
from aistack.store import PredictionStore
from aistack.store.tables import Base, PredictionRow, UTCDateTime
from aistack.xray.files import FileStore

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 1024
"""Longer error messages are cut to the column's size."""
POLL_S = 1.0
"""How often the worker looks for due rows: a new prediction is published within it."""
BATCH = 50
"""Rows taken per query; the worker keeps going while rows are due."""


class OutboxStatus(StrEnum):
    PENDING = "pending"
    PUBLISHED = "published"
    FAILED = "failed"


class OutboxRow(Base):
    """One prediction to publish, and how far publishing it got."""

    __tablename__ = "fhir_outbox"

    prediction_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer)
    """Publishes tried so far (each may have retried a few times within itself)."""
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(MAX_ERROR_CHARS), nullable=True)


@dataclass(frozen=True)
class OutboxEntry:
    """An outbox row as the core sees it."""

    prediction_id: str
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    last_error: str | None = None


_COLUMNS = tuple(f.name for f in fields(OutboxEntry))
_recording: weakref.WeakSet[Engine] = weakref.WeakSet()
"""Databases whose new predictions go into the outbox (those of a publishing runtime)."""


@event.listens_for(PredictionRow, "after_insert")
def _enqueue_with_the_prediction(_mapper: Mapper, connection: Connection, row: Any) -> None:
    """The outbox row, written in the prediction's own transaction."""
    if connection.engine in _recording:
        now = datetime.now(UTC)
        connection.execute(
            insert(OutboxRow).values(
                prediction_id=row.id,
                status=OutboxStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
        )


def _entry(row: OutboxRow) -> OutboxEntry:
    values = {name: getattr(row, name) for name in _COLUMNS}
    return OutboxEntry(**{**values, "status": OutboxStatus(row.status)})


class FhirOutbox:
    """The ``fhir_outbox`` table: thread-safe, one short transaction per call."""

    def __init__(self, engine: Engine) -> None:
        OutboxRow.__table__.create(engine, checkfirst=True)
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def record_new_predictions(self, on: bool = True) -> None:
        """From now on (or no longer), each prediction stored in this database gets a row."""
        if on:
            _recording.add(self._engine)
        else:
            _recording.discard(self._engine)

    def get(self, prediction_id: str) -> OutboxEntry | None:
        with self._sessions() as session:
            row = session.get(OutboxRow, prediction_id)
            return None if row is None else _entry(row)

    def due(self, now: datetime | None = None, limit: int = BATCH) -> list[OutboxEntry]:
        """Pending rows whose next attempt is due, oldest first."""
        query = (
            select(OutboxRow)
            .where(
                OutboxRow.status == OutboxStatus.PENDING,
                OutboxRow.next_attempt_at <= (now or datetime.now(UTC)),
            )
            .order_by(OutboxRow.next_attempt_at, OutboxRow.created_at)
            .limit(limit)
        )
        with self._sessions() as session:
            return [_entry(row) for row in session.scalars(query)]

    def counts(self) -> dict[OutboxStatus, int]:
        """How many rows are in each state."""
        query = select(OutboxRow.status, func.count()).group_by(OutboxRow.status)
        with self._sessions() as session:
            found = {status: number for status, number in session.execute(query).all()}
        return {status: found.get(status, 0) for status in OutboxStatus}

    def claim(self, prediction_id: str, lease_s: float) -> bool:
        """Take a due row for one publish (its next attempt moves ``lease_s`` ahead); False
        when another worker took it first or it is no longer pending."""
        now = datetime.now(UTC)
        query = (
            update(OutboxRow)
            .where(
                OutboxRow.prediction_id == prediction_id,
                OutboxRow.status == OutboxStatus.PENDING,
                OutboxRow.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + timedelta(seconds=lease_s), updated_at=now)
        )
        with self._engine.begin() as connection:
            return connection.execute(query).rowcount == 1

    def mark_published(self, prediction_id: str, attempts: int) -> None:
        self._set(prediction_id, status=OutboxStatus.PUBLISHED, attempts=attempts, last_error=None)

    def mark_failed(self, prediction_id: str, attempts: int, error: str) -> None:
        self._set(
            prediction_id,
            status=OutboxStatus.FAILED,
            attempts=attempts,
            last_error=error[:MAX_ERROR_CHARS],
        )

    def retry_later(self, prediction_id: str, attempts: int, error: str, at: datetime) -> None:
        self._set(
            prediction_id,
            attempts=attempts,
            last_error=error[:MAX_ERROR_CHARS],
            next_attempt_at=at,
        )

    def _set(self, prediction_id: str, **values: Any) -> None:
        """Update a pending row (a finished row never changes again)."""
        query = (
            update(OutboxRow)
            .where(
                OutboxRow.prediction_id == prediction_id,
                OutboxRow.status == OutboxStatus.PENDING,
            )
            .values(updated_at=datetime.now(UTC), **values)
        )
        with self._engine.begin() as connection:
            connection.execute(query)


Publish = Callable[[str], PublishResult]
"""A prediction id in, its publish's result out (raises PublishError / PublishRejected)."""


class OutboxWorker:
    """Publishes due outbox rows, one at a time, in a thread of its own."""

    def __init__(
        self,
        outbox: FhirOutbox,
        publish: Publish,
        retry_s: float = 5.0,
        max_retry_s: float = 300.0,
        lease_s: float = 300.0,
        poll_s: float = POLL_S,
    ) -> None:
        self.outbox = outbox
        self.publish = publish
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.lease_s = lease_s
        self.poll_s = poll_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Publish what is due now (pending rows of earlier runs too), then keep polling."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="fhir-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """The publish in flight ends first (its row stays pending if it did not)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self.drain()
            except Exception:  # the database may be briefly unreachable: next round
                log.exception("the FHIR outbox could not be read")
            if self._stopping.wait(self.poll_s):
                return

    def drain(self) -> dict[OutboxStatus, int]:
        """Publish the rows due now; how many ended in each state (pending: retry later).

        A publish that stays pending ends the round: the server is away (or refuses these
        credentials), and every other row would meet the same, each costing a publish's
        attempts and waits. The next round, a poll later, goes on with the next due row.
        """
        outcomes = dict.fromkeys(OutboxStatus, 0)
        while not self._stopping.is_set():
            due = self.outbox.due()
            progressed = False
            for entry in due:
                if self._stopping.is_set():
                    break
                if not self.outbox.claim(entry.prediction_id, self.lease_s):
                    continue  # another worker has it
                outcome = self._publish(entry)
                outcomes[outcome] += 1
                if outcome == OutboxStatus.PENDING:
                    return outcomes
                progressed = True
            if not progressed:
                break
        return outcomes

    def _publish(self, entry: OutboxEntry) -> OutboxStatus:
        attempts = entry.attempts + 1
        prediction_id = entry.prediction_id
        try:
            result = self.publish(prediction_id)
        except PublishRejected as error:
            self.outbox.mark_failed(prediction_id, attempts, str(error))
            log_event(
                "fhir_publish_failed",
                logging.ERROR,
                prediction_id=prediction_id,
                attempts=attempts,
                error=str(error),
            )
            return OutboxStatus.FAILED
        except Exception as error:  # PublishError, or a defect: the row waits for next time
            wait = self.backoff_s(attempts, getattr(error, "retry_after_s", None))
            message = str(error) if isinstance(error, PublishError) else repr(error)
            if not isinstance(error, PublishError):
                log.exception("publishing prediction %s failed", prediction_id)
            at = datetime.now(UTC) + timedelta(seconds=wait)
            self.outbox.retry_later(prediction_id, attempts, message, at)
            log_event(
                "fhir_publish_retry",
                logging.WARNING,
                prediction_id=prediction_id,
                attempts=attempts,
                retry_in_s=round(wait, 1),
                error=message,
            )
            return OutboxStatus.PENDING
        self.outbox.mark_published(prediction_id, attempts)
        log_event(
            "fhir_published",
            prediction_id=prediction_id,
            attempts=attempts,
            created=result.created,
            existing=result.existing,
        )
        return OutboxStatus.PUBLISHED

    def backoff_s(self, attempts: int, retry_after_s: float | None = None) -> float:
        """``retry_s`` after the first failure, doubling up to ``max_retry_s``; never
        sooner than the server's ``Retry-After``."""
        wait = min(self.retry_s * 2 ** (attempts - 1), self.max_retry_s)
        return max(wait, retry_after_s or 0.0)


class FhirPublishing:
    """The standalone runtime's publishing: outbox, publisher and worker, from settings."""

    def __init__(self, outbox: FhirOutbox, publisher: PredictionPublisher, worker: OutboxWorker):
        self.outbox = outbox
        self.publisher = publisher
        self.worker = worker

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: PredictionStore,
        files: FileStore,
    ) -> FhirPublishing | None:
        """None unless ``AISTACK_FHIR_PUBLISH_URL`` is set; else recording starts now."""
        if not settings.fhir_publish_url:
            return None
        publisher = PredictionPublisher(
            store, files, settings.model_dir, FhirPublisher.from_settings(settings)
        )
        outbox = FhirOutbox(store.engine)
        outbox.record_new_predictions()
        worker = OutboxWorker(
            outbox,
            publisher.publish,
            retry_s=settings.fhir_publish_retry_s,
            max_retry_s=settings.fhir_publish_max_retry_s,
            # A publish takes at most its attempts' timeouts and waits; then the row is free.
            lease_s=4 * settings.fhir_publish_timeout_s + 60,
        )
        return cls(outbox, publisher, worker)

    def start(self) -> None:
        self.worker.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop publishing; a prediction stored from now on still gets its row, which the
        next start publishes."""
        self.worker.stop(timeout_s)
        self.publisher.close()
