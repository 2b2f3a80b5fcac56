"""FhirPublisher and PredictionPublisher: a stored prediction to a FHIR server, over HTTP.

The server is the project's own FHIR facade (``live_server``, ``/fhir/r4``). What it cannot
be made to do on demand (fail with a 503, a 429, a refusal, or be down) is done by
:class:`FhirFront`, a double of the network path in front of it: it answers the scripted
failures first, then forwards requests to the facade unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from aistack.bench.local_server import LocalServer, free_port
from aistack.config import Settings
from aistack.fhir.publish import (
    FHIR_JSON,
    FhirPublisher,
    PredictionPublisher,
    PublishError,
    PublishRejected,
    retry_after,
)
from aistack.store import PredictionRecord, PredictionStore
from aistack.xray.files import RESULT, FileStore
from tests.conftest import MODEL_DIR
from tests.doubles.helpers import serve_http, stop_http

FHIR_PATH = "/fhir/r4"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


# --------------------------------------------------------------------------- the front double


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Scripted:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    forward: bool = False
    """Forward the request first, then answer this instead (the server's answer is lost)."""


class FhirFront:
    """A double of the network between a client and a FHIR server.

    Scripted answers go first, one per request (:meth:`fail`, :meth:`lose_answers`); then
    each request is forwarded to ``upstream`` as it came (path, body, authorization) and its
    answer returned as it came. :meth:`stop` closes the port (the server is down:
    connections are refused); :meth:`start` opens the same port again.
    """

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.seen: list[Seen] = []
        self._script: list[Scripted] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._client = httpx.Client(timeout=30, trust_env=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fhir_url(self) -> str:
        return self.url + FHIR_PATH

    def fail(self, status: int, times: int = 1, body: Any = b"", **headers: str) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        with self._lock:
            self._script.extend(Scripted(status, data, headers) for _ in range(times))

    def lose_answers(self, times: int = 1) -> None:
        """The server gets the request and acts on it, but its answer never arrives: the
        client sees a 504 from the network in between."""
        with self._lock:
            self._script.extend(
                Scripted(504, b"gateway timeout", forward=True) for _ in range(times)
            )

    def posts(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST"]

    def start(self) -> FhirFront:
        self._server = serve_http(self.port, self._handle)
        return self

    def stop(self) -> None:
        stop_http(self._server)
        self._server = None

    def close(self) -> None:
        self.stop()
        self._client.close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self.seen.append(Seen(request.command, request.path, headers, body))
            scripted = self._script.pop(0) if self._script else None
        if scripted is None or scripted.forward:
            forwarded = self._forward(request.command, request.path, headers, body)
            scripted = scripted or forwarded
        request.send_response(scripted.status)
        for name, value in scripted.headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(scripted.body)))
        request.end_headers()
        request.wfile.write(scripted.body)

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Scripted:
        if self.upstream is None:
            return Scripted(502, b"no upstream")
        kept = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        answer = self._client.request(method, self.upstream + path, headers=kept, content=body)
        out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        out.pop("content-encoding", None)  # httpx decoded the body already
        return Scripted(answer.status_code, answer.content, out)


@pytest.fixture
def front() -> Iterator[FhirFront]:
    """A front with no server behind it (each test scripts what it needs)."""
    double = FhirFront().start()
    yield double
    double.close()


# --------------------------------------------------------------------------- prediction data


def stored_prediction(store: PredictionStore, files: FileStore, **changes: Any) -> PredictionRecord:
    """A prediction as the service stores it: the row, and the overlay file it names."""
    prediction_id = changes.pop("id", None) or hashlib.md5(str(changes).encode()).hexdigest()
    values = {
        "id": prediction_id,
        "created_at": datetime(2026, 11, 25, 10, 30, tzinfo=UTC),
        "model_name": "covid19",
        "model_version": 1,
        "input_sha256": hashlib.sha256(prediction_id.encode()).hexdigest(),
        "probabilities": {"covid": 0.81, "normal": 0.07, "pneumonia_bac": 0.12},
        "label": "covid",
        "covid_positive": True,
        "threshold": 0.65,
        "latency_ms": 12.5,
        "endpoint": "v2",
        "image_file": f"{prediction_id}.png",
        "overlay_file": f"{prediction_id}.jpg",
        **changes,
    }
    record = PredictionRecord.create(**values)
    store.add(record)
    if record.overlay_file:
        files.write(RESULT, record.overlay_file, b"\xff\xd8 overlay of " + record.id.encode())
    return record


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PredictionStore]:
    database = PredictionStore(f"sqlite:///{tmp_path / 'aistack.db'}")
    database.create_schema()
    yield database
    database.close()


@pytest.fixture
def files(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "static")


def publisher_for(url: str, **options: Any) -> FhirPublisher:
    options.setdefault("sleep", lambda seconds: None)
    return FhirPublisher(url, **options)


def a_bundle() -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [{}, {}]}


TRANSACTION_RESPONSE = {
    "resourceType": "Bundle",
    "type": "transaction-response",
    "entry": [
        {"response": {"status": "201 Created", "location": "Device/1/_history/1"}},
        {"response": {"status": "200 OK", "location": "Media/7/_history/1"}},
    ],
}


# --------------------------------------------------------------------------- failures


# --------------------------------------------------------------------------- the facade


@pytest.fixture(scope="module")
def facade_key(live_server: LocalServer) -> str:
    """An admin key of the facade's service: what publishing to it needs."""
    return live_server.create_key(f"publisher-{uuid.uuid4().hex[:8]}", "admin")


@pytest.fixture
def to_facade(live_server: LocalServer) -> Iterator[FhirFront]:
    double = FhirFront(upstream=live_server.url).start()
    yield double
    double.close()


def on_facade(server: LocalServer, record: PredictionRecord) -> dict[str, int]:
    """How many of each prediction resource the facade holds for ``record``."""
    token = f"urn:aistack:prediction|{record.id}"
    searches = {
        "Observation": "identifier",
        "DiagnosticReport": "identifier",
        "Media": "identifier",
        "Provenance": "_tag",
    }
    counts = {}
    with server.client() as api:
        for resource_type, parameter in searches.items():
            answer = api.get(f"{FHIR_PATH}/{resource_type}", params={parameter: token})
            assert answer.status_code == 200, answer.text
            counts[resource_type] = len(answer.json().get("entry", []))
        image = api.get(
            f"{FHIR_PATH}/Media",
            params={"identifier": f"urn:aistack:input-sha256|{record.input_sha256}"},
        )
    counts["source Media"] = len(image.json().get("entry", []))
    return counts


ONE_OF_EACH = {
    "Observation": 1,
    "DiagnosticReport": 1,
    "Media": 1,
    "Provenance": 1,
    "source Media": 1,
}


def test_a_prediction_published_twice_to_the_facade_is_there_once(
    live_server: LocalServer, facade_key: str, store: PredictionStore, files: FileStore
):
    record = stored_prediction(store, files, id=uuid.uuid4().hex)
    url = live_server.url + FHIR_PATH
    publisher = PredictionPublisher(store, files, MODEL_DIR, FhirPublisher(url, token=facade_key))
    first = publisher.publish(record.id)
    assert first.status_code == 200 and first.attempts == 1
    assert first.created >= 5 and first.created + first.existing == 6  # the Device is shared
    second = publisher.publish(record.id)
    assert (second.created, second.existing) == (0, 6)
    assert on_facade(live_server, record) == ONE_OF_EACH
    where = next(url for url in first.locations if "/Observation/" in url)
    with live_server.client() as api:
        observation = api.get(where.partition("/_history/")[0])
    assert observation.status_code == 200
    assert observation.json()["identifier"] == [
        {"system": "urn:aistack:prediction", "value": record.id}
    ]


def test_a_503_then_a_lost_answer_then_the_facade_duplicates_nothing(
    live_server: LocalServer,
    facade_key: str,
    to_facade: FhirFront,
    store: PredictionStore,
    files: FileStore,
):
    record = stored_prediction(store, files, id=uuid.uuid4().hex)
    to_facade.fail(503, **{"Retry-After": "0"})
    to_facade.lose_answers(1)  # the facade creates everything; the client hears a 504
    publisher = PredictionPublisher(
        store, files, MODEL_DIR, publisher_for(to_facade.fhir_url, token=facade_key)
    )
    result = publisher.publish(record.id)
    assert result.attempts == 3 and len(to_facade.posts()) == 3
    assert result.created == 0 and result.existing == 6  # the lost attempt made them all
    assert on_facade(live_server, record) == ONE_OF_EACH


def test_the_facade_refuses_a_publisher_without_an_admin_key(
    live_server: LocalServer, store: PredictionStore, files: FileStore
):
    record = stored_prediction(store, files, id=uuid.uuid4().hex)
    reader = live_server.create_key(f"reader-{uuid.uuid4().hex[:8]}", "read")
    for token in (None, reader):
        publisher = PredictionPublisher(
            store, files, MODEL_DIR, publisher_for(live_server.url + FHIR_PATH, token=token)
        )
        with pytest.raises(PublishError) as raised:
            publisher.publish(record.id)
        assert type(raised.value) is PublishError and raised.value.status in (401, 403)
    assert on_facade(live_server, record) == dict.fromkeys(ONE_OF_EACH, 0)


# --------------------------------------------------------------------------- failures


def test_a_closed_port_is_tried_again_with_backoff_then_reported(front: FhirFront):
    front.stop()
    waits: list[float] = []
    publisher = FhirPublisher(front.fhir_url, attempts=3, backoff_s=0.25, sleep=waits.append)
    with pytest.raises(PublishError) as raised:
        publisher.publish(a_bundle())
    assert type(raised.value) is PublishError and raised.value.status is None
    assert raised.value.transient and "cannot be reached" in str(raised.value)
    assert waits == [0.25, 0.5]


def test_a_503_is_retried_when_retry_after_says_and_the_answer_is_checked(front: FhirFront):
    front.fail(503, times=2, **{"Retry-After": "1"})
    front.fail(200, body=TRANSACTION_RESPONSE, **{"Content-Type": FHIR_JSON})
    waits: list[float] = []
    result = FhirPublisher(front.fhir_url, sleep=waits.append).publish(a_bundle())
    assert waits == [1.0, 1.0]  # Retry-After, not the 0.5 s backoff
    assert (result.attempts, result.created, result.existing) == (3, 1, 1)
    assert result.locations == ["Device/1/_history/1", "Media/7/_history/1"]
    sent = front.posts()
    assert len(sent) == 3 and len({s.body for s in sent}) == 1  # the very same Bundle
    assert sent[0].headers["content-type"] == FHIR_JSON and sent[0].path == FHIR_PATH
    assert json.loads(sent[0].body) == a_bundle()


def test_a_retry_after_beyond_the_longest_wait_is_left_to_the_caller(front: FhirFront):
    front.fail(429, **{"Retry-After": "120"})
    waits: list[float] = []
    publisher = FhirPublisher(front.fhir_url, max_wait_s=10, sleep=waits.append)
    with pytest.raises(PublishError) as raised:
        publisher.publish(a_bundle())
    assert (raised.value.status, raised.value.retry_after_s) == (429, 120.0)
    assert waits == [] and len(front.posts()) == 1


def test_a_refused_bundle_is_not_retried_and_says_why(front: FhirFront):
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "entry 2 is wrong"}],
    }
    front.fail(422, body=outcome)
    with pytest.raises(PublishRejected, match="answered 422: entry 2 is wrong"):
        publisher_for(front.fhir_url).publish(a_bundle())
    assert len(front.posts()) == 1


@pytest.mark.parametrize("status", [401, 403, 404, 301])
def test_credentials_or_address_refused_is_not_retried_now_but_not_rejected(
    front: FhirFront, status: int
):
    """The operator can fix these; the same Bundle then goes through (the outbox retries)."""
    front.fail(status, body=b"no")
    with pytest.raises(PublishError) as raised:
        publisher_for(front.fhir_url).publish(a_bundle())
    assert type(raised.value) is PublishError and not raised.value.transient
    assert raised.value.status == status and len(front.posts()) == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"<html>a proxy's page</html>",
        json.dumps({"resourceType": "Bundle", "type": "batch-response", "entry": [{}, {}]}),
        json.dumps({**TRANSACTION_RESPONSE, "entry": TRANSACTION_RESPONSE["entry"][:1]}),
        json.dumps(
            {
                **TRANSACTION_RESPONSE,
                "entry": [{"response": {"status": "201"}}, {"response": {"status": "400"}}],
            }
        ),
    ],
    ids=["not-json", "not-a-transaction-response", "an-entry-missing", "an-entry-failed"],
)
def test_a_success_that_is_not_this_transaction_s_response_is_a_failure(
    front: FhirFront, answer: bytes | str
):
    front.fail(200, body=answer.encode() if isinstance(answer, str) else answer)
    with pytest.raises(PublishError) as raised:
        publisher_for(front.fhir_url).publish(a_bundle())
    assert type(raised.value) is PublishError and raised.value.status == 200


def test_credentials_travel_as_configured(front: FhirFront):
    for _ in range(2):
        front.fail(200, body=TRANSACTION_RESPONSE)
    publisher_for(front.fhir_url, token="k-123").publish(a_bundle())
    publisher_for(front.fhir_url, user="AIStackFhirPublisher", password="s3cret").publish(
        a_bundle()
    )
    bearer, basic = (s.headers["authorization"] for s in front.posts())
    assert bearer == "Bearer k-123"
    assert basic == "Basic " + base64.b64encode(b"AIStackFhirPublisher:s3cret").decode()
    with pytest.raises(ValueError, match="not both"):
        FhirPublisher(front.fhir_url, token="k", user="u", password="p")


def test_settings_give_the_publisher_and_keep_the_secrets_out_of_sight(tmp_path: Path):
    settings = Settings(
        var_dir=tmp_path,
        fhir_publish_url="http://fhir.test/fhir/r4/",
        fhir_publish_user="u",
        fhir_publish_password="p4ss",
    )
    assert "p4ss" not in repr(settings)
    publisher = FhirPublisher.from_settings(settings)
    assert publisher.url == "http://fhir.test/fhir/r4"
    with pytest.raises(ValueError, match="AISTACK_FHIR_PUBLISH_URL"):
        FhirPublisher.from_settings(Settings(var_dir=tmp_path))


def test_retry_after_takes_seconds_or_an_http_date():
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def header(value: str) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": value})

    assert retry_after(header("7"), now) == 7.0
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after(header(later), now) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert retry_after(header(earlier), now) == 0.0
    assert retry_after(header("soon"), now) is None
    assert retry_after(httpx.Response(503), now) is None


# --------------------------------------------------------------------------- the prediction


def test_the_bundle_is_built_from_the_stored_record_with_the_heatmap_embedded(
    store: PredictionStore, files: FileStore, front: FhirFront
):
    record = stored_prediction(store, files)
    publisher = PredictionPublisher(store, files, MODEL_DIR, publisher_for(front.fhir_url))
    bundle = publisher.bundle(record.id)
    assert bundle == publisher.bundle(record.id)  # a retry sends the very same Bundle
    assert all(entry["request"]["ifNoneExist"] for entry in bundle["entry"])
    heatmaps = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Media" and "data" in e["resource"]["content"]
    ]
    overlay = files.path(RESULT, record.overlay_file).read_bytes()
    assert [base64.b64decode(m["content"]["data"]) for m in heatmaps] == [overlay]


def test_a_heatmap_past_retention_leaves_the_media_without_data(
    store: PredictionStore, files: FileStore, front: FhirFront
):
    record = stored_prediction(store, files)
    files.path(RESULT, record.overlay_file).unlink()
    publisher = PredictionPublisher(store, files, MODEL_DIR, publisher_for(front.fhir_url))
    media = [
        e["resource"]
        for e in publisher.bundle(record.id)["entry"]
        if e["resource"]["resourceType"] == "Media"
    ]
    assert len(media) == 2 and not any("data" in m["content"] for m in media)


@pytest.mark.parametrize(
    ("change", "says"),
    [({"id": "0" * 32, "stored": False}, "is not in the store"), ({"model_version": 99}, "99")],
)
def test_a_prediction_that_cannot_become_a_bundle_is_rejected_without_a_request(
    store: PredictionStore, files: FileStore, front: FhirFront, change: dict, says: str
):
    if change.pop("stored", True):
        prediction_id = stored_prediction(store, files, **change).id
    else:
        prediction_id = change["id"]
    publisher = PredictionPublisher(store, files, MODEL_DIR, publisher_for(front.fhir_url))
    with pytest.raises(PublishRejected, match=says):
        publisher.publish(prediction_id)
    assert front.seen == []
