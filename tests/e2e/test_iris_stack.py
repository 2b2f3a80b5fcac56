"""The IRIS runtime end to end: HAProxy → Web Gateway → %CSP.REST → production → store.

Replays the 2020 notebook's calls (REFERENCE.md §1: the healthcheck, ``predict/`` with the
``b64`` form field, ``predict/heatmap`` and fetching its image URLs), then the v2 flows (a
prediction stored and read back, a job polled to its prediction), against a running stack
(``docker compose up``) at ``AISTACK_IRIS_URL`` (e.g. http://localhost:8088). Callers
authenticate as ``AISTACK_IRIS_USER`` / ``AISTACK_IRIS_PASSWORD``: an IRIS user with the
AIStackPredict role, such as the installer's demonstration user (AISTACK_DEMO_PASSWORD).
Without ``AISTACK_IRIS_URL`` every test is skipped: nothing here runs without the stack.
"""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aistack.xray.labels import CLASSES, V1_CLASS_NAMES
from aistack.xray.schemas import HEALTHCHECK_TEXT
from tests.e2e.stack import TIMEOUT

pytestmark = pytest.mark.iris

JOB_DEADLINE_S = 120.0
PREDICTIONS = "/api/v2/xray/predictions"
JOBS = "/api/v2/xray/jobs"
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


@pytest.fixture(scope="module")
def xray(xray_test_dir: Path) -> bytes:
    """One chest X-ray of the 2020 test set, the file's bytes as a client sends them."""
    return sorted((xray_test_dir / "covid").iterdir())[0].read_bytes()


def form(image: bytes) -> dict[str, str]:
    """The 2020 client's form: ``data={'b64': base64.b64encode(...)}`` posted by requests,
    which sends those bytes as they are (httpx wants text, for the same bytes on the wire)."""
    return {"b64": base64.b64encode(image).decode("ascii")}


def error_code(response: httpx.Response) -> str:
    """The project's error body, checked whole: ``{"error": {"code", "message"}}``."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def assert_probabilities(raw: list[float]) -> None:
    assert len(raw) == len(CLASSES) and all(0.0 <= p <= 1.0 for p in raw), raw
    assert abs(sum(raw) - 1.0) < 1e-3, raw


# -- the 2020 notebook's calls ---------------------------------------------------------------


def test_v1_healthcheck_answers_as_in_2020(stack: httpx.Client):
    for method in ("GET", "POST"):
        response = stack.request(method, "/covid19/api/v1/healthcheck")
        assert response.status_code == 200, response.text
        assert response.json() == HEALTHCHECK_TEXT


def test_v1_predict_with_the_b64_form_field(caller: httpx.Client, xray: bytes):
    response = caller.post("/covid19/api/v1/predict/", data=form(xray))
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [
        "model_name",
        "X-Ray_Classification_Result",
        "X-Ray_Classfication_Raw_Result",
    ]
    raw = body["X-Ray_Classfication_Raw_Result"][0]
    assert_probabilities(raw)
    assert body["X-Ray_Classification_Result"] == V1_CLASS_NAMES[raw.index(max(raw))]
    assert response.headers["X-Model-Backend"]


def test_v1_heatmap_and_its_signed_image_urls(caller: httpx.Client, xray: bytes):
    response = caller.post("/covid19/api/v1/predict/heatmap", data=form(xray))
    assert response.status_code == 200, response.text
    body = response.json()
    raw = body["X-Ray_Classfication_Raw_Result"][0]
    assert_probabilities(raw)
    assert body["X-Ray_Classification_Covid19_Probability"] == round(raw[0], 2)
    assert body["X-Ray_Classification_Result"].startswith("Covid-19 ")
    assert "/static/source/" in body["Input_Image"]
    assert "/static/result/" in body["Output_Heatmap"]
    # As the 2020 notebook did: fetch the URLs with no credentials; the signature opens them.
    with httpx.Client(timeout=TIMEOUT) as anonymous:
        overlay = anonymous.get(body["Output_Heatmap"])
        upload = anonymous.get(body["Input_Image"])
    assert overlay.status_code == 200, overlay.text[:200]
    assert overlay.headers["content-type"].startswith("image/")
    assert overlay.content.startswith(IMAGE_MAGIC)
    assert overlay.headers["X-Content-Type-Options"] == "nosniff"
    assert upload.status_code == 200 and upload.content == xray  # stored as received


# -- v2: a stored prediction, and a job -------------------------------------------------------


def test_v2_prediction_is_stored_and_read_back(caller: httpx.Client, xray: bytes):
    payload = {"image_b64": base64.b64encode(xray).decode(), "heatmap": True}
    created = caller.post(PREDICTIONS, json=payload)
    assert created.status_code == 201, created.text
    prediction = created.json()
    assert prediction["input_sha256"] == hashlib.sha256(xray).hexdigest()
    assert_probabilities([prediction["probabilities"][name] for name in CLASSES])
    assert created.headers["Location"].endswith(f"{PREDICTIONS}/{prediction['id']}")

    stored = caller.get(f"{PREDICTIONS}/{prediction['id']}")
    assert stored.status_code == 200, stored.text
    same = ("id", "label", "probabilities", "covid_positive", "model", "input_sha256")
    assert {k: stored.json()[k] for k in same} == {k: prediction[k] for k in same}

    recent = caller.get(PREDICTIONS, params={"limit": 50})
    assert recent.status_code == 200, recent.text
    assert prediction["id"] in [p["id"] for p in recent.json()]


def poll_job(caller: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_DEADLINE_S
    while True:
        response = caller.get(f"{JOBS}/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def test_v2_job_is_polled_to_its_stored_prediction(caller: httpx.Client, xray: bytes):
    payload = {"image_b64": base64.b64encode(xray).decode(), "heatmap": False}
    accepted = caller.post(JOBS, json=payload)
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert job["status"] in ("queued", "running", "succeeded"), job
    assert accepted.headers["Location"].endswith(f"{JOBS}/{job['id']}")

    done = poll_job(caller, job["id"])
    assert done["status"] == "succeeded", done
    prediction = done["prediction"]
    assert prediction["input_sha256"] == hashlib.sha256(xray).hexdigest()
    assert prediction["overlay_url"] is None  # heatmap: false

    stored = caller.get(f"{PREDICTIONS}/{prediction['id']}")
    assert stored.status_code == 200, stored.text
    assert stored.json()["label"] == prediction["label"]


# -- what the dispatch classes answer themselves ----------------------------------------------


def test_health_probes(stack: httpx.Client):
    live = stack.get("/v2/health/live")
    assert live.status_code == 200 and live.json() == {"live": True}, live.text
    ready = stack.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}, ready.text


def test_a_request_without_credentials_is_refused_in_the_project_format(
    stack: httpx.Client, xray: bytes
):
    response = stack.post(PREDICTIONS, json={"image_b64": base64.b64encode(xray).decode()})
    assert response.status_code == 401, response.text
    assert error_code(response) == "unauthorized"
    assert response.headers.get("WWW-Authenticate")


def test_an_unknown_url_and_a_wrong_method_answer_in_the_project_format(stack: httpx.Client):
    missing = stack.get("/api/v2/xray/nothing-here")
    assert missing.status_code == 404, missing.text
    assert error_code(missing) == "not_found"

    wrong = stack.delete(PREDICTIONS)
    assert wrong.status_code == 405, wrong.text
    assert error_code(wrong) == "method_not_allowed"
    assert {m.strip() for m in wrong.headers["Allow"].split(",")} >= {"GET", "POST"}
