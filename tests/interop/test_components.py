"""Each component's handlers, as IRIS calls them (the double makes and starts them)."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest
from iop.messages.dispatch import dispatch_deserializer, dispatch_serializer

from aistack.errors import BackendFailed, BackendUnavailable, DeadlineExceeded
from aistack.inference.tfserving.codec import encode_pixels
from aistack.interop.messages import (
    ErrorReply,
    InferenceRequest,
    InferenceResponse,
    JobSubmission,
    ReadinessQuery,
    StatusProbe,
    XrayPredictionRequest,
)
from aistack.interop.process import OperationEngine, sending_with
from aistack.interop.wiring import runtime
from tests.doubles.helpers import assert_same


def ask(component, message):
    """A message to an operation as IRIS hands it one: serialized in, serialized out."""
    return dispatch_deserializer(component._dispatch_on_message(dispatch_serializer(message)))


def test_tf_serving_operation_gives_the_in_process_model_s_answer(
    production, tfserving, reference, real_pixels
):
    running = production(tfserving.url, tfserving.url)
    operation, _ = running.component("TfServingGpu")
    images = encode_pixels(real_pixels, reference.info.image_size)
    for heatmap in (False, True):
        reply = ask(operation, InferenceRequest(images=images, heatmap=heatmap, timeout_s=5))
        assert reply.error is None and reply.backend == "gpu"
        assert_same(reply.to_output(), reference.infer(real_pixels, heatmap=heatmap))
    assert ask(operation, StatusProbe(timeout_s=1)).available is True


def test_tf_serving_operation_sends_the_pngs_it_received_as_they_are(
    production, tfserving, reference, real_pixels, monkeypatch
):
    """No decode and encode again: the bytes TF Serving reads are the message's bytes."""
    sent: list[bytes] = []
    answer = tfserving.handle

    def recording(method: str, path: str, body: bytes) -> tuple[int, str]:
        if method == "POST":
            inputs = json.loads(body)["inputs"]["image_bytes"]
            sent.extend(base64.b64decode(value["b64"]) for value in inputs)
        return answer(method, path, body)

    monkeypatch.setattr(tfserving, "handle", recording)
    operation, _ = production(tfserving.url, tfserving.url).component("TfServingGpu")
    # Smallest deflate, unlike the codec's: pixels decoded and encoded again would differ.
    images = [
        cv2.imencode(".png", image[:, :, 0], [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
        for image in real_pixels
    ]
    assert images != encode_pixels(real_pixels, reference.info.image_size)
    reply = ask(operation, InferenceRequest(images=images, heatmap=True, timeout_s=5))
    assert reply.error is None and sent == images
    assert_same(reply.to_output(), reference.infer(real_pixels, heatmap=True))


@pytest.mark.parametrize(
    ("pixels", "why"),
    [
        (np.zeros((223, 224), np.uint8), "one pixel short"),
        (np.zeros((224, 224, 3), np.uint8), "colour"),
        (np.zeros((224, 224), np.uint16), "16-bit"),
    ],
)
def test_tf_serving_operation_refuses_a_png_the_model_would_resize_or_convert(
    production, tfserving, pixels, why
):
    operation, _ = production(tfserving.url, tfserving.url).component("TfServingGpu")
    before = tfserving.predict_calls
    image = cv2.imencode(".png", pixels)[1].tobytes()
    reply = ask(operation, InferenceRequest(images=[image], heatmap=False, timeout_s=5))
    assert (reply.error.status, reply.error.code) == (400, "bad_request"), why
    assert reply.error.message == "a model input is not a 224x224 grey PNG"
    empty = ask(operation, InferenceRequest(images=[], heatmap=False, timeout_s=5))
    assert empty.error.message == "an inference request needs at least one image"
    assert tfserving.predict_calls == before  # refused before anything was sent


def test_tf_serving_operation_answers_failures_as_data(production, dead_url, real_pixels):
    running = production(dead_url, dead_url)
    operation, _ = running.component("TfServingCpu")
    images = encode_pixels(real_pixels[:1], 224)
    down = ask(operation, InferenceRequest(images=images, heatmap=True, timeout_s=2))
    assert down.error.code == "backend_unavailable" and down.backend == "cpu"
    assert ask(operation, StatusProbe(timeout_s=0.5)).available is False
    garbled = ask(operation, InferenceRequest(images=[b"not a png"], heatmap=False, timeout_s=2))
    assert (garbled.error.status, garbled.error.code) == (400, "bad_request")


def test_operation_engine_turns_what_comes_back_into_the_router_s_errors(var_dir):
    engine = OperationEngine("gpu", "TfServingGpu", runtime().model, timeout_s=2)
    pixels = np.zeros((1, 224, 224, 1), np.uint8)
    with pytest.raises(RuntimeError, match="outside a production message"):
        engine.infer(pixels, heatmap=False)

    def answer(reply):
        def send(target, message, timeout_s):
            assert (target, message.timeout_s, timeout_s) == ("TfServingGpu", 2, 2)
            if isinstance(reply, Exception):
                raise reply
            return reply

        return send

    cases = {
        BackendUnavailable: answer(RuntimeError("ERROR #5005: queue gone")),
        DeadlineExceeded: answer(""),  # IRIS's own timeout: no response object
        BackendFailed: answer(
            InferenceResponse(error=ErrorReply.from_error(BackendFailed("HTTP 500")))
        ),
    }
    for expected, send in cases.items():
        with sending_with(send), pytest.raises(expected):
            engine.infer(pixels, heatmap=False)
    reply = InferenceResponse(probabilities=[[0.5, 0.25, 0.25]], backend="gpu")
    with sending_with(answer(reply)):
        assert engine.infer(pixels, heatmap=False).probabilities.tolist() == [[0.5, 0.25, 0.25]]


def test_router_answers_a_bad_image_with_its_error_and_logs_no_alarm(production, tfserving, iris):
    running = production(tfserving.url, tfserving.url)
    request = XrayPredictionRequest(image=b"GIF89a...", heatmap=True, endpoint="v2")
    reply = dispatch_deserializer(running.deliver("XRayRouter", dispatch_serializer(request)))
    assert reply.prediction is None
    assert (reply.error.status, reply.error.code) == (415, "unsupported_format")
    assert not [entry for entry in iris.event_log if entry[0] in (2, 3)]  # no error, warning


def test_router_refuses_a_message_it_does_not_handle(production, tfserving):
    running = production(tfserving.url, tfserving.url)
    reply = running.deliver("XRayRouter", dispatch_serializer(StatusProbe()))
    assert dispatch_deserializer(reply).error.code == "internal_error"


def test_predict_service_answers_as_data_when_the_router_cannot_be_reached(
    production, tfserving, iris
):
    running = production(tfserving.url, tfserving.url)
    running.overrides["XRayPredictService"] = {"Router": "NoSuchItem"}
    service = iris.cls("IOP.Director").dispatchCreateBusinessService("XRayPredictService")
    reply = service.GetClass().on_process_input(
        XrayPredictionRequest(image=b"x", heatmap=False, endpoint="v2")
    )
    assert reply.error.code == "backend_unavailable"
    assert not service.GetClass().on_process_input(ReadinessQuery()).ready


def test_job_service_records_the_job_and_queues_it(production, tfserving, iris):
    running = production(tfserving.url, tfserving.url)
    service = iris.cls("IOP.Director").dispatchCreateBusinessService("XRayJobService")
    reply = service.GetClass().on_process_input(
        JobSubmission(image=b"img", heatmap=False, client="alice")
    )
    assert reply.status == "queued" and reply.error is None
    job = runtime().jobs.get(reply.job_id)
    assert (job.status, job.client, job.heatmap) == ("queued", "alice", False)
    assert len(running.queue) == 1 and running.queue.entries[0][0] == "XRayRouter"
