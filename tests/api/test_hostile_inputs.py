"""Inputs found by probing the service: each is a clear 4xx, and the service keeps serving."""

from __future__ import annotations

import base64
import re

import cv2
import httpx
import numpy as np
import pytest

from tests.api.helpers import b64

V1 = "/covid19/api/v1/predict/heatmap"
V2 = "/api/v2/xray/predictions"
JSON = {"content-type": "application/json"}
LEAKED_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>")


@pytest.fixture
def still_serving(api, sample_images):
    yield
    good = base64.b64encode(sample_images["normal"].read_bytes()).decode()
    assert api.post(V1, data={"b64": good}).status_code == 200
    assert api.get("/readyz").status_code == 200


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert not LEAKED_REPR.search(error["message"]), error["message"]
    return error


def png(pixels: np.ndarray) -> bytes:
    return cv2.imencode(".png", pixels)[1].tobytes()


def test_invalid_utf8_in_json_is_a_400(api, still_serving):
    body = b'{"image_b64": "\xff\xfe\xfa", "heatmap": true}'
    assert_error(api.post(V2, content=body, headers=JSON), 400, "invalid_json")


def test_deeply_nested_json_is_a_400(api, still_serving):
    body = b'{"image_b64": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_error(api.post(V2, content=body, headers=JSON), 400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"image_b64": 12345}, "image_b64"),
        ({"image_b64": ["abcd"]}, "image_b64"),
        ({"image_b64": "aGVsbG8=", "heatmap": "yes"}, "heatmap"),
        ({"image_b64": "aGVsbG8=", "heatmap": 1}, "heatmap"),
    ],
)
def test_wrong_json_types_are_a_422_naming_the_field(api, still_serving, body, field):
    error = assert_error(api.post(V2, json=body), 422, "invalid_request")
    assert field in error["message"]


def test_a_json_array_body_is_a_422(api, still_serving):
    assert_error(api.post(V2, json=[1, 2, 3]), 422, "invalid_request")


def test_405_lists_the_allowed_methods(api, still_serving):
    response = api.delete(V2)
    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    healthcheck = api.request("PUT", "/covid19/api/v1/healthcheck")
    assert set(healthcheck.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_unknown_route_is_a_404_in_the_error_format(api):
    assert_error(api.get("/no/such/route"), 404, "not_found")


def test_a_truncated_jpeg_with_an_end_marker_appended_is_corrupt(api, still_serving, sample_images):
    data = sample_images["covid"].read_bytes()
    forged = data[: len(data) // 2] + b"\xff\xd9"
    assert_error(api.post(V1, data={"b64": b64(forged)}), 422, "corrupt_image")


@pytest.mark.parametrize(
    "picture",
    [
        np.zeros((512, 512), np.uint8),  # the black square that was called covid at 0.60
        np.full((512, 512), 255, np.uint8),
        np.zeros((1, 1), np.uint8),
        np.random.default_rng(0).integers(0, 256, (400, 400), dtype=np.uint8),
    ],
    ids=["black", "white", "1x1", "noise"],
)
@pytest.mark.parametrize("endpoint", [V1, V2])
def test_pictures_that_are_no_chest_xray_are_refused(api, still_serving, picture, endpoint):
    data = png(picture)
    if endpoint == V1:
        response = api.post(V1, data={"b64": b64(data)})
    else:
        response = api.post(V2, json={"image_b64": b64(data)})
    error = assert_error(response, 422, "not_a_chest_xray")
    assert "chest X-ray" in error["message"] or "small" in error["message"]


def test_both_b64_and_file_is_a_400(api, still_serving, sample_images):
    data = sample_images["normal"].read_bytes()
    response = api.post(
        "/covid19/api/v1/predict/",
        files={"file": ("a.jpeg", data, "image/jpeg")},
        data={"b64": b64(data)},
    )
    assert_error(response, 400, "bad_request")


def test_request_id_is_returned_and_echoed_when_sane(api):
    assert len(api.get("/healthz").headers["x-request-id"]) == 32
    echoed = api.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert echoed.headers["x-request-id"] == "trace-42"
    insane = api.get("/healthz", headers={"X-Request-ID": "a b;" * 40})
    assert len(insane.headers["x-request-id"]) == 32


def test_each_prediction_logs_one_json_line_without_image_data(api, live_server, sample_images):
    import json  # noqa: PLC0415

    data = sample_images["pneumonia_bac"].read_bytes()
    response = api.post(V2, json={"image_b64": b64(data)}, headers={"X-Request-ID": "log-check-1"})
    prediction = response.json()
    lines = [
        json.loads(line)
        for line in live_server.log().splitlines()
        if line.startswith("{") and '"log-check-1"' in line
    ]
    assert len(lines) == 1
    event = lines[0]
    assert event["event"] == "prediction" and event["prediction_id"] == prediction["id"]
    assert event["label"] == prediction["label"] and event["latency_ms"] > 0
    assert b64(data)[:40] not in json.dumps(event)
