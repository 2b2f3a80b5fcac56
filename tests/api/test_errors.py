"""Bad input gets a clear 4xx JSON error, and the service keeps serving afterwards."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.api.helpers import b64, gif_bytes, png_declaring

V1 = "/covid19/api/v1/predict/heatmap"
V2 = "/api/v2/xray/predictions"


@pytest.fixture
def still_serving(api, live_server, sample_images):
    """After each bad request, a good one must still succeed."""
    yield
    good = base64.b64encode(sample_images["normal"].read_bytes()).decode()
    response = api.post(V1, data={"b64": good}, timeout=30)
    assert response.status_code == 200


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert len(error["message"]) > 10


def truncated_jpeg(sample_images) -> bytes:
    data = sample_images["covid"].read_bytes()
    return data[: len(data) // 2]


CASES = {
    "missing field": ({"data": {"image": "x"}}, 400, "missing_input"),
    "invalid base64": ({"data": {"b64": "this is not base64!"}}, 400, "invalid_base64"),
    "not an image": (
        {"data": {"b64": b64(b"hello, I am text, not an X-ray")}},
        415,
        "not_an_image",
    ),
    "empty b64": ({"data": {"b64": ""}}, 400, "empty_input"),
    "unsupported format": ({"data": {"b64": b64(gif_bytes())}}, 415, "unsupported_format"),
    "over the pixel limit": (
        {"data": {"b64": b64(png_declaring(100_000, 100_000))}},
        413,
        "image_too_large",
    ),
    "wrong content type": (
        {"content": b"{}", "headers": {"content-type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    "empty body": ({"content": b""}, 400, "missing_input"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_v1_bad_input(api, live_server, still_serving, case):
    request, status, code = CASES[case]
    assert_error(api.post(V1, **request), status, code)


def test_truncated_image(api, live_server, still_serving, sample_images):
    response = api.post(V1, data={"b64": b64(truncated_jpeg(sample_images))})
    assert_error(response, 422, "corrupt_image")


def test_body_over_the_limit_is_refused_before_reading(api, live_server, still_serving):
    body = b"b64=" + b"A" * (21 * 1024 * 1024)
    response = api.post(
        V1,
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 413, "payload_too_large")


def test_chunked_body_over_the_limit_is_cut_off(api, live_server, still_serving):
    def chunks():
        for _ in range(22):
            yield b"A" * (1024 * 1024)

    response = api.post(V2, content=chunks(), headers={"content-type": "application/json"})
    assert_error(response, 413, "payload_too_large")


V2_CASES = {
    "missing image_b64": ({"json": {"heatmap": True}}, 400, "missing_input"),
    "invalid json": (
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        400,
        "invalid_json",
    ),
    "invalid base64": ({"json": {"image_b64": "%%%%%%%%"}}, 400, "invalid_base64"),
    "not an image": ({"json": {"image_b64": b64(b"plain text")}}, 415, "not_an_image"),
    "empty multipart file": ({"files": {"file": ("a.png", b"", "image/png")}}, 400, "empty_input"),
    "bad heatmap flag": (
        {"files": {"file": ("a.png", b"x", "image/png")}, "data": {"heatmap": "maybe"}},
        400,
        "bad_request",
    ),
    "empty body": (
        {"content": b"", "headers": {"content-type": "application/json"}},
        400,
        "missing_input",
    ),
}


@pytest.mark.parametrize("case", V2_CASES, ids=list(V2_CASES))
def test_v2_bad_input(api, live_server, still_serving, case):
    request, status, code = V2_CASES[case]
    assert_error(api.post(V2, **request), status, code)
