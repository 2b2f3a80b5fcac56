"""The v2 API over a real server: JSON and multipart in, stored predictions out."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from aistack.inference.savedmodel import SavedModelEngine
from aistack.xray.evaluate import evaluate
from aistack.xray.labels import CLASSES
from tests.api.helpers import b64
from tests.conftest import MODEL_DIR

PREDICTIONS = "/api/v2/xray/predictions"


def test_json_prediction_with_heatmap(api, live_server, sample_images):
    data = sample_images["covid"].read_bytes()
    response = api.post(PREDICTIONS, json={"image_b64": b64(data), "heatmap": True})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["label"] in CLASSES
    assert set(body["probabilities"]) == set(CLASSES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["threshold"] == 0.65
    assert body["covid_positive"] == (
        body["label"] == "covid" and body["probabilities"]["covid"] > 0.65
    )
    top, second = sorted(body["probabilities"].values())[::-1][:2]
    assert body["low_confidence"] == (top - second < 0.2)
    assert body["model"] == {"name": "covid19", "version": 1}
    assert body["backend"] == response.headers["X-Model-Backend"] == "inprocess"
    assert body["latency_ms"] > 0
    assert body["input_sha256"] == hashlib.sha256(data).hexdigest()
    for key in ("image_url", "heatmap_url", "overlay_url"):
        fetched = httpx.get(body[key])
        assert fetched.status_code == 200, key
        assert fetched.headers["content-type"].startswith("image/")


def test_without_heatmap_no_heatmap_is_rendered(api, live_server, sample_images):
    data = sample_images["normal"].read_bytes()
    body = api.post(PREDICTIONS, json={"image_b64": b64(data), "heatmap": False}).json()
    assert body["heatmap_url"] is None and body["overlay_url"] is None
    assert body["image_url"] is not None


def test_multipart_file_and_heatmap_field(api, live_server, sample_images):
    data = sample_images["pneumonia_bac"].read_bytes()
    response = api.post(
        PREDICTIONS,
        files={"file": ("a.jpeg", data, "image/jpeg")},
        data={"heatmap": "false"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["heatmap_url"] is None


def test_a_prediction_can_be_read_back_by_id(api, live_server, sample_images):
    data = sample_images["covid"].read_bytes()
    response = api.post(PREDICTIONS, json={"image_b64": b64(data)})
    created = response.json()
    assert response.headers["location"].endswith(f"{PREDICTIONS}/{created['id']}")
    fetched = api.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == created


def test_unknown_id_is_a_404_json_error(api, live_server):
    response = api.get(f"{PREDICTIONS}/{'0' * 32}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_malformed_id_is_a_422_json_error(api, live_server):
    response = api.get(f"{PREDICTIONS}/does-not-exist")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


MODEL_CARD_TEST_CORRECT = 23
"""The committed model's figure on xray/test as its model card reports it (of 27)."""


def test_the_service_reproduces_the_model_card_figure(api, live_server, xray_test_dir):
    """Every test image through the whole service gives the label offline evaluation gives."""
    offline = {
        p["image"]: p["predicted"]
        for p in evaluate(SavedModelEngine.from_model_dir(MODEL_DIR), xray_test_dir)["predictions"]
    }
    served, correct = {}, 0
    for truth in CLASSES:
        for path in sorted((xray_test_dir / truth).iterdir()):
            body = api.post(
                PREDICTIONS,
                json={"image_b64": b64(path.read_bytes()), "heatmap": False},
                timeout=30,
            ).json()
            served[f"{truth}/{path.name}"] = body["label"]
            correct += body["label"] == truth
    assert served == offline
    assert len(served) == 27
    assert correct >= MODEL_CARD_TEST_CORRECT


def test_health_readiness_and_docs(api, live_server):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["model"] == {"name": "covid19", "version": 1}
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/api/v2/xray/predictions", "/covid19/api/v1/predict/heatmap"} <= set(paths)


def test_recent_predictions_are_listed_newest_first(api, live_server, sample_images):
    data = sample_images["normal"].read_bytes()
    ids = [api.post(PREDICTIONS, json={"image_b64": b64(data)}).json()["id"] for _ in range(3)]
    listed = api.get(PREDICTIONS, params={"limit": 3}).json()
    assert [p["id"] for p in listed] == ids[::-1]
    bad = api.get(PREDICTIONS, params={"limit": 0})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "params", [{"version": 1}, {"label": "stable"}, {"version": 1, "label": "stable"}]
)
def test_a_prediction_may_name_the_served_version(api, live_server, sample_images, params):
    data = sample_images["normal"].read_bytes()
    response = api.post(PREDICTIONS, params=params, json={"image_b64": b64(data)})
    assert response.status_code == 201, response.text
    assert response.json()["model"] == {"name": "covid19", "version": 1}


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"version": 2}, 404, "model_not_found"),
        ({"label": "canary"}, 404, "model_not_found"),
        ({"version": 2, "label": "stable"}, 404, "model_not_found"),
        ({"verison": 1}, 400, "bad_request"),
        ({"version": -1}, 422, "invalid_request"),
        ({"version": "latest"}, 422, "invalid_request"),
    ],
)
def test_a_version_that_is_not_served_or_badly_named_is_refused(
    api, live_server, sample_images, params, status, code
):
    data = sample_images["normal"].read_bytes()
    response = api.post(PREDICTIONS, params=params, json={"image_b64": b64(data)})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
