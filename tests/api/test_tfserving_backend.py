"""The service with TF Serving as its inference backend, end to end over HTTP.

TF Serving runs as the documented double (tests/doubles) with the real SavedModel; the
service is the real one in its own process, configured by ``AISTACK_BACKENDS``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aistack.bench.local_server import LocalServer, start_local_server
from tests.conftest import MODEL_DIR
from tests.doubles.tfserving_rest import TfServingRestDouble


@pytest.fixture(scope="module")
def tfserving(repository) -> Iterator[TfServingRestDouble]:
    with TfServingRestDouble(repository=repository) as double:
        yield double


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tfserving: TfServingRestDouble
) -> Iterator[LocalServer]:
    started = start_local_server(
        tmp_path_factory.mktemp("tfserving-backed"),
        {
            "AISTACK_MODEL_DIR": str(MODEL_DIR),
            "AISTACK_BACKENDS": f"cpu=tfserving+http://127.0.0.1:{tfserving.port}/covid19",
            "AISTACK_PROBE_INTERVAL_S": "0.2",
            "AISTACK_RATE_LIMIT": "",
        },
    )
    yield started
    started.stop()


def predict(server: LocalServer, image: Path) -> httpx.Response:
    body = {"image_b64": base64.b64encode(image.read_bytes()).decode(), "heatmap": True}
    return httpx.post(
        f"{server.url}/api/v2/xray/predictions", json=body, headers=server.headers, timeout=30
    )


def wait_for(condition, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_predictions_run_on_tf_serving_and_say_so(server, tfserving, sample_images):
    calls = tfserving.predict_calls
    answer = predict(server, sample_images["covid"])
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["backend"] == "cpu" and answer.headers["X-Model-Backend"] == "cpu"
    assert body["label"] == "covid" and body["overlay_url"]
    assert tfserving.predict_calls == calls + 1  # the model ran there, once, with Grad-CAM
    stored = httpx.get(answer.headers["Location"], headers=server.headers, timeout=10).json()
    assert stored["backend"] == "cpu"


def test_tf_serving_down_is_503_and_not_ready_then_recovers(server, tfserving, sample_images):
    port = tfserving.port
    tfserving.stop()
    try:
        refused = predict(server, sample_images["normal"])
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "backend_unavailable"
        assert refused.headers["Retry-After"]
        assert wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 503)
    finally:
        revived = TfServingRestDouble(repository=tfserving.repository, port=port).start()
    try:
        assert wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 200)
        assert wait_for(lambda: predict(server, sample_images["normal"]).status_code == 201)
    finally:
        revived.stop()
