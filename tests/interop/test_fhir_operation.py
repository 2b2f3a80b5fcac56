"""FhirPublisher, the IRIS runtime's FHIR operation, on the IRIS double: the router queues a
publish request after each stored prediction, and the operation publishes it to the
standalone runtime's FHIR facade (``live_server``, ``/fhir/r4``) over real HTTP.

What IRIS itself does with a failed message (retry every ``RetryInterval``, fail at once on
``E*PublishRejected``) is not in the double; :func:`reply_code_action` plays the documented
rule, applied to the status text IoP makes of the exception the real operation raised.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from iop.messages.dispatch import dispatch_deserializer, dispatch_serializer

from aistack.bench.local_server import LocalServer
from aistack.fhir.publish import PublishError, PublishRejected
from aistack.interop.fhir_operation import FhirOperation
from aistack.interop.messages import (
    FhirPublishReply,
    FhirPublishRequest,
    XrayPredictionRequest,
    XrayPredictionResponse,
)
from aistack.interop.settings import prod
from tests.interop.iris_double import HostDouble, IrisDouble, MessageDouble, ProductionDouble
from tests.unit.test_fhir_publish import FhirFront

PUBLISHER = "FhirPublisher"
PREDICTION_SYSTEM = "urn:aistack:prediction"


def reply_code_action(actions: str, status_text: str) -> str:
    """What IRIS does with an operation's error status, by its ReplyCodeActions setting:
    codes are tried left to right, ``E`` matches any error and ``E*text`` an error whose
    text contains ``text``; the first match's action decides (R retry, F fail)."""
    for rule in actions.split(","):
        code, _, action = rule.partition("=")
        if code == "E" or (code.startswith("E*") and code[2:] in status_text):
            return action
    return "F"


def status_text(error: Exception) -> str:
    """The error status IoP's DisplayTraceback makes of an exception raised in OnMessage."""
    return (
        "ERROR <Ens>ErrGeneral: Exception in Python class: "
        f"Python.aistack.interop.fhiroperation.FhirOperation - {type(error).__name__} - {error}"
    )


def iris_action(error: Exception) -> str:
    actions = {s["@Name"]: s["#text"] for s in items()[PUBLISHER].other_settings}
    return reply_code_action(actions["ReplyCodeActions"], status_text(error))


def items() -> dict:
    return {item.name: item for item in prod.items}


def found(server: LocalServer, resource_type: str, parameter: str, value: str) -> int:
    """How many resources of the type the facade has with that token."""
    with server.client() as api:
        answer = api.get(f"/fhir/r4/{resource_type}", params={parameter: value})
    assert answer.status_code == 200, answer.text
    return len(answer.json().get("entry", []))


def resources_of(server: LocalServer, prediction_id: str) -> dict[str, int]:
    token = f"{PREDICTION_SYSTEM}|{prediction_id}"
    return {
        "Observation": found(server, "Observation", "identifier", token),
        "DiagnosticReport": found(server, "DiagnosticReport", "identifier", token),
        "Media": found(server, "Media", "identifier", token),
        "Provenance": found(server, "Provenance", "_tag", token),
    }


ONE_OF_EACH = {"Observation": 1, "DiagnosticReport": 1, "Media": 1, "Provenance": 1}
ENTRIES = 6
"""Device, source Media, heatmap Media, Observation, DiagnosticReport, Provenance."""


@pytest.fixture
def front(live_server: LocalServer) -> Iterator[FhirFront]:
    """The network path to the facade (stop it to take the server away)."""
    double = FhirFront(upstream=live_server.url).start()
    yield double
    double.close()


@pytest.fixture
def publishing(
    monkeypatch: pytest.MonkeyPatch, var_dir: Path, front: FhirFront, live_server: LocalServer
) -> FhirFront:
    """The iris service's environment with publishing on, through ``front``."""
    key = live_server.create_key(f"iop-publisher-{uuid.uuid4().hex[:8]}", "admin")
    monkeypatch.setenv("AISTACK_FHIR_PUBLISH_URL", front.fhir_url)
    monkeypatch.setenv("AISTACK_FHIR_PUBLISH_TOKEN", key)
    return front


def predict(iris: IrisDouble, image: bytes) -> XrayPredictionResponse:
    """A v2 prediction, as the REST entry hands it to the production."""
    service = iris.cls("IOP.Director").dispatchCreateBusinessService("XRayPredictService")
    request = XrayPredictionRequest(image=image, heatmap=True, endpoint="v2", request_id="r-1")
    return service.GetClass().on_process_input(request)


def queued_publish(running: ProductionDouble) -> tuple[str, str, str]:
    """The one publish request waiting in the queue, as IRIS keeps it (and redelivers it)."""
    entries = [entry for entry in running.queue.entries if entry[0] == PUBLISHER]
    assert len(entries) == 1, running.queue.entries
    running.queue.entries.remove(entries[0])
    return entries[0]


def deliver(running: ProductionDouble, entry: tuple[str, str, str]) -> FhirPublishReply:
    target, classname, text = entry
    message = MessageDouble()
    message.classname, message.json = classname, text
    return dispatch_deserializer(running.deliver(target, message))


def test_the_router_queues_each_stored_prediction_and_the_operation_publishes_it(
    production, tfserving, iris, publishing, live_server, sample_images
):
    running = production(tfserving.url, tfserving.url)
    reply = predict(iris, sample_images["covid"].read_bytes())
    assert reply.error is None
    prediction_id = reply.prediction.id
    # The answer left before anything was published: the request waits in IRIS's queue.
    assert ("XRayRouter", PUBLISHER, "async") in running.sent
    entry = queued_publish(running)
    assert json.loads(entry[2]) == {"prediction_id": prediction_id, "request_id": "r-1"}
    assert publishing.posts() == []
    assert resources_of(live_server, prediction_id) == dict.fromkeys(ONE_OF_EACH, 0)

    published = deliver(running, entry)
    assert isinstance(published, FhirPublishReply)
    assert published.prediction_id == prediction_id
    # Six entries: the model's Device and the image's Media may exist from earlier predictions.
    assert published.created + published.existing == ENTRIES and published.created >= 4
    assert len(published.locations) == ENTRIES
    assert resources_of(live_server, prediction_id) == ONE_OF_EACH


def test_a_server_away_raises_for_iris_to_retry_and_no_retry_duplicates(
    production, tfserving, iris, publishing, live_server, sample_images
):
    running = production(tfserving.url, tfserving.url)
    running.overrides[PUBLISHER] = {"attempts": 1}
    prediction_id = predict(iris, sample_images["normal"].read_bytes()).prediction.id
    entry = queued_publish(running)

    publishing.stop()  # the FHIR server is down
    with pytest.raises(PublishError) as raised:
        deliver(running, entry)
    assert type(raised.value) is PublishError
    assert iris_action(raised.value) == "R"  # IRIS retries it every RetryInterval
    assert any(level == 3 and prediction_id in text for level, _, text in iris.event_log)

    publishing.start()  # back: IRIS's retry delivers the same message again
    first = deliver(running, entry)
    assert first.created >= 4 and first.created + first.existing == ENTRIES
    again = deliver(running, entry)  # delivered once more (a restart mid-reply)
    assert (again.created, again.existing) == (0, ENTRIES)
    assert resources_of(live_server, prediction_id) == ONE_OF_EACH


def test_a_prediction_that_cannot_be_published_fails_the_message_at_once(
    production, iris, publishing, tfserving
):
    running = production(tfserving.url, tfserving.url)
    unknown = dispatch_serializer(FhirPublishRequest(prediction_id="0" * 32))
    with pytest.raises(PublishRejected, match="not in the store") as raised:
        running.deliver(PUBLISHER, unknown)
    assert iris_action(raised.value) == "F"  # no retry: a person looks
    assert publishing.seen == []


def test_the_item_s_url_setting_takes_precedence_over_the_environment(
    production, tfserving, iris, publishing, live_server, sample_images
):
    """The operation straight to the facade, over real HTTP; the environment's URL unused."""
    running = production(tfserving.url, tfserving.url)
    running.overrides[PUBLISHER] = {"url": f"{live_server.url}/fhir/r4"}
    prediction_id = predict(iris, sample_images["pneumonia_bac"].read_bytes()).prediction.id
    assert deliver(running, queued_publish(running)).created >= 4
    assert publishing.seen == []
    assert resources_of(live_server, prediction_id) == ONE_OF_EACH


def test_without_a_publish_url_nothing_is_queued(production, tfserving, iris, sample_images):
    running = production(tfserving.url, tfserving.url)
    assert predict(iris, sample_images["covid"].read_bytes()).error is None
    assert not [sent for sent in running.sent if sent[1] == PUBLISHER]
    assert len(running.queue) == 0


def test_a_publish_that_cannot_be_queued_leaves_the_prediction_answered(
    production, tfserving, iris, publishing, sample_images, monkeypatch
):
    def refuse(host: HostDouble, target: str, request, *rest) -> None:
        raise RuntimeError("ERROR #5002: queue full")

    monkeypatch.setattr(HostDouble, "dispatchSendRequestAsync", refuse)
    production(tfserving.url, tfserving.url)
    reply = predict(iris, sample_images["covid"].read_bytes())
    assert reply.error is None and reply.prediction.label
    errors = [text for level, _, text in iris.event_log if level == 2]
    assert any("not queued for FHIR publishing" in text for text in errors), iris.event_log


def test_the_production_declares_the_publisher_and_its_retry_policy():
    item = items()[PUBLISHER]
    assert item.component_class is FhirOperation and item.pool_size == 1
    edges = {(edge.source_item, edge.target) for edge in prod.graph().edges}
    assert ("XRayRouter", PUBLISHER) in edges
    iris_settings = {s["@Name"]: s["#text"] for s in item.other_settings}
    assert iris_settings == {
        "ReplyCodeActions": "E*PublishRejected=F,E=R",
        "RetryInterval": "10",
        "FailureTimeout": "-1",
        "AlertOnError": "1",
        "AlertRetryGracePeriod": "60",
        "QueueCountAlert": "100",
    }
    # The rule the tests above apply holds for the classes the operation raises.
    assert reply_code_action("E*PublishRejected=F,E=R", status_text(PublishError("x"))) == "R"
    assert reply_code_action("E*PublishRejected=F,E=R", status_text(PublishRejected("x"))) == "F"
