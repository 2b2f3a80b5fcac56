"""The TF Serving gRPC engine, against a gRPC double of TF Serving running the real SavedModel.

Same promises as the REST engine (tests/unit/test_tfserving_rest.py): results equal the
in-process engine's, TF Serving's status codes become the errors a router acts on, and the
double answers with TF Serving's messages and codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from aistack.errors import BackendFailed, BackendUnavailable, DeadlineExceeded, ModelNotFound
from aistack.inference.savedmodel import SavedModelEngine
from aistack.inference.tfserving.codec import encode_pixels
from aistack.inference.tfserving.grpc import TfServingGrpcEngine
from tests.doubles.helpers import (
    assert_same,
    free_port,
    synthetic_pixels,
    without_faults,
)
from tests.doubles.servables import ModelRepository
from tests.doubles.tfserving_grpc import TfServingGrpcDouble

MODEL = "covid19"


@pytest.fixture(scope="module")
def double(repository: ModelRepository) -> Iterator[TfServingGrpcDouble]:
    with TfServingGrpcDouble(repository=repository) as started:
        yield started


@pytest.fixture
def tfs(double: TfServingGrpcDouble) -> Iterator[TfServingGrpcDouble]:
    yield from without_faults(double)


@pytest.fixture
def make_engine(
    tfs: TfServingGrpcDouble, reference: SavedModelEngine
) -> Iterator[Callable[..., TfServingGrpcEngine]]:
    engines: list[TfServingGrpcEngine] = []

    def make(target: str | None = None, model: str = MODEL, **options) -> TfServingGrpcEngine:
        engine = TfServingGrpcEngine("gpu", target or tfs.target, model, reference.info, **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


# --- results equal the in-process engine's -----------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
def test_synthetic_images_match_in_process(make_engine, reference, batch):
    engine = make_engine(version=1)
    pixels = synthetic_pixels(batch)
    for heatmap in (False, True):
        assert_same(engine.infer(pixels, heatmap), reference.infer(pixels, heatmap))


def test_real_images_match_in_process(make_engine, reference, real_pixels):
    engine = make_engine(version=1)
    for pixels in (real_pixels[:1], real_pixels):
        for heatmap in (False, True):
            assert_same(engine.infer(pixels, heatmap), reference.infer(pixels, heatmap))


# --- status, probe, addressing ---------------------------------------------------------


def test_status_and_probe_follow_the_model_state(make_engine, tfs):
    engine = make_engine(version=1)
    assert engine.status() == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    assert engine.probe() is True
    tfs.state = "LOADING"
    assert engine.status()[0]["state"] == "LOADING"
    assert engine.probe() is False
    assert make_engine().probe() is False
    assert make_engine(label="stable").probe() is False
    with pytest.raises(BackendUnavailable, match="version 1 is LOADING"):
        engine.infer(synthetic_pixels(1), heatmap=False)


def test_version_and_label_addressing(make_engine, reference):
    pixels = synthetic_pixels(1)
    expected = reference.infer(pixels, heatmap=True)
    for options, suffix in (
        ({"version": 1}, "/versions/1"),
        ({"label": "stable"}, "/labels/stable"),
        ({}, ""),
    ):
        engine = make_engine(**options)
        assert engine.address.endswith(f"/models/covid19{suffix}")
        assert_same(engine.infer(pixels, heatmap=True), expected)
        assert engine.probe() is True
    metadata = make_engine(label="stable").metadata()
    assert metadata["model_spec"]["version"] == "1"
    assert "gradcam" in metadata["metadata"]["signature_def"]["signature_def"]


def test_missing_version_label_or_model_is_model_not_found(make_engine):
    pixels = synthetic_pixels(1)
    missing = make_engine(version=3)
    with pytest.raises(
        ModelNotFound, match=r"Servable not found for request: Specific\(covid19, 3\)"
    ):
        missing.infer(pixels, heatmap=False)
    with pytest.raises(ModelNotFound, match="Could not find version 3 of model covid19"):
        missing.status()
    assert missing.probe() is False
    unknown_label = make_engine(label="nope")
    with pytest.raises(ModelNotFound, match="Unrecognized servable version label: nope"):
        unknown_label.infer(pixels, heatmap=False)
    assert unknown_label.probe() is False
    with pytest.raises(ModelNotFound, match=r"Latest\(other\)"):
        make_engine(model="other").infer(pixels, heatmap=False)


# --- failures map to errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.UNAVAILABLE, BackendUnavailable),
        (grpc.StatusCode.INTERNAL, BackendFailed),
        (grpc.StatusCode.INVALID_ARGUMENT, BackendFailed),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, BackendUnavailable),
        (grpc.StatusCode.NOT_FOUND, ModelNotFound),
    ],
)
def test_status_codes_map_to_errors(make_engine, tfs, code, error):
    tfs.fail_code, tfs.fail_message = code, "OOM when allocating tensor"
    with pytest.raises(error) as raised:
        make_engine().infer(synthetic_pixels(1), heatmap=True)
    assert type(raised.value) is error
    assert "OOM when allocating tensor" in raised.value.message
    if error is BackendFailed:
        assert code.name in raised.value.message


def test_deadline_is_deadline_exceeded_in_bounded_time(make_engine, tfs):
    tfs.delay_s = 3.0
    for engine, call_timeout in ((make_engine(timeout_s=0.3), None), (make_engine(), 0.3)):
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"did not answer within 0\.3 s"):
            engine.infer(synthetic_pixels(1), heatmap=False, timeout_s=call_timeout)
        assert time.monotonic() - start < 1.5


def test_nothing_listening_is_unavailable(make_engine):
    engine = make_engine(target=f"127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(BackendUnavailable):
        engine.infer(synthetic_pixels(1), heatmap=False)
    assert engine.probe() is False
    assert time.monotonic() - start < 3


def test_server_going_away_is_unavailable(repository, reference):
    pixels = synthetic_pixels(1)
    with TfServingGrpcDouble(repository=repository) as short_lived:
        engine = TfServingGrpcEngine("gpu", short_lived.target, MODEL, reference.info)
        engine.infer(pixels, heatmap=False)
    with pytest.raises(BackendUnavailable):
        engine.infer(pixels, heatmap=False, timeout_s=2)
    engine.close()
    with pytest.raises(BackendUnavailable, match="closed"):
        engine.infer(pixels, heatmap=False)


def test_one_channel_carries_every_call(make_engine, tfs):
    engine = make_engine()
    opened, calls = tfs.connections_opened, tfs.predict_calls
    for _ in range(5):
        engine.infer(synthetic_pixels(1), heatmap=False)
    assert engine.probe() and engine.status() and engine.metadata()
    assert tfs.predict_calls - calls == 5
    assert tfs.connections_opened - opened == 1


# --- the double answers as TF Serving does -----------------------------------------------


@pytest.fixture
def stubs(tfs: TfServingGrpcDouble) -> Iterator[tuple]:
    with grpc.insecure_channel(tfs.target) as channel:
        yield (
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )


def predict_request(signature: str = "gradcam", count: int = 2) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    tensor = request.inputs["image_bytes"]
    tensor.dtype = types_pb2.DT_STRING
    tensor.tensor_shape.dim.add().size = count
    tensor.string_val.extend(encode_pixels(synthetic_pixels(count), 224))
    return request


def test_double_predict_response_is_tf_servings(stubs, reference):
    prediction, _ = stubs
    response = prediction.Predict(predict_request(), timeout=30)
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "gradcam"
    probabilities = response.outputs["probabilities"]
    assert [d.size for d in probabilities.tensor_shape.dim] == [2, 3]
    assert len(probabilities.float_val) == 6 and not probabilities.tensor_content
    expected = reference.infer(synthetic_pixels(2), heatmap=True).probabilities
    np.testing.assert_allclose(np.reshape(probabilities.float_val, (2, 3)), expected, atol=1e-6)


def test_double_errors_are_tf_servings(stubs):
    prediction, models = stubs
    cases = []
    request = predict_request("nope", 1)
    cases.append((request, grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope"'))
    request = predict_request("gradcam", 1)
    request.model_spec.version_label = "nope"
    cases.append((request, grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version"))
    request = predict_request("gradcam", 1)
    request.inputs["image_bytes"].string_val[0] = b"not an image"
    cases.append((request, grpc.StatusCode.INVALID_ARGUMENT, "image"))
    request = predict_request("gradcam", 1)
    request.inputs["pixels"].CopyFrom(request.inputs["image_bytes"])
    cases.append((request, grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {pixels}"))
    for request, code, text in cases:
        with pytest.raises(grpc.RpcError) as raised:
            prediction.Predict(request, timeout=30)
        assert raised.value.code() == code and text in raised.value.details()
    # Like TF Serving, GetModelStatus ignores a version label: every version is listed.
    by_label = get_model_status_pb2.GetModelStatusRequest()
    by_label.model_spec.name, by_label.model_spec.version_label = MODEL, "stable"
    everything = get_model_status_pb2.GetModelStatusRequest()
    everything.model_spec.name = MODEL
    assert models.GetModelStatus(by_label) == models.GetModelStatus(everything)
