"""Model status, metadata and health in TF Serving's and the Open Inference Protocol's terms,
and aistack's own version listing: over the live server, and over one serving two versions."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aistack.bench.local_server import LocalServer, start_local_server
from aistack.inference.versions import MODEL_INFO_FILE
from tests.api.helpers import b64
from tests.conftest import MODEL_DIR

PREDICTIONS = "/api/v2/xray/predictions"
OK = {"error_code": "OK", "error_message": ""}


def statuses(client: httpx.Client, path: str) -> list[tuple[str, str, str]]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return [
        (s["version"], s["state"], s["status"]["error_code"])
        for s in response.json()["model_version_status"]
    ]


def dims(tensor: dict) -> list[int]:
    return [int(d["size"]) for d in tensor["tensor_shape"]["dim"]]


# -- the live server: the committed version 1 ------------------------------------------------


def test_tf_serving_status_is_open_and_exactly_tf_servings_shape(live_server):
    expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": OK}]}
    for path in ("", "/versions/1", "/labels/stable"):
        response = httpx.get(f"{live_server.url}/v1/models/covid19{path}")  # no key
        assert response.status_code == 200, (path, response.text)
        assert response.json() == expected


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/models/covid19/versions/9", 404, "model_not_found"),
        ("/v1/models/covid19/labels/canary", 404, "model_not_found"),
        ("/v1/models/mnist", 404, "model_not_found"),
        ("/v1/models/covid19/versions/one", 422, "invalid_request"),
        ("/v2/models/covid19/versions/9/ready", 404, "model_not_found"),
        ("/v2/models/covid19/versions/one/ready", 404, "model_not_found"),
        ("/v2/models/mnist/ready", 404, "model_not_found"),
    ],
)
def test_unknown_model_version_or_label_is_a_json_error(live_server, path, status, code):
    response = httpx.get(f"{live_server.url}{path}")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_tf_serving_metadata_has_the_exported_signatures(api, live_server):
    for path in ("/metadata", "/versions/1/metadata", "/labels/stable/metadata"):
        response = api.get(f"/v1/models/covid19{path}")
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        assert body["model_spec"] == {"name": "covid19", "signature_name": "", "version": "1"}
        defs = body["metadata"]["signature_def"]["signature_def"]
        for name in ("serving_default", "gradcam"):
            (key,) = defs[name]["inputs"]
            assert key == "image_bytes"
            assert defs[name]["inputs"][key]["dtype"] == "DT_STRING"
            assert dims(defs[name]["inputs"][key]) == [-1]
            assert defs[name]["method_name"] == "tensorflow/serving/predict"
        assert set(defs["serving_default"]["outputs"]) == {"probabilities"}
        assert set(defs["gradcam"]["outputs"]) == {"probabilities", "heatmap"}
        assert dims(defs["gradcam"]["outputs"]["probabilities"]) == [-1, 3]
        assert dims(defs["gradcam"]["outputs"]["heatmap"]) == [-1, 14, 14]
        assert defs["gradcam"]["outputs"]["heatmap"]["dtype"] == "DT_FLOAT"


def test_metadata_and_listing_need_a_key_that_reads_everything(live_server):
    predict_key = live_server.create_key(f"models-predict-{time.monotonic_ns()}", "predict")
    read_key = live_server.create_key(f"models-read-{time.monotonic_ns()}", "read")
    for path in ("/v1/models/covid19/metadata", "/v2/models/covid19", "/v2", "/api/v2/models"):
        assert httpx.get(f"{live_server.url}{path}").status_code == 401, path
        as_predict = httpx.get(f"{live_server.url}{path}", headers={"X-API-Key": predict_key})
        assert as_predict.status_code == 403, path
        assert as_predict.json()["error"]["code"] == "forbidden"
        assert "may not read model details" in as_predict.json()["error"]["message"]
        as_read = httpx.get(f"{live_server.url}{path}", headers={"X-API-Key": read_key})
        assert as_read.status_code == 200, path


def test_oip_health_is_open(live_server):
    expected = {
        "/v2/health/live": {"live": True},
        "/v2/health/ready": {"ready": True},
        "/v2/models/covid19/ready": {"name": "covid19", "ready": True},
        "/v2/models/covid19/versions/1/ready": {"name": "covid19", "ready": True},
    }
    for path, body in expected.items():
        response = httpx.get(f"{live_server.url}{path}")
        assert response.status_code == 200, (path, response.text)
        assert response.json() == body


def test_oip_model_metadata_in_the_protocols_terms(api, live_server):
    body = api.get("/v2/models/covid19").json()
    assert body == {
        "name": "covid19",
        "versions": ["1"],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "heatmap", "datatype": "FP32", "shape": [-1, 14, 14]},
        ],
    }
    assert api.get("/v2/models/covid19/versions/1").json() == body
    server = api.get("/v2").json()
    assert server["name"] == "aistack" and server["extensions"] == []


def test_model_listing_shows_versions_labels_default_and_backends(api, live_server):
    body = api.get("/api/v2/models").json()
    assert body["name"] == "covid19" and body["default_version"] == 1
    (version,) = body["versions"]
    assert version["version"] == 1 and version["served"] and version["available"]
    assert version["state"] == "AVAILABLE" and version["error"] is None
    assert version["default"] and version["labels"] == ["stable"]
    (backend,) = version["backends"]
    assert backend["name"] == "inprocess" and backend["healthy"]
    assert backend["circuit"] == "closed" and backend["outstanding"] >= 0


def test_v1_names_the_backend_in_a_header_and_keeps_its_2020_json(api, live_server, sample_images):
    data = sample_images["covid"].read_bytes()
    response = api.post("/covid19/api/v1/predict/", data={"b64": b64(data)})
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Backend"] == "inprocess"
    assert list(response.json()) == [
        "model_name",
        "X-Ray_Classification_Result",
        "X-Ray_Classfication_Raw_Result",
    ]


# -- a server with version 1 (stable), a copy as 2 (canary) and a broken 3 --------------------


def copy_version(source: Path, target: Path, version: int) -> None:
    shutil.copytree(source, target)
    info_path = target / MODEL_INFO_FILE
    info = json.loads(info_path.read_text())
    info["version"] = version
    info_path.write_text(json.dumps(info))


@pytest.fixture(scope="module")
def versions_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    root = tmp_path_factory.mktemp("versions")
    models = root / "covid19"
    copy_version(MODEL_DIR / "1", models / "1", 1)
    copy_version(MODEL_DIR / "1", models / "2", 2)
    broken = models / "3" / MODEL_INFO_FILE
    broken.parent.mkdir(parents=True)
    broken.write_text((MODEL_DIR / "1" / MODEL_INFO_FILE).read_text())
    (models / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
    (models / "version_labels.json").write_text(json.dumps({"stable": 1, "canary": 2}))
    server = start_local_server(
        root / "var", env={"AISTACK_MODEL_DIR": str(models), "AISTACK_KEY_CACHE_S": "1"}
    )
    try:
        deadline = time.monotonic() + 90  # ready means version 1; the others load after it
        with server.client() as client:
            while time.monotonic() < deadline:
                states = [s for _, s, _ in statuses(client, "/v1/models/covid19")]
                if not {"START", "LOADING"} & set(states):
                    break
                time.sleep(0.2)
        yield server
    finally:
        server.stop()


def test_status_lists_every_version_newest_first(versions_server):
    with versions_server.client() as client:
        assert statuses(client, "/v1/models/covid19") == [
            ("3", "END", "UNKNOWN"),
            ("2", "AVAILABLE", "OK"),
            ("1", "AVAILABLE", "OK"),
        ]
        failed = client.get("/v1/models/covid19/versions/3").json()["model_version_status"][0]
        assert failed["status"]["error_message"]
        assert statuses(client, "/v1/models/covid19/labels/canary") == [("2", "AVAILABLE", "OK")]
        assert statuses(client, "/v1/models/covid19/labels/stable") == [("1", "AVAILABLE", "OK")]
        metadata = client.get("/v1/models/covid19/labels/canary/metadata").json()
        assert metadata["model_spec"]["version"] == "2"
        assert client.get("/v1/models/covid19/metadata").json()["model_spec"]["version"] == "1"


def test_oip_readiness_per_version(versions_server):
    with versions_server.client() as client:
        assert client.get("/v2/models/covid19").json()["versions"] == ["1", "2"]
        assert client.get("/v2/models/covid19/versions/2/ready").status_code == 200
        failed = client.get("/v2/models/covid19/versions/3/ready")
        assert failed.status_code == 503 and failed.json()["error"]["code"] == "not_ready"
        assert client.get("/v2/models/covid19/versions/4/ready").status_code == 404
        assert client.get("/v2/health/ready").status_code == 200


def test_listing_shows_each_versions_state_and_labels(versions_server):
    with versions_server.client() as client:
        body = client.get("/api/v2/models").json()
    assert body["default_version"] == 1
    listed = {v["version"]: v for v in body["versions"]}
    assert sorted(listed) == [1, 2, 3]
    assert [listed[v]["labels"] for v in (1, 2, 3)] == [["stable"], ["canary"], []]
    assert [listed[v]["default"] for v in (1, 2, 3)] == [True, False, False]
    assert [listed[v]["state"] for v in (1, 2, 3)] == ["AVAILABLE", "AVAILABLE", "END"]
    assert listed[3]["error"] and not listed[3]["available"] and listed[3]["backends"] == []
    assert [b["name"] for b in listed[2]["backends"]] == ["inprocess"]


def test_a_prediction_names_its_model_version(versions_server, sample_images):
    image = sample_images["covid"].read_bytes()
    with versions_server.client() as client:

        def predict(**params: object) -> httpx.Response:
            body = {"image_b64": b64(image), "heatmap": False}
            return client.post(PREDICTIONS, json=body, params=params)

        created = predict(version=2)
        assert created.status_code == 201, created.text
        assert created.json()["model"] == {"name": "covid19", "version": 2}
        assert created.json()["backend"] == created.headers["X-Model-Backend"] == "inprocess"
        stored = client.get(created.headers["location"]).json()
        assert stored["model"]["version"] == 2 and stored["backend"] == "inprocess"
        assert predict(label="canary").json()["model"]["version"] == 2
        assert predict(label="canary", version=2).json()["model"]["version"] == 2
        assert predict(label="canary", version=1).status_code == 404
        assert predict().json()["model"]["version"] == 1
        multipart = client.post(
            PREDICTIONS, params={"version": 2}, files={"file": ("x.jpeg", image, "image/jpeg")}
        )
        assert multipart.status_code == 201 and multipart.json()["model"]["version"] == 2
        failed = predict(version=3)
        assert failed.status_code == 503 and failed.json()["error"]["code"] == "not_ready"
        unknown = predict(version=4)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
