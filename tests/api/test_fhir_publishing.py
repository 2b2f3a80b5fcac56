"""The standalone runtime publishes its predictions through the FHIR outbox.

The FHIR server is the project's own facade (``live_server``, ``/fhir/r4``), reached through
:class:`~tests.unit.test_fhir_publish.FhirFront`, a double of the network in between that can
be taken down (its port closed) and brought back. The outbox is the real one, on SQLite; the
last test runs a whole second service (``aistack serve``) that publishes what it predicts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from aistack.bench.local_server import LocalServer, start_local_server
from aistack.config import Settings
from aistack.fhir.outbox import (
    FhirOutbox,
    FhirPublishing,
    OutboxRow,
    OutboxStatus,
    OutboxWorker,
)
from aistack.store import PredictionStore
from aistack.xray.files import FileStore
from tests.api.helpers import b64
from tests.conftest import MODEL_DIR
from tests.unit.test_fhir_publish import ONE_OF_EACH, FhirFront, on_facade, stored_prediction

PREDICTIONS = "/api/v2/xray/predictions"


def wait_until(condition: Callable[[], bool], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture(scope="module")
def facade_key(live_server: LocalServer) -> str:
    return live_server.create_key(f"outbox-{uuid.uuid4().hex[:8]}", "admin")


@pytest.fixture
def front(live_server: LocalServer) -> Iterator[FhirFront]:
    double = FhirFront(upstream=live_server.url).start()
    yield double
    double.close()


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'aistack.db'}"


def open_store(database: str) -> PredictionStore:
    store = PredictionStore(database)
    store.create_schema()
    return store


@pytest.fixture
def store(database: str) -> Iterator[PredictionStore]:
    opened = open_store(database)
    yield opened
    opened.close()


@pytest.fixture
def files(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "static")


def publishing_settings(tmp_path: Path, url: str, token: str) -> Settings:
    return Settings(
        var_dir=tmp_path,
        model_dir=MODEL_DIR,
        fhir_publish_url=url,
        fhir_publish_token=token,
        fhir_publish_retry_s=0.05,
        fhir_publish_max_retry_s=0.2,
    )


@pytest.fixture
def publishing(
    tmp_path: Path, store: PredictionStore, files: FileStore, front: FhirFront, facade_key: str
) -> Iterator[FhirPublishing]:
    """The runtime's publishing, as ``Runtime`` builds it, its worker not started (tests
    drain it themselves)."""
    settings = publishing_settings(tmp_path, front.fhir_url, facade_key)
    built = FhirPublishing.from_settings(settings, store, files)
    assert built is not None
    built.publisher.publisher.attempts = 1
    yield built
    built.stop(5)


# --------------------------------------------------------------------------- the outbox row


def test_no_url_no_publishing(tmp_path: Path, store: PredictionStore, files: FileStore):
    assert FhirPublishing.from_settings(Settings(var_dir=tmp_path), store, files) is None


def test_a_stored_prediction_gets_its_outbox_row_in_the_same_transaction(
    store: PredictionStore, files: FileStore, database: str
):
    outbox = FhirOutbox(store.engine)
    before = stored_prediction(store, files, id=uuid.uuid4().hex)  # not recording yet
    outbox.record_new_predictions()
    try:
        after = stored_prediction(store, files, id=uuid.uuid4().hex)
        entry = outbox.get(after.id)
        assert entry is not None and outbox.get(before.id) is None
        assert (entry.status, entry.attempts, entry.last_error) == (OutboxStatus.PENDING, 0, None)
        other = open_store(database.replace("aistack.db", "other.db"))
        try:  # another database of the same process records nothing
            elsewhere = stored_prediction(other, files, id=uuid.uuid4().hex)
            assert FhirOutbox(other.engine).get(elsewhere.id) is None
        finally:
            other.close()
        # The outbox insert fails (the row exists): the prediction is not stored either.
        clash = uuid.uuid4().hex
        with store.engine.begin() as connection:
            connection.execute(
                OutboxRow.__table__.insert().values(**outbox_values(clash, entry.next_attempt_at))
            )
        with pytest.raises(IntegrityError):
            stored_prediction(store, files, id=clash)
        assert store.get(clash) is None
    finally:
        outbox.record_new_predictions(False)


def outbox_values(prediction_id: str, moment) -> dict:
    return {
        "prediction_id": prediction_id,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": moment,
        "created_at": moment,
        "updated_at": moment,
    }


def test_of_two_workers_sharing_the_database_one_claims_a_row(
    publishing: FhirPublishing, store: PredictionStore, files: FileStore
):
    record = stored_prediction(store, files, id=uuid.uuid4().hex)
    outbox, other = publishing.outbox, FhirOutbox(store.engine)
    assert [e.prediction_id for e in outbox.due()] == [record.id]
    assert outbox.claim(record.id, lease_s=60) is True
    assert other.claim(record.id, lease_s=60) is False
    assert outbox.due() == []  # leased: no worker takes it until the lease ends


# --------------------------------------------------------------------------- publishing


def test_a_prediction_stays_pending_while_the_server_is_down_and_goes_out_when_it_is_back(
    publishing: FhirPublishing,
    store: PredictionStore,
    files: FileStore,
    front: FhirFront,
    live_server: LocalServer,
):
    record = stored_prediction(store, files, id=uuid.uuid4().hex)
    front.stop()
    worker = publishing.worker
    assert worker.drain()[OutboxStatus.PENDING] == 1
    entry = publishing.outbox.get(record.id)
    assert (entry.status, entry.attempts) == (OutboxStatus.PENDING, 1)
    assert "cannot be reached" in entry.last_error
    time.sleep(0.1)
    worker.drain()  # still down: tried again later, waiting longer each time
    assert publishing.outbox.get(record.id).attempts == 2
    assert worker.backoff_s(1) < worker.backoff_s(2) <= worker.max_retry_s

    front.start()
    assert wait_until(lambda: worker.drain()[OutboxStatus.PUBLISHED] == 1, 5)
    entry = publishing.outbox.get(record.id)
    assert (entry.status, entry.attempts, entry.last_error) == (OutboxStatus.PUBLISHED, 3, None)
    assert on_facade(live_server, record) == ONE_OF_EACH
    assert worker.drain() == dict.fromkeys(OutboxStatus, 0)  # nothing more to do
    assert len(front.posts()) == 1


def test_a_refused_bundle_is_failed_and_never_sent_again(
    publishing: FhirPublishing, store: PredictionStore, files: FileStore, front: FhirFront
):
    record = stored_prediction(store, files, id=uuid.uuid4().hex)
    front.fail(422, body={"resourceType": "OperationOutcome", "issue": [{"diagnostics": "no"}]})
    assert publishing.worker.drain()[OutboxStatus.FAILED] == 1
    entry = publishing.outbox.get(record.id)
    assert entry.status == OutboxStatus.FAILED and "answered 422: no" in entry.last_error
    assert publishing.worker.drain() == dict.fromkeys(OutboxStatus, 0)
    assert len(front.posts()) == 1


def test_a_retry_after_is_honoured_by_the_next_attempt(
    publishing: FhirPublishing, store: PredictionStore, files: FileStore, front: FhirFront
):
    record = stored_prediction(store, files, id=uuid.uuid4().hex)
    front.fail(503, **{"Retry-After": "3600"})
    publishing.worker.drain()
    entry = publishing.outbox.get(record.id)
    assert entry.status == OutboxStatus.PENDING
    wait = (entry.next_attempt_at - entry.updated_at).total_seconds()
    assert 3599 <= wait <= 3601


def test_pending_publishes_resume_after_a_restart(
    tmp_path: Path,
    database: str,
    front: FhirFront,
    facade_key: str,
    live_server: LocalServer,
):
    settings = publishing_settings(tmp_path, front.fhir_url, facade_key)
    files = FileStore(tmp_path / "static")
    front.stop()
    store = open_store(database)
    first = FhirPublishing.from_settings(settings, store, files)
    first.publisher.publisher.attempts = 1
    records = [stored_prediction(store, files, id=uuid.uuid4().hex) for _ in range(2)]
    # The round ends at the first failure: the other row would meet the same closed port.
    assert first.worker.drain()[OutboxStatus.PENDING] == 1
    attempts = sorted(first.outbox.get(record.id).attempts for record in records)
    assert attempts == [0, 1]
    first.stop(5)
    store.close()  # the service stops with both predictions unpublished

    front.start()  # the server is back; the service starts again on the same database
    store = open_store(database)
    second = FhirPublishing.from_settings(settings, store, files)
    second.start()
    try:
        assert wait_until(lambda: second.outbox.counts()[OutboxStatus.PUBLISHED] == 2)
    finally:
        second.stop(5)
        store.close()
    for record in records:
        assert on_facade(live_server, record) == ONE_OF_EACH


def test_a_worker_that_meets_a_defect_keeps_the_row_and_carries_on(
    store: PredictionStore, files: FileStore
):
    outbox = FhirOutbox(store.engine)
    outbox.record_new_predictions()
    try:
        record = stored_prediction(store, files, id=uuid.uuid4().hex)
    finally:
        outbox.record_new_predictions(False)

    def broken(prediction_id: str):
        raise KeyError("a bug")

    worker = OutboxWorker(outbox, broken, retry_s=0.05, max_retry_s=0.1)
    assert worker.drain()[OutboxStatus.PENDING] == 1
    entry = outbox.get(record.id)
    assert entry.status == OutboxStatus.PENDING and "KeyError" in entry.last_error


# --------------------------------------------------------------------------- the service


def test_the_service_publishes_what_it_predicts_once_the_server_is_back(
    tmp_path: Path, front: FhirFront, facade_key: str, live_server: LocalServer, sample_images
):
    front.stop()  # the FHIR server is away when the service predicts
    service = start_local_server(
        tmp_path / "publishing",
        env={
            "AISTACK_MODEL_DIR": str(MODEL_DIR),
            "AISTACK_FHIR_PUBLISH_URL": front.fhir_url,
            "AISTACK_FHIR_PUBLISH_TOKEN": facade_key,
            "AISTACK_FHIR_PUBLISH_RETRY_S": "0.1",
            "AISTACK_FHIR_PUBLISH_MAX_RETRY_S": "0.3",
        },
    )
    store = PredictionStore(service.database_url)
    try:
        outbox = FhirOutbox(store.engine)
        with service.client() as api:
            data = sample_images["covid"].read_bytes()
            started = time.monotonic()
            answer = api.post(PREDICTIONS, json={"image_b64": b64(data), "heatmap": True})
            answered_in = time.monotonic() - started
        assert answer.status_code == 201, answer.text
        prediction_id = answer.json()["id"]
        assert answered_in < 10
        assert wait_until(lambda: (outbox.get(prediction_id).attempts or 0) >= 2)
        assert outbox.get(prediction_id).status == OutboxStatus.PENDING

        front.start()
        published = wait_until(lambda: outbox.get(prediction_id).status == "published")
        assert published, (outbox.get(prediction_id), service.log()[-2000:])
        record = store.get(prediction_id)
        assert on_facade(live_server, record) == ONE_OF_EACH
        assert '"event":"fhir_published"' in service.log()
    finally:
        store.close()
        service.stop()
