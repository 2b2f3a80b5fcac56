"""The TF Serving REST engine, against a double of TF Serving that runs the real SavedModel.

The double (tests/doubles/tfserving_rest.py) answers as TF Serving's REST API does, so the
tests pin both sides: the engine's results equal the in-process engine's (PNG in, the
model's own decode: identity), every TF Serving failure becomes the error a router acts
on, and the double speaks the documented protocol.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest

from aistack.errors import BackendFailed, BackendUnavailable, DeadlineExceeded, ModelNotFound
from aistack.inference.savedmodel import SavedModelEngine
from aistack.inference.tfserving.rest import TfServingRestEngine
from tests.conftest import ROOT
from tests.doubles.helpers import (
    assert_same,
    free_port,
    synthetic_pixels,
    without_faults,
)
from tests.doubles.json_tensors import decimal
from tests.doubles.servables import ModelRepository
from tests.doubles.tfserving_rest import TfServingRestDouble

MODEL = "covid19"


@pytest.fixture(scope="module")
def double(repository: ModelRepository) -> Iterator[TfServingRestDouble]:
    with TfServingRestDouble(repository=repository) as started:
        yield started


@pytest.fixture
def tfs(double: TfServingRestDouble) -> Iterator[TfServingRestDouble]:
    yield from without_faults(double)


@pytest.fixture
def make_engine(
    tfs: TfServingRestDouble, reference: SavedModelEngine
) -> Iterator[Callable[..., TfServingRestEngine]]:
    engines: list[TfServingRestEngine] = []

    def make(base_url: str | None = None, model: str = MODEL, **options) -> TfServingRestEngine:
        engine = TfServingRestEngine("cpu", base_url or tfs.url, model, reference.info, **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def png_b64(pixels: np.ndarray) -> list[dict[str, str]]:
    return [
        {"b64": base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()}
        for image in pixels
    ]


# --- results equal the in-process engine's -----------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("request_format", ["columnar", "row"])
def test_synthetic_images_match_in_process(make_engine, reference, request_format, batch):
    engine = make_engine(version=1, request_format=request_format)
    pixels = synthetic_pixels(batch)
    for heatmap in (False, True):
        assert_same(engine.infer(pixels, heatmap), reference.infer(pixels, heatmap))


@pytest.mark.parametrize("request_format", ["columnar", "row"])
def test_real_images_match_in_process(make_engine, reference, real_pixels, request_format):
    engine = make_engine(version=1, request_format=request_format)
    for pixels in (real_pixels[:1], real_pixels):
        for heatmap in (False, True):
            assert_same(engine.infer(pixels, heatmap), reference.infer(pixels, heatmap))


def test_wrong_pixels_are_refused_before_sending(make_engine, tfs):
    engine = make_engine()
    calls = tfs.predict_calls
    for bad in (np.zeros((1, 224, 224, 1), np.float32), np.zeros((1, 64, 64, 1), np.uint8)):
        with pytest.raises(ValueError, match="expected uint8"):
            engine.infer(bad, heatmap=False)
    assert tfs.predict_calls == calls


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
    # TF Serving answers predict for a loading version with 404; the engine asks the status
    # and reports it unavailable (retry elsewhere), not missing.
    with pytest.raises(BackendUnavailable, match="version 1 is LOADING"):
        engine.infer(synthetic_pixels(1), heatmap=False)
    tfs.state = "AVAILABLE"
    assert engine.probe() is True


def test_version_and_label_addressing(make_engine, reference):
    pixels = synthetic_pixels(1)
    expected = reference.infer(pixels, heatmap=True)
    by_version = make_engine(version=1)
    assert by_version.address.endswith("/v1/models/covid19/versions/1")
    by_label = make_engine(label="stable")
    assert by_label.address.endswith("/v1/models/covid19/labels/stable")
    latest = make_engine()
    assert latest.address.endswith("/v1/models/covid19")
    for engine in (by_version, by_label, latest):
        assert_same(engine.infer(pixels, heatmap=True), expected)
        assert engine.probe() is True
    assert by_label.metadata()["model_spec"]["version"] == "1"


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


def test_version_and_label_together_are_refused(reference):
    with pytest.raises(ValueError, match="not both"):
        TfServingRestEngine(
            "cpu", "http://127.0.0.1:1", MODEL, reference.info, version=1, label="x"
        )


# --- failures map to errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, BackendFailed),
        (503, BackendUnavailable),
        (400, BackendFailed),
        (429, BackendUnavailable),
    ],
)
def test_error_statuses_map_to_errors(make_engine, tfs, status, error):
    tfs.fail_status, tfs.fail_message = status, "Resource exhausted: OOM when allocating tensor"
    with pytest.raises(error) as raised:
        make_engine().infer(synthetic_pixels(1), heatmap=True)
    assert type(raised.value) is error
    assert "OOM when allocating tensor" in raised.value.message
    if error is BackendFailed:
        assert f"answered {status}" in raised.value.message


def test_long_error_text_is_truncated(make_engine, tfs):
    tfs.fail_status, tfs.fail_message = 500, "Internal: " + "x" * 5000
    with pytest.raises(BackendFailed) as raised:
        make_engine().infer(synthetic_pixels(1), heatmap=False)
    assert "Internal: xxx" in raised.value.message
    assert len(raised.value.message) < 500


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"<html>proxy error</html>", "not JSON"),
        (b'{"outputs": [[0.1, 0.2]]}', "shape"),
        (b'{"predictions": [[0.1, 0.2, 0.7]]}', "no 'outputs'"),
        (b'{"outputs": [["a", "b", "c"]]}', "not a numeric tensor"),
    ],
)
def test_answers_that_do_not_fit_are_backend_failed(make_engine, tfs, reply, reason):
    tfs.raw_predict_reply = reply
    with pytest.raises(BackendFailed, match=reason):
        make_engine().infer(synthetic_pixels(1), heatmap=False)


def test_gradcam_answer_without_heatmap_is_backend_failed(make_engine, tfs):
    tfs.raw_predict_reply = b'{"outputs": {"probabilities": [[0.1, 0.2, 0.7]]}}'
    with pytest.raises(BackendFailed, match="no 'heatmap'"):
        make_engine().infer(synthetic_pixels(1), heatmap=True)


def test_timeout_is_deadline_exceeded_in_bounded_time(make_engine, tfs):
    tfs.delay_s = 3.0
    for engine, call_timeout in ((make_engine(timeout_s=0.3), None), (make_engine(), 0.3)):
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"did not answer within 0\.3 s"):
            engine.infer(synthetic_pixels(1), heatmap=False, timeout_s=call_timeout)
        assert time.monotonic() - start < 1.5


def test_nothing_listening_is_unavailable(make_engine):
    engine = make_engine(base_url=f"http://127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        engine.infer(synthetic_pixels(1), heatmap=False)
    assert engine.probe() is False
    assert time.monotonic() - start < 2


def test_dropped_connection_is_unavailable(make_engine, tfs):
    tfs.drop_connections = True
    engine = make_engine()
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        engine.infer(synthetic_pixels(1), heatmap=False)
    assert engine.probe() is False


def test_server_going_away_is_unavailable(repository, reference):
    pixels = synthetic_pixels(1)
    with TfServingRestDouble(repository=repository) as short_lived:
        engine = TfServingRestEngine("cpu", short_lived.url, MODEL, reference.info)
        engine.infer(pixels, heatmap=False)
    with pytest.raises(BackendUnavailable):
        engine.infer(pixels, heatmap=False)
    assert engine.probe() is False
    engine.close()
    with pytest.raises(BackendUnavailable, match="closed"):
        engine.infer(pixels, heatmap=False)


def test_connections_are_pooled(make_engine, tfs):
    engine = make_engine(max_connections=2)
    pixels = synthetic_pixels(1)
    opened, calls = tfs.connections_opened, tfs.predict_calls
    for _ in range(5):
        engine.infer(pixels, heatmap=False)
    assert engine.probe() and engine.status()
    assert tfs.predict_calls - calls == 5
    assert tfs.connections_opened - opened == 1
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: engine.infer(pixels, heatmap=False), range(12)))
    assert tfs.connections_opened - opened <= 2


def test_importing_the_rest_engine_does_not_import_tensorflow():
    code = (
        "import sys, aistack.inference.tfserving.rest; "
        "print(sorted(m for m in ('tensorflow', 'tensorflow_serving') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


# --- the double speaks TF Serving's documented protocol ----------------------------------


class ModelClient:
    """Plain HTTP to the double's model URL: ``post(":predict")``, ``get("/versions/3")``."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(timeout=30)
        self.url = url

    def get(self, suffix: str) -> httpx.Response:
        return self.client.get(self.url + suffix)

    def post(self, suffix: str, **kwargs) -> httpx.Response:
        return self.client.post(self.url + suffix, **kwargs)


@pytest.fixture
def raw(tfs: TfServingRestDouble) -> Iterator[ModelClient]:
    client = ModelClient(f"{tfs.url}/v1/models/{MODEL}")
    yield client
    client.client.close()


def test_double_response_shapes_follow_the_documentation(raw, reference):
    pixels = synthetic_pixels(2)
    images = png_b64(pixels)
    expected = reference.infer(pixels, heatmap=True)

    columnar_plain = raw.post(":predict", json={"inputs": {"image_bytes": images}}).json()
    assert np.asarray(columnar_plain["outputs"]).shape == (2, 3)  # one output: the value
    columnar = raw.post(
        ":predict", json={"signature_name": "gradcam", "inputs": {"image_bytes": images}}
    ).json()
    assert set(columnar["outputs"]) == {"probabilities", "heatmap"}  # several: by name
    assert np.asarray(columnar["outputs"]["heatmap"]).shape == expected.heatmaps.shape

    rows_plain = raw.post(":predict", json={"instances": images}).json()
    assert np.asarray(rows_plain["predictions"]).shape == (2, 3)  # one output: value per image
    rows = raw.post(":predict", json={"signature_name": "gradcam", "instances": images}).json()
    assert [set(row) for row in rows["predictions"]] == [{"probabilities", "heatmap"}] * 2
    np.testing.assert_allclose(
        [row["probabilities"] for row in rows["predictions"]], expected.probabilities, atol=1e-6
    )
    # A single input may be named or not: the same request.
    named = [{"image_bytes": image} for image in images]
    assert raw.post(":predict", json={"instances": named}).json() == rows_plain
    assert raw.post(":predict", json={"inputs": images}).json() == columnar_plain


def test_double_error_bodies_follow_the_documentation(raw, tfs):
    image = png_b64(synthetic_pixels(1))
    cases = [
        (raw.post(":predict", content=b"{not json"), 400, "JSON Parse error"),
        (raw.post(":predict", json={"signature_name": "gradcam"}), 400, "Missing 'inputs'"),
        (raw.post(":predict", json={"inputs": image, "instances": image}), 400, "only one of"),
        (raw.post(":predict", json={"signature_name": "x", "inputs": image}), 400, '"x" not found'),
        (raw.post(":predict", json={"inputs": [{"b64": "bm90IGFuIGltYWdl"}]}), 400, "image"),
        (raw.post(":predict", json={"inputs": [{"b64": "%%%"}]}), 400, "base64"),
        (raw.post("/versions/3:predict", json={"inputs": image}), 404, "Specific(covid19, 3)"),
        (raw.post("/labels/nope:predict", json={"inputs": image}), 400, "Unrecognized servable"),
        (raw.get("/versions/3"), 404, "Could not find version 3 of model covid19"),
        (raw.get("/versions/3/metadata"), 404, "Servable not found"),
        (httpx.get(f"{tfs.url}/v1/models"), 400, "Missing model name in request."),
        (
            httpx.post(f"{tfs.url}/v1/models/other:predict", json={"inputs": image}),
            404,
            "Latest(other)",
        ),
    ]
    for response, status, text in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert list(body) == ["error"] and text in body["error"], body


def test_double_status_and_metadata_follow_the_documentation(raw, tfs):
    # Like TF Serving, the status call ignores a version label and lists every version.
    assert raw.get("/labels/stable").json() == raw.get("").json()
    metadata = raw.get("/versions/1/metadata").json()
    assert metadata["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "gradcam", "predict_pixels", "gradcam_pixels"} <= set(signatures)
    gradcam = signatures["gradcam"]
    assert gradcam["method_name"] == "tensorflow/serving/predict"
    assert gradcam["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert set(gradcam["outputs"]) == {"probabilities", "heatmap"}
    tfs.state = "LOADING"
    loading = raw.post(":predict", json={"inputs": png_b64(synthetic_pixels(1))})
    assert loading.status_code == 404
    assert loading.json() == {"error": "Servable not found for request: Latest(covid19)"}


def test_double_writes_floats_like_tf_serving():
    assert decimal(np.float32(0.1)) == "0.1"
    assert decimal(np.float32(1)) == "1.0"
    assert decimal(np.float32(3e-5)) == "3e-05"
    third = np.float32(1) / np.float32(3)
    assert decimal(third) == "0.333333343" and np.float32(decimal(third)) == third
    assert [decimal(np.float32(v)) for v in ("nan", "inf", "-inf")] == [
        "NaN",
        "Infinity",
        "-Infinity",
    ]


def test_double_takes_numeric_tensors(raw, reference):
    """Nested JSON lists for the uint8 ``pixels`` input, in both formats."""
    pixels = synthetic_pixels(2)
    expected = reference.infer(pixels, heatmap=False).probabilities
    rows = raw.post(
        ":predict", json={"signature_name": "predict_pixels", "instances": pixels.tolist()}
    )
    columns = raw.post(
        ":predict", json={"signature_name": "predict_pixels", "inputs": {"pixels": pixels.tolist()}}
    )
    np.testing.assert_allclose(rows.json()["predictions"], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(columns.json()["outputs"], expected, rtol=0, atol=1e-6)
    ragged = raw.post(
        ":predict", json={"signature_name": "predict_pixels", "inputs": [[[[1]], [[2], [3]]]]}
    )
    assert ragged.status_code == 400 and "unexpected size" in ragged.json()["error"]
