"""Backends down: the router fails over to the other operation, or answers a clean 503."""

from __future__ import annotations

import json

from aistack.interop import rest
from tests.api.helpers import b64
from tests.interop.iris_double import CspRequestDouble

V2 = "/api/v2/xray/predictions"


def predict(image: bytes) -> rest.Reply:
    body = json.dumps({"image_b64": b64(image), "heatmap": False}).encode()
    request = CspRequestDouble("POST", V2, "application/json", body)
    return rest.handle("create_prediction", request, "UnknownUser", "")


def ready() -> rest.Reply:
    return rest.handle("oip_ready", CspRequestDouble("GET", "/v2/health/ready"), "UnknownUser", "")


def test_gpu_down_the_cpu_operation_serves(production, tfserving, dead_url, sample_images):
    running = production(dead_url, tfserving.url, probe_interval_s="0")
    for _ in range(4):  # past the breaker's three failures too
        reply = predict(sample_images["normal"].read_bytes())
        assert reply.status == 201, reply.body
        assert json.loads(reply.body)["backend"] == "cpu"
        assert reply.headers["X-Model-Backend"] == "cpu"
    tried_gpu = [s for s in running.sent if s[1] == "TfServingGpu"]
    assert len(tried_gpu) == 3  # then its circuit is open: not tried any more
    assert ready().status == 200


def test_cpu_down_gpu_first_never_notices(production, tfserving, dead_url, sample_images):
    running = production(tfserving.url, dead_url, probe_interval_s="0")
    reply = predict(sample_images["covid"].read_bytes())
    assert reply.status == 201 and reply.headers["X-Model-Backend"] == "gpu"
    assert not [s for s in running.sent if s[1] == "TfServingCpu"]


def test_round_robin_uses_both(production, tfserving, sample_images):
    production(tfserving.url, tfserving.url, routing="round-robin", probe_interval_s="0")
    seen = {predict(sample_images["covid"].read_bytes()).headers["X-Model-Backend"] for _ in "ab"}
    assert seen == {"gpu", "cpu"}


def test_both_down_is_a_clean_503(production, dead_url, sample_images):
    production(dead_url, dead_url, probe_interval_s="0")
    reply = predict(sample_images["covid"].read_bytes())
    assert reply.status == 503 and reply.status_line == "503 Service Unavailable"
    error = json.loads(reply.body)["error"]
    assert error["code"] == "backend_unavailable"
    assert "TfServingCpu" in error["message"] or "cannot be reached" in error["message"]
    assert reply.headers["Retry-After"] == "1"
    not_ready = ready()
    assert not_ready.status == 503
    assert json.loads(not_ready.body)["error"]["code"] == "not_ready"


def test_probes_mark_a_down_backend_before_any_request_fails(
    production, tfserving, dead_url, sample_images
):
    running = production(dead_url, tfserving.url, probe_interval_s="60")
    reply = predict(sample_images["covid"].read_bytes())
    assert reply.status == 201 and reply.headers["X-Model-Backend"] == "cpu"
    inference_to_gpu = [s for s in running.sent if s[1] == "TfServingGpu"]
    assert len(inference_to_gpu) == 1  # the probe only: the request went straight to the CPU
