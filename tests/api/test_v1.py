"""The 2020 API over a real server: exact keys, form variants, fetchable result URLs."""

from __future__ import annotations

import base64

import cv2
import httpx
import numpy as np
import pytest
import requests

from aistack.xray.labels import V1_CLASS_NAMES

PREDICT = "/covid19/api/v1/predict/"
HEATMAP = "/covid19/api/v1/predict/heatmap"
HEATMAP_LABELS = {
    "Covid-19 POSITIVE",
    "Covid-19 Negative; Bacterial Penumonia Positive",
    "Covid-19 Negative; Bacterial Penumonia Negative",
}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_healthcheck_text_is_the_2020_json_string(api, live_server, method):
    response = api.request(method, "/covid19/api/v1/healthcheck")
    assert response.status_code == 200
    assert response.json() == "Covid19 detector API is live!\n\n"


def test_the_2020_notebook_client_works_with_a_key(api, live_server, sample_images):
    """What the 2020 notebook did, requests.post(data={'b64': base64 bytes}), plus a key."""
    path = sample_images["covid"]
    response = requests.post(
        f"{live_server.url}{PREDICT}",
        data={"b64": base64.b64encode(open(path, "rb").read())},  # noqa: SIM115
        headers=live_server.headers,
        timeout=30,
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "model_name",
        "X-Ray_Classification_Result",
        "X-Ray_Classfication_Raw_Result",
    }
    raw = body["X-Ray_Classfication_Raw_Result"]
    assert len(raw) == 1 and len(raw[0]) == 3
    assert sum(raw[0]) == pytest.approx(1.0, abs=1e-4)
    assert body["X-Ray_Classification_Result"] == V1_CLASS_NAMES[int(np.argmax(raw[0]))]


@pytest.mark.parametrize("variant", ["urlencoded-b64", "multipart-b64", "multipart-file"])
def test_predict_accepts_every_documented_form(api, live_server, sample_images, variant):
    data = sample_images["normal"].read_bytes()
    if variant == "urlencoded-b64":
        response = api.post(PREDICT, data={"b64": base64.b64encode(data).decode()})
    elif variant == "multipart-b64":
        response = api.post(PREDICT, files={"b64": (None, base64.b64encode(data).decode())})
    else:
        response = api.post(PREDICT, files={"file": ("x.jpeg", data, "image/jpeg")})
    assert response.status_code == 200, response.text
    assert response.json()["X-Ray_Classification_Result"] in V1_CLASS_NAMES


def test_heatmap_answer_has_the_2020_keys_and_fetchable_urls(api, live_server, sample_images):
    path = sample_images["covid"]
    data = path.read_bytes()
    response = requests.post(
        f"{live_server.url}{HEATMAP}",
        data={"b64": base64.b64encode(data)},
        headers=live_server.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "model_name",
        "X-Ray_Classification_Result",
        "X-Ray_Classification_Covid19_Probability",
        "X-Ray_Classfication_Raw_Result",
        "Input_Image",
        "Output_Heatmap",
    }
    raw = body["X-Ray_Classfication_Raw_Result"][0]
    assert body["X-Ray_Classification_Covid19_Probability"] == round(raw[0], 2)
    assert body["X-Ray_Classification_Result"] in HEATMAP_LABELS
    top = int(np.argmax(raw))
    expected_positive = top == 0 and raw[0] > 0.65
    assert (body["X-Ray_Classification_Result"] == "Covid-19 POSITIVE") == expected_positive

    assert "/static/source/" in body["Input_Image"]
    assert "/static/result/" in body["Output_Heatmap"]
    assert path.stem not in body["Input_Image"]  # names are the server's, never the user's
    source = httpx.get(body["Input_Image"])
    assert source.status_code == 200 and source.content == data
    heatmap = httpx.get(body["Output_Heatmap"])
    assert heatmap.status_code == 200
    picture = cv2.imdecode(np.frombuffer(heatmap.content, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.ndim == 3 and max(picture.shape[:2]) <= 768
    # A heatmap is coloured; the input X-ray is gray.
    assert np.abs(picture[:, :, 0].astype(int) - picture[:, :, 2].astype(int)).mean() > 5


def test_every_heatmap_request_gets_its_own_files(api, live_server, sample_images):
    data = base64.b64encode(sample_images["pneumonia_bac"].read_bytes()).decode()
    first, second = (api.post(HEATMAP, data={"b64": data}).json() for _ in range(2))
    assert first["Output_Heatmap"] != second["Output_Heatmap"]
    assert first["Input_Image"] != second["Input_Image"]


def test_a_trailing_slash_less_predict_is_redirected_not_lost(api, live_server, sample_images):
    data = base64.b64encode(sample_images["normal"].read_bytes()).decode()
    response = api.post("/covid19/api/v1/predict", data={"b64": data}, follow_redirects=True)
    assert response.status_code == 200
