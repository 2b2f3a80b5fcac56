"""Asynchronous jobs: accepted at once, run through IRIS's queue, and not lost on a restart."""

from __future__ import annotations

import json

import pytest

from aistack.interop import rest, wiring
from tests.api.helpers import b64
from tests.interop.iris_double import CspRequestDouble, QueueDouble

JOBS = "/api/v2/xray/jobs"


def submit(image: bytes) -> rest.Reply:
    body = json.dumps({"image_b64": b64(image), "heatmap": True}).encode()
    request = CspRequestDouble("POST", JOBS, "application/json", body)
    return rest.handle("create_job", request, "UnknownUser", "")


def job(job_id: str) -> dict:
    reply = rest.handle(
        "get_job", CspRequestDouble("GET", f"{JOBS}/{job_id}"), "UnknownUser", "", job_id
    )
    assert reply.status == 200, reply.body
    return json.loads(reply.body)


def test_accepted_with_the_standalone_shape_then_run_from_the_queue(
    production, tfserving, standalone, sample_images
):
    running = production(tfserving.url, tfserving.url)
    data = sample_images["pneumonia_bac"].read_bytes()
    accepted = submit(data)
    assert accepted.status == 202 and accepted.status_line == "202 Accepted"
    body = json.loads(accepted.body)
    expected = standalone.post(JOBS, json={"image_b64": b64(data), "heatmap": True})
    assert expected.status_code == 202
    assert body.keys() == expected.json().keys()
    assert (body["status"], body["prediction"], body["error"]) == ("queued", None, None)
    assert accepted.headers["Location"] == f"http://iris.test{JOBS}/{body['id']}"
    assert ("XRayJobService", "XRayRouter", "async") in running.sent
    assert job(body["id"])["status"] == "queued"  # nothing ran yet: it waits in the queue

    assert running.deliver_queued() == 1
    done = job(body["id"])
    assert done["status"] == "succeeded" and done["error"] is None
    assert done["prediction"]["label"] == "pneumonia_bac"
    assert done["prediction"]["overlay_url"] and done["prediction"]["backend"] == "gpu"


def test_a_job_left_in_the_queue_runs_after_a_restart(production, tfserving, sample_images):
    queue = QueueDouble()  # IRIS's queues are in its database: they outlive the production
    first = production(tfserving.url, tfserving.url, queue=queue)
    job_id = json.loads(submit(sample_images["covid"].read_bytes()).body)["id"]
    first.stop()  # IRIS stops before any job took the message
    wiring.reset()  # every job's memory is gone

    restarted = production(tfserving.url, tfserving.url, queue=queue)
    assert job(job_id)["status"] == "queued"
    assert restarted.deliver_queued() == 1
    assert job(job_id)["status"] == "succeeded"


def test_a_failed_prediction_fails_the_job_with_the_synchronous_error(production, tfserving):
    running = production(tfserving.url, tfserving.url)
    job_id = json.loads(submit(b"plain text, no image").body)["id"]
    running.deliver_queued()
    failed = job(job_id)
    assert failed["status"] == "failed" and failed["prediction"] is None
    assert failed["error"]["code"] == "not_an_image"


def test_a_finished_job_delivered_again_is_not_run_again(production, tfserving, sample_images):
    queue = QueueDouble()
    running = production(tfserving.url, tfserving.url, queue=queue)
    accepted = submit(sample_images["normal"].read_bytes())
    queue.entries.append(queue.entries[0])  # the same message twice (a redelivery)
    assert running.deliver_queued() == 2
    finished = job(json.loads(accepted.body)["id"])
    assert finished["status"] == "succeeded"
    assert wiring.runtime().store.count() == 1  # one prediction, not two


def test_a_job_with_a_bad_body_is_refused_at_once(production, tfserving):
    production(tfserving.url, tfserving.url)
    request = CspRequestDouble("POST", JOBS, "text/plain", b"{}")
    reply = rest.handle("create_job", request, "UnknownUser", "")
    assert reply.status == 415
    assert json.loads(reply.body)["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("job_id", ["nope", "0" * 32])
def test_unknown_or_malformed_job_ids(production, tfserving, job_id):
    production(tfserving.url, tfserving.url)
    reply = rest.handle(
        "get_job", CspRequestDouble("GET", f"{JOBS}/{job_id}"), "UnknownUser", "", job_id
    )
    assert reply.status == (422 if job_id == "nope" else 404)
