"""Asynchronous predictions over the real app, the committed model and SQLite: accepted at
once, run in the background, answered with the JSON of the synchronous route, and durable
across a restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from aistack.api.app import create_app
from aistack.auth.signing import UrlSigner, load_or_create_secret
from aistack.config import Settings
from aistack.runtime import Runtime
from aistack.store import PredictionStore
from aistack.store.jobs import JobStatus
from aistack.xray.links import FileLinks
from aistack.xray.schemas import (
    job_view,
    to_json,
    v1_heatmap_prediction,
    v1_prediction,
    v2_prediction,
)
from tests.api.helpers import b64, gif_bytes, unsigned
from tests.conftest import MODEL_DIR

JOBS = "/api/v2/xray/jobs"
PREDICTIONS = "/api/v2/xray/predictions"
FINISHED = {"succeeded", "failed"}


def poll(client: httpx.Client | TestClient, job_id: str, timeout_s: float = 60) -> dict:
    """The job once finished (polling as a client would)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"{JOBS}/{job_id}")
        assert response.status_code == 200, response.text
        if response.json()["status"] in FINISHED:
            return response.json()
        time.sleep(0.05)
    pytest.fail(f"job {job_id} did not finish in {timeout_s} s: {response.json()}")


def submit(client: httpx.Client | TestClient, **request) -> dict:
    response = client.post(JOBS, **request)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"].endswith(f"{JOBS}/{job['id']}")
    assert job["status"] == "queued" and job["prediction"] is None and job["error"] is None
    return job


def png(pixels: np.ndarray) -> bytes:
    return cv2.imencode(".png", pixels)[1].tobytes()


# --- over the shared live server


def test_a_job_gives_the_prediction_create_prediction_gives(api, sample_images):
    data = sample_images["covid"].read_bytes()
    job = poll(api, submit(api, json={"image_b64": b64(data)})["id"])
    assert job["status"] == "succeeded" and job["error"] is None
    assert job["updated_at"] >= job["created_at"]
    synchronous = api.post(PREDICTIONS, json={"image_b64": b64(data)}).json()
    prediction = job["prediction"]
    assert set(prediction) == set(synchronous)
    for key in ("label", "covid_positive", "threshold", "low_confidence", "model", "backend"):
        assert prediction[key] == synchronous[key], key
    assert prediction["input_sha256"] == synchronous["input_sha256"]
    assert prediction["probabilities"] == pytest.approx(synchronous["probabilities"], abs=1e-6)
    stored = api.get(f"{PREDICTIONS}/{prediction['id']}").json()
    assert unsigned(stored) == unsigned(prediction)
    for key in ("image_url", "heatmap_url", "overlay_url"):
        assert httpx.get(prediction[key]).status_code == 200, key


def test_a_multipart_job_without_heatmap(api, sample_images):
    data = sample_images["normal"].read_bytes()
    request = {"files": {"file": ("a.jpeg", data, "image/jpeg")}, "data": {"heatmap": "false"}}
    prediction = poll(api, submit(api, **request)["id"])["prediction"]
    assert prediction["heatmap_url"] is None and prediction["overlay_url"] is None
    assert prediction["model"] == {"name": "covid19", "version": 1}


@pytest.mark.parametrize(
    ("image", "code"),
    [
        (b"hello, I am text, not an X-ray", "not_an_image"),
        (gif_bytes(), "unsupported_format"),
        (png(np.zeros((512, 512), np.uint8)), "not_a_chest_xray"),
        (None, "corrupt_image"),
    ],
    ids=["text", "gif", "black square", "truncated jpeg"],
)
def test_an_image_the_service_refuses_fails_the_job_as_the_route_fails(
    api, sample_images, image, code
):
    if image is None:
        whole = sample_images["covid"].read_bytes()
        image = whole[: len(whole) // 2]
    body = {"json": {"image_b64": b64(image)}}
    job = poll(api, submit(api, **body)["id"])
    synchronous = api.post(PREDICTIONS, **body)
    assert synchronous.json()["error"]["code"] == code
    assert job["status"] == "failed" and job["prediction"] is None
    assert job["error"] == synchronous.json()["error"]


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"content": b"", "headers": {"content-type": "application/json"}},
        {"content": b"", "headers": {}},
        {"content": b"an image?", "headers": {"content-type": "text/plain"}},
        {"json": {"image_b64": "%%%%%%%%"}},
        {"json": {"heatmap": True}},
        {"json": {"image_b64": 12345}},
        {"files": {"file": ("a.png", b"", "image/png")}},
        {"files": {"file": ("a.png", b"x", "image/png")}, "data": {"heatmap": "maybe"}},
        {"json": {"image_b64": "aGVsbG8="}, "params": {"version": 2}},
        {"json": {"image_b64": "aGVsbG8="}, "params": {"verison": 1}},
        {"json": {"image_b64": "aGVsbG8="}, "params": {"label": "canary"}},
    ],
    ids=[
        "invalid json",
        "empty json",
        "empty body",
        "text/plain",
        "invalid base64",
        "no image_b64",
        "wrong type",
        "empty file",
        "bad heatmap flag",
        "version not served",
        "unknown parameter",
        "unknown label",
    ],
)
def test_an_unreadable_request_is_refused_at_once_as_the_route_refuses_it(api, request_kwargs):
    refused = api.post(JOBS, **request_kwargs)
    synchronous = api.post(PREDICTIONS, **request_kwargs)
    assert 400 <= refused.status_code < 500
    assert refused.status_code == synchronous.status_code
    assert refused.json() == synchronous.json()


def test_a_job_may_name_the_served_version(api, sample_images):
    data = sample_images["normal"].read_bytes()
    job = submit(api, json={"image_b64": b64(data)}, params={"label": "stable"})
    assert poll(api, job["id"])["prediction"]["model"]["version"] == 1


def test_unknown_and_malformed_job_ids(api):
    unknown = api.get(f"{JOBS}/{'0' * 32}")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    malformed = api.get(f"{JOBS}/not-an-id")
    assert malformed.status_code == 422 and malformed.json()["error"]["code"] == "invalid_request"


def test_jobs_follow_the_prediction_keys_rules(live_server, sample_images):
    keys = {
        name: live_server.create_key(f"jobs-{name}-{time.monotonic_ns()}", role)
        for name, role in (("mine", "predict"), ("other", "predict"), ("read", "read"))
    }

    def client(name: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {keys[name]}"} if name else {}
        return httpx.Client(base_url=live_server.url, headers=headers, timeout=30)

    body = {"json": {"image_b64": b64(sample_images["normal"].read_bytes())}}
    with client("mine") as mine, client("other") as other, client("read") as reader:
        job = submit(mine, **body)
        with client(None) as anonymous:
            for response in (anonymous.post(JOBS, **body), anonymous.get(f"{JOBS}/{job['id']}")):
                assert response.status_code == 401
                assert response.headers["www-authenticate"].startswith("Bearer")
        assert reader.post(JOBS, **body).status_code == 403  # a read key asks for nothing
        assert other.get(f"{JOBS}/{job['id']}").status_code == 404
        assert poll(reader, job["id"])["status"] == "succeeded"
        assert poll(mine, job["id"])["status"] == "succeeded"


def test_the_core_shapes_the_json_fastapi_sends(live_server, sample_images):
    """What the IRIS runtime sends (``to_json`` of the builders) is what this app sends."""
    name = f"shape-{time.monotonic_ns()}"
    headers = {"Authorization": f"Bearer {live_server.create_key(name, 'predict')}"}
    links = FileLinks(
        live_server.url, UrlSigner(load_or_create_secret(live_server.var_dir, None), 60)
    )
    store = PredictionStore(live_server.database_url)
    form = {"b64": b64(sample_images["pneumonia_bac"].read_bytes())}
    try:
        with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
            sent = client.post("/covid19/api/v1/predict/heatmap", data=form).json()
            assert unsigned(sent) == unsigned(
                to_json(v1_heatmap_prediction(store.recent(1, name)[0], links))
            )
            sent = client.post("/covid19/api/v1/predict/", data=form).json()
            assert sent == to_json(v1_prediction(store.recent(1, name)[0]))
            assert "X-Ray_Classfication_Raw_Result" in sent
            sent = client.get(f"{PREDICTIONS}/{store.recent(1, name)[0].id}").json()
            record = store.recent(1, name)[0]
            assert unsigned(sent) == unsigned(to_json(v2_prediction(record, links, 0.2)))
    finally:
        store.close()


# --- in this process: restart and stop


def settings_for(var_dir: Path, **overrides: object) -> Settings:
    return Settings(var_dir=var_dir, model_dir=MODEL_DIR, auth=False, rate_limit="", **overrides)


def test_accepted_jobs_survive_a_restart(tmp_path, sample_images):
    settings = settings_for(tmp_path, max_queued_jobs=3, job_lease_s=1)
    first = Runtime(settings)
    client = TestClient(create_app(settings, first))  # no lifespan: the runner never starts
    first.start_loading()
    assert first.wait_ready(120)
    images = [sample_images["covid"].read_bytes(), sample_images["normal"].read_bytes()]
    bodies = [
        {"json": {"image_b64": b64(images[0])}},
        {"json": {"image_b64": b64(images[1]), "heatmap": False}},
        {"json": {"image_b64": b64(b"not an image")}},
    ]
    accepted = [client.post(JOBS, **body) for body in bodies]
    # What FastAPI sent is what the core's to_json gives for the same job.
    for response in accepted:
        assert response.json() == to_json(job_view(first.jobs.get(response.json()["id"]), None))
    busy = client.post(JOBS, **bodies[0])
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "service_busy"
    assert int(busy.headers["retry-after"]) >= 1
    ids = [response.json()["id"] for response in accepted]
    spool = tmp_path / "jobs"
    assert sorted(p.name for p in spool.iterdir()) == sorted(ids)
    first.jobs.mark_running(ids[0])  # as a worker that died in the middle leaves it
    first.close()

    second = Runtime(settings)
    with TestClient(create_app(settings, second)) as client:
        jobs = [poll(client, job_id) for job_id in ids]
        assert [j["status"] for j in jobs] == ["succeeded", "succeeded", "failed"]
        assert jobs[0]["prediction"]["label"] == "covid"
        assert jobs[1]["prediction"]["heatmap_url"] is None
        assert jobs[2]["error"]["code"] == "not_an_image"
        assert list(spool.iterdir()) == []
        stored = client.get(f"{PREDICTIONS}/{jobs[0]['prediction']['id']}").json()
        core = v2_prediction(
            second.store.get(stored["id"]), second.links, settings.low_confidence_margin
        )
        assert unsigned(stored) == unsigned(to_json(core))


def test_stopping_waits_for_the_running_job(tmp_path, sample_images):
    settings = settings_for(tmp_path, max_concurrent_decodes=1)
    runtime = Runtime(settings)
    with TestClient(create_app(settings, runtime)) as client:
        assert runtime.wait_ready(120)
        body = {"json": {"image_b64": b64(sample_images["normal"].read_bytes())}}
        with runtime.service.admission.enter():  # the only decode slot: the job must wait
            job_id = submit(client, **body)["id"]
            deadline = time.monotonic() + 30
            while runtime.jobs.get(job_id).status is not JobStatus.RUNNING:
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.02)
            stopping = threading.Thread(target=runtime.job_runner.stop, args=(30,))
            stopping.start()
            stopping.join(0.5)
            assert stopping.is_alive()  # stop waits for the job
        stopping.join(30)
        assert not stopping.is_alive()
        assert runtime.jobs.get(job_id).status is JobStatus.SUCCEEDED
