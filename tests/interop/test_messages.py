"""Every message survives IoP's serializer and deserializer, as IRIS stores and returns it."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

import numpy as np
import pytest
from iop.messages.dispatch import dispatch_deserializer, dispatch_serializer

from aistack.errors import BackendUnavailable, DeadlineExceeded, NotAChestXray, ServiceBusy
from aistack.inference.engine import EngineOutput
from aistack.interop.messages import (
    ErrorReply,
    InferenceRequest,
    InferenceResponse,
    JobRequest,
    JobStatusReply,
    JobSubmission,
    ReadinessQuery,
    ReadinessReply,
    StatusProbe,
    StatusReply,
    StoredPrediction,
    XrayPredictionRequest,
    XrayPredictionResponse,
)
from aistack.store import PredictionRecord
from tests.interop.iris_double import MessageDouble, StreamDouble

BINARY = bytes(range(256)) * 4  # every byte value: base64 must carry them all
RECORD = PredictionRecord(
    id="a" * 32,
    created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    model_name="covid19",
    model_version=1,
    input_sha256="b" * 64,
    probabilities={"covid": 0.1, "normal": 0.7, "pneumonia_bac": 0.2},
    label="normal",
    covid_positive=False,
    threshold=0.65,
    latency_ms=12.5,
    endpoint="v2",
    image_file="a.jpg",
    client="alice",
    backend="gpu",
    patient_id="P-42",
    study_instance_uid="1.2.826.0.1.3680043.8.498.1",
    accession_number="ACC-7",
)
MESSAGES = [
    XrayPredictionRequest(image=BINARY, heatmap=True, endpoint="v1-heatmap", client="alice"),
    XrayPredictionResponse(prediction=StoredPrediction.from_record(RECORD)),
    XrayPredictionResponse(error=ErrorReply.from_error(ServiceBusy("full"))),
    ReadinessQuery(),
    ReadinessReply(ready=False, detail="no backend"),
    InferenceRequest(images=[BINARY, b"\x89PNG"], heatmap=False, timeout_s=2.5),
    InferenceResponse(probabilities=[[0.25, 0.5, 0.25]], heatmaps=[[[0.0, 1.0]]], backend="cpu"),
    StatusProbe(timeout_s=0.5),
    StatusReply(available=True, backend="gpu"),
    JobSubmission(image=BINARY, heatmap=False, version=1),
    JobRequest(job_id="c" * 32, image=BINARY, heatmap=True, request_id="r1"),
    JobStatusReply(job_id="c" * 32, status="queued"),
]


def round_trip(message):
    serialized = dispatch_serializer(message)
    assert isinstance(serialized, MessageDouble)
    assert serialized.classname == f"{type(message).__module__}.{type(message).__name__}"
    return dispatch_deserializer(serialized)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_round_trip_through_iops_serializer(iris, message):
    back = round_trip(message)
    assert type(back) is type(message) and back == message


def test_a_body_past_the_iris_string_buffer_travels_as_a_stream(iris):
    big = XrayPredictionRequest(image=b"\xff" * 1_000_000, heatmap=False, endpoint="v2")
    serialized = dispatch_serializer(big)
    assert isinstance(serialized.json, StreamDouble) and serialized.type == "Stream"
    assert dispatch_deserializer(serialized) == big


def test_the_stored_record_comes_back_field_for_field(iris):
    back = round_trip(XrayPredictionResponse(prediction=StoredPrediction.from_record(RECORD)))
    assert back.prediction.to_record() == RECORD


def test_engine_output_comes_back_exactly(iris):
    rng = np.random.default_rng(1)
    output = EngineOutput(
        rng.random((2, 3), dtype=np.float32), rng.random((2, 7, 7), dtype=np.float32)
    )
    back = round_trip(InferenceResponse.from_output(output, "gpu")).to_output()
    np.testing.assert_array_equal(back.probabilities, output.probabilities)
    np.testing.assert_array_equal(back.heatmaps, output.heatmaps)


@pytest.mark.parametrize(
    "error", [BackendUnavailable("down"), DeadlineExceeded("slow"), NotAChestXray("a cat")]
)
def test_errors_travel_as_data_and_come_back_typed(iris, error):
    reply = round_trip(InferenceResponse(error=ErrorReply.from_error(error))).error
    again = reply.to_error()
    assert type(again) is type(error)
    assert (again.status, again.code, again.message, again.headers) == (
        error.status,
        error.code,
        error.message,
        error.headers,
    )


def test_the_stored_prediction_message_carries_every_field_of_the_record():
    """A field added to the record and not to the message would be lost in the production."""
    assert set(StoredPrediction.model_fields) == {field.name for field in fields(PredictionRecord)}
    assert StoredPrediction.from_record(RECORD).to_record() == RECORD
