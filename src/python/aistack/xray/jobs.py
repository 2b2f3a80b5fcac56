"""Asynchronous predictions for the standalone runtime: an accepted job survives a restart.

A job is accepted once its image is in the spool (a folder under VAR_DIR) and its row is
``queued``. A few worker threads run jobs through the same ``XrayService.predict`` as the
synchronous routes; the spool file goes when the job ends. Replicas share VAR_DIR and the
database, so a worker first *claims* a job in one conditional UPDATE: exactly one runs it.
A job still ``running`` after ``lease_s`` lost its worker (the process died) and is claimed
again: at start-up, and by a scan every half lease.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aistack.errors import AistackError, ServiceBusy
from aistack.inference.gate import GateFull, Ticket
from aistack.logs import log_event
from aistack.store.jobs import JobRecord, JobStatus, JobStore
from aistack.xray.service import XrayService

log = logging.getLogger(__name__)

JOB_ENDPOINT = "v2-job"
"""The ``endpoint`` of predictions made by jobs (stored, and a metrics label)."""
ADMISSION_POLL_S = 0.05
"""A job waits for a prediction place by polling: the synchronous routes are not slowed."""
SPOOL_GRACE_S = 3600
"""A spool file this old with no unfinished job was left by a crash between file and row."""
TEMP_PREFIX = ".tmp-"

ServiceFor = Callable[[int | None], XrayService]
"""The service of a model version (None: the default), once the models are loaded."""


class JobSpool:
    """Uploaded images of unfinished jobs, one file per job id, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def write(self, job_id: str, data: bytes) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=TEMP_PREFIX)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, self.root / job_id)

    def read(self, job_id: str) -> bytes | None:
        with contextlib.suppress(FileNotFoundError):
            return (self.root / job_id).read_bytes()
        return None

    def remove(self, job_id: str) -> None:
        (self.root / job_id).unlink(missing_ok=True)

    def sweep(self, keep: set[str], now: float | None = None) -> int:
        """Remove files older than SPOOL_GRACE_S that belong to no job in ``keep``."""
        cutoff = (now if now is not None else time.time()) - SPOOL_GRACE_S
        removed = 0
        for entry in os.scandir(self.root):
            with contextlib.suppress(FileNotFoundError):
                if entry.name not in keep and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
        return removed


class JobRunner:
    def __init__(
        self,
        jobs: JobStore,
        spool: JobSpool,
        service_for: ServiceFor,
        workers: int = 1,
        max_queued: int = 100,
        lease_s: float = 60.0,
    ) -> None:
        self.jobs = jobs
        self.spool = spool
        self.service_for = service_for
        self.workers = workers
        self.max_queued = max_queued
        self.lease_s = lease_s
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._waiting: set[str] = set()  # ids in the local queue, not yet picked up
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- accepting

    def submit(
        self, data: bytes, heatmap: bool, version: int | None, client: str | None
    ) -> JobRecord:
        """Spool the image, queue the job; 503 ``service_busy`` when the backlog is full."""
        job_id = uuid.uuid4().hex
        with self._lock:
            self.refuse_if_full()
            self._waiting.add(job_id)
        try:
            self.spool.write(job_id, data)  # before the row: a queued job always has its image
            job = self.jobs.create(client, version, heatmap, job_id=job_id)
        except BaseException:
            self.spool.remove(job_id)
            with self._lock:
                self._waiting.discard(job_id)
            raise
        self._queue.put(job_id)
        return job

    def refuse_if_full(self) -> None:
        """503 ``service_busy`` when ``max_queued`` jobs wait already (before a body is read)."""
        if len(self._waiting) >= self.max_queued:
            raise ServiceBusy(f"the job backlog is full ({self.max_queued} waiting); retry shortly")

    # --- lifecycle

    def start(self) -> None:
        """Start the workers, and the scan that resumes unfinished jobs (at once, then
        every half lease)."""
        if self._stopping.is_set():  # started again: the stop left its end marks queued
            with self._lock:
                self._queue, self._waiting = queue.SimpleQueue(), set()
            self._stopping.clear()
        self._threads = [
            threading.Thread(target=self._work, name=f"job-worker-{n}", daemon=True)
            for n in range(self.workers)
        ]
        self._threads.append(threading.Thread(target=self._scan, name="job-scan", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Let running jobs finish (up to ``timeout_s``); queued ones wait for the next start."""
        self._stopping.set()
        for _ in range(self.workers):
            self._queue.put(None)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._threads = []

    # --- resuming

    def _scan(self) -> None:
        self._resume(start_up=True)
        while not self._stopping.wait(self.lease_s / 2):
            self._resume(start_up=False)

    def _resume(self, start_up: bool) -> None:
        """Queue unfinished jobs no worker holds: all at start-up, later those left stale."""
        try:
            unfinished = self.jobs.unfinished()
            if start_up:
                self.spool.sweep(keep={job.id for job in unfinished})
        except Exception:  # the database may be briefly unreachable: next scan
            log.exception("could not list unfinished jobs")
            return
        stale_before = self._stale_before()
        for job in unfinished:
            stale = job.updated_at < stale_before
            fresh_queued = start_up and job.status == JobStatus.QUEUED
            with self._lock:
                if job.id in self._waiting or not (stale or fresh_queued):
                    continue
                self._waiting.add(job.id)
            self._queue.put(job.id)

    def _stale_before(self) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=self.lease_s)

    # --- running

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            with self._lock:
                self._waiting.discard(job_id)
            if self._stopping.is_set():
                break
            try:
                self._run(job_id)
            except Exception:  # a database failure: the job is resumed once stale
                log.exception("job %s could not be run", job_id)

    def _run(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.finished:
            return
        try:
            service = self.service_for(job.version)
        except AistackError as error:  # its version is no longer served, or failed to load
            if self.jobs.claim(job_id, self._stale_before()):
                self._fail(job, error)
            return
        ticket = self._admit(service)
        if ticket is None:
            return  # stopping: the job stays queued for the next start
        try:
            if self.jobs.claim(job_id, self._stale_before()):
                self._execute(job, service, ticket)
        finally:
            ticket.close()

    def _admit(self, service: XrayService) -> Ticket | None:
        """A place among the service's predictions, waited for; None when stopping."""
        while not self._stopping.is_set():
            try:
                return service.admission.reserve()
            except GateFull:
                self._stopping.wait(ADMISSION_POLL_S)
        return None

    def _execute(self, job: JobRecord, service: XrayService, ticket: Ticket) -> None:
        data = self.spool.read(job.id)
        if data is None:
            self._fail(job, AistackError("the job's image was lost; submit it again"))
            return
        try:
            record = service.predict(data, job.heatmap, JOB_ENDPOINT, job.client, ticket)
        except AistackError as error:  # the image or the model: what a request would get
            self._fail(job, error)
        except Exception:
            log.exception("job %s failed", job.id)
            self._fail(job, AistackError("internal error; see the server log"))
        else:
            self.jobs.mark_succeeded(job.id, record.id)
            self._ended(job, JobStatus.SUCCEEDED, prediction_id=record.id)

    def _fail(self, job: JobRecord, error: AistackError) -> None:
        self.jobs.mark_failed(job.id, error.code, error.message)
        self._ended(job, JobStatus.FAILED, code=error.code)

    def _ended(self, job: JobRecord, status: JobStatus, **details: str) -> None:
        self.spool.remove(job.id)
        log_event("job_finished", job_id=job.id, status=status.value, **details)
