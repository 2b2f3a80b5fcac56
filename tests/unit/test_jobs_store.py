"""JobStore against a real SQLite file, on the prediction store's engine as the runtimes use it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateTable

from aistack.store import PredictionStore
from aistack.store.jobs import MAX_MESSAGE_CHARS, JobStatus, JobStore
from aistack.store.tables import JobRow

LONG_AGO = timedelta(hours=1)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator:
    store = PredictionStore(f"sqlite:///{tmp_path / 'aistack.db'}")
    yield store.engine
    store.close()


@pytest.fixture
def jobs(engine) -> JobStore:
    return JobStore(engine)


def test_it_creates_its_own_table_on_a_fresh_database(engine):
    assert not inspect(engine).has_table("prediction_jobs")
    JobStore(engine)
    JobStore(engine)  # and a second store on the same database finds it there
    assert inspect(engine).has_table("prediction_jobs")


def test_a_new_job_is_queued_and_reads_back(jobs: JobStore):
    job = jobs.create("radiology", 2, heatmap=False)
    assert re.fullmatch(r"[0-9a-f]{32}", job.id)
    assert job.status is JobStatus.QUEUED and not job.finished
    assert job.created_at == job.updated_at and job.created_at.tzinfo is UTC
    assert (job.client, job.version, job.heatmap) == ("radiology", 2, False)
    assert job.prediction_id is job.error_code is job.error_message is None
    assert jobs.get(job.id) == job
    assert jobs.create(None, None, True, job_id="a" * 32).id == "a" * 32


def test_unknown_id_is_none_and_updates_to_it_do_nothing(jobs: JobStore):
    jobs.mark_running("0" * 32)
    jobs.mark_failed("0" * 32, "not_an_image", "no")
    assert jobs.get("0" * 32) is None


def test_a_job_runs_then_succeeds(jobs: JobStore):
    job = jobs.create("a", None, True)
    jobs.mark_running(job.id)
    running = jobs.get(job.id)
    assert running.status is JobStatus.RUNNING and running.updated_at >= job.updated_at
    jobs.mark_succeeded(job.id, "b" * 32)
    done = jobs.get(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.finished
    assert done.prediction_id == "b" * 32 and done.error_code is None
    assert done.created_at == job.created_at


def test_a_failed_job_keeps_the_error_cut_to_the_column(jobs: JobStore):
    job = jobs.create("a", None, True)
    jobs.mark_failed(job.id, "not_a_chest_xray", "x" * 5000)
    failed = jobs.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "not_a_chest_xray"
    assert failed.error_message == "x" * MAX_MESSAGE_CHARS


def test_a_finished_job_never_changes_again(jobs: JobStore):
    job = jobs.create("a", None, True)
    jobs.mark_succeeded(job.id, "b" * 32)
    done = jobs.get(job.id)
    jobs.mark_failed(job.id, "internal_error", "late")
    jobs.mark_running(job.id)
    assert not jobs.claim(job.id, datetime.now(UTC) + LONG_AGO)
    assert jobs.get(job.id) == done


def test_unfinished_lists_queued_and_running_oldest_first(jobs: JobStore):
    first, second, third, fourth = (jobs.create(str(n), None, True) for n in range(4))
    jobs.mark_running(second.id)
    jobs.mark_succeeded(third.id, "c" * 32)
    jobs.mark_failed(fourth.id, "corrupt_image", "truncated")
    unfinished = jobs.unfinished()
    assert [j.id for j in unfinished] == [first.id, second.id]
    assert [j.status for j in unfinished] == [JobStatus.QUEUED, JobStatus.RUNNING]


def test_a_queued_job_is_claimed_once(jobs: JobStore):
    job = jobs.create("a", None, True)
    stale_before = datetime.now(UTC) - LONG_AGO
    assert jobs.claim(job.id, stale_before)
    assert jobs.get(job.id).status is JobStatus.RUNNING
    assert not jobs.claim(job.id, stale_before)  # its worker is alive: not stale


def test_a_running_job_untouched_past_the_lease_is_claimed_again(jobs: JobStore):
    job = jobs.create("a", None, True)
    jobs.mark_running(job.id)
    assert jobs.claim(job.id, stale_before=datetime.now(UTC) + timedelta(seconds=1))


def test_of_concurrent_claims_exactly_one_wins(jobs: JobStore):
    job = jobs.create("a", None, True)
    stale_before = datetime.now(UTC) - LONG_AGO
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda _: jobs.claim(job.id, stale_before), range(8)))
    assert wins.count(True) == 1


def test_the_jobs_table_compiles_for_iris():
    pytest.importorskip("sqlalchemy_iris", reason="sqlalchemy-iris is a dev dependency")
    dialect = make_url("iris://user:pwd@localhost:1972/USER").get_dialect()()
    ddl = str(CreateTable(JobRow.__table__).compile(dialect=dialect))
    assert "CREATE TABLE prediction_jobs" in ddl and "PRIMARY KEY (id)" in ddl
    assert "TEXT" not in ddl.upper() and "JSON" not in ddl
