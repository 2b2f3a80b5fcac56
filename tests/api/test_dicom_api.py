"""DICOM over the live server: a real adult PA radiograph (pydicom-data's RG1) through every
way in (v1 form b64 and file, v2 JSON, multipart and raw application/dicom, a v2 job), its
identifiers in the v2 JSON and the stored record; broken DICOMs get the right 4xx JSON."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless

from aistack.store import PredictionStore
from aistack.xray.labels import CLASSES
from tests.api.helpers import b64
from tests.api.test_docs import run_example, shell_examples
from tests.unit.test_dicom import JPEG2000, UNCOMPRESSED, dicom_bytes, gradient

V1 = "/covid19/api/v1/predict/heatmap"
PREDICTIONS = "/api/v2/xray/predictions"
JOBS = "/api/v2/xray/jobs"
DICOM = "application/dicom"
V1_KEYS = {
    "model_name",
    "X-Ray_Classification_Result",
    "X-Ray_Classification_Covid19_Probability",
    "X-Ray_Classfication_Raw_Result",
    "Input_Image",
    "Output_Heatmap",
}
RG1 = {
    "patient_id": "9RG1",
    "study_instance_uid": "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457",
    "series_instance_uid": "1.3.6.1.4.1.5962.1.3.9.1.20040826185059.5457",
    "accession_number": "exam Number",
}
SOP_INSTANCE = {
    UNCOMPRESSED: "1.3.6.1.4.1.5962.1.1.9.1.1.20040826185059.5457",
    JPEG2000: "1.3.6.1.4.1.5962.1.1.9.1.2.20040826185059.5457",
}


def radiograph(name: str = UNCOMPRESSED) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def identifiers(name: str) -> dict[str, str]:
    return {**RG1, "sop_instance_uid": SOP_INSTANCE[name]}


def created(response: httpx.Response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def reference(api, live_server) -> dict:
    """The radiograph's v2 JSON prediction: what every other way in must also answer."""
    return created(api.post(PREDICTIONS, json={"image_b64": b64(radiograph())}, timeout=60))


def test_v2_json_classifies_the_radiograph_and_returns_its_identifiers(reference):
    assert reference["label"] in CLASSES
    assert sum(reference["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert reference["dicom"] == identifiers(UNCOMPRESSED)
    assert ".dcm?token=" in reference["image_url"]  # the upload is kept as the DICOM it was
    overlay = httpx.get(reference["overlay_url"])
    assert overlay.status_code == 200
    shown = cv2.imdecode(np.frombuffer(overlay.content, np.uint8), cv2.IMREAD_COLOR)
    assert shown.shape[:2] == (768, round(768 * 1841 / 1955))  # the radiograph, fitted


def test_the_radiograph_yields_a_diagnostic_report_in_the_fhir_facade(api, reference):
    """End to end: the DICOM's patient and study reach the FHIR resources the service serves."""
    report = api.get(reference["fhir"]["diagnostic_report"]["url"])
    assert report.status_code == 200, report.text
    assert report.headers["content-type"].startswith("application/fhir+json")
    report = report.json()
    assert report["resourceType"] == "DiagnosticReport"
    assert report["status"] == "preliminary"
    assert report["subject"]["identifier"]["value"] == RG1["patient_id"]
    observation_ref = report["result"][0]["reference"]
    assert observation_ref == f"Observation/{reference['fhir']['observation']['id']}"
    observation = api.get(reference["fhir"]["observation"]["url"]).json()
    assert observation["subject"] == report["subject"]
    assert any(  # derived from the imaging study the DICOM names
        RG1["study_instance_uid"] in str(source) for source in observation["derivedFrom"]
    )
    found = api.get(
        "/fhir/r4/DiagnosticReport", params={"subject:identifier": RG1["patient_id"]}
    ).json()
    assert report["id"] in {entry["resource"]["id"] for entry in found.get("entry", [])}


def test_the_identifiers_are_stored_with_the_prediction(api, live_server, reference):
    read_back = api.get(f"{PREDICTIONS}/{reference['id']}")
    assert read_back.status_code == 200
    assert read_back.json()["dicom"] == identifiers(UNCOMPRESSED)
    store = PredictionStore(live_server.database_url)
    try:
        record = store.get(reference["id"])
    finally:
        store.close()
    assert record is not None and record.image_file == f"{reference['id']}.dcm"
    stored = {name: getattr(record, name) for name in identifiers(UNCOMPRESSED)}
    assert stored == identifiers(UNCOMPRESSED)
    assert record.endpoint == "v2"


def test_v2_multipart_dcm_file(api, live_server, reference):
    body = created(
        api.post(
            PREDICTIONS,
            files={"file": ("chest.dcm", radiograph(), DICOM)},
            data={"heatmap": "false"},
            timeout=60,
        )
    )
    assert body["probabilities"] == reference["probabilities"]
    assert body["dicom"] == identifiers(UNCOMPRESSED)
    assert body["heatmap_url"] is None and body["overlay_url"] is None


@pytest.mark.parametrize(("query", "heatmap"), [("", True), ("?heatmap=false", False)])
def test_v2_raw_application_dicom_body_jpeg2000(api, live_server, reference, query, heatmap):
    """The JPEG 2000 file of the same radiograph: same pixels, so the same probabilities."""
    response = api.post(
        f"{PREDICTIONS}{query}",
        content=radiograph(JPEG2000),
        headers={"content-type": DICOM},
        timeout=60,
    )
    body = created(response)
    assert body["probabilities"] == reference["probabilities"]
    assert body["dicom"] == identifiers(JPEG2000)
    assert (body["overlay_url"] is not None) is heatmap
    assert response.headers["Location"].endswith(f"{PREDICTIONS}/{body['id']}")


@pytest.mark.parametrize("way", ["b64", "file"])
def test_v1_keeps_its_2020_json_for_a_dicom(api, live_server, reference, way):
    data = radiograph()
    request = (
        {"data": {"b64": b64(data)}}
        if way == "b64"
        else {"files": {"file": ("chest.dcm", data, "application/octet-stream")}}
    )
    response = api.post(V1, timeout=60, **request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == V1_KEYS  # no DICOM keys in the 2020 JSON
    raw = dict(zip(CLASSES, body["X-Ray_Classfication_Raw_Result"][0], strict=True))
    assert raw == pytest.approx(reference["probabilities"], abs=1e-6)
    assert ".dcm?token=" in body["Input_Image"]
    assert httpx.get(body["Output_Heatmap"]).status_code == 200


def test_a_job_takes_a_raw_dicom_body(api, live_server, reference):
    response = api.post(JOBS, content=radiograph(), headers={"content-type": DICOM})
    assert response.status_code == 202, response.text
    job_id, deadline = response.json()["id"], time.monotonic() + 60
    while (job := api.get(f"{JOBS}/{job_id}").json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["status"] == "succeeded", job
    assert job["prediction"]["dicom"] == identifiers(UNCOMPRESSED)
    assert job["prediction"]["probabilities"] == reference["probabilities"]


def test_a_jpeg_prediction_has_a_null_dicom(api, live_server, sample_images):
    data = sample_images["normal"].read_bytes()
    body = created(api.post(PREDICTIONS, json={"image_b64": b64(data), "heatmap": False}))
    assert body["dicom"] is None


# --------------------------------------------------------------------------- refusals


def assert_error(response: httpx.Response, status: int, code: str, words: str) -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    error = response.json()["error"]
    assert error["code"] == code, error
    assert words in error["message"], error


def frame() -> np.ndarray:
    return gradient(np.uint8, 0, 255, (64, 64))


def missing_pixel_data() -> bytes:
    data = dicom_bytes(frame())
    return data[: data.rfind(b"\xe0\x7f\x10\x00")]  # cut at the Pixel Data tag


BAD_DICOMS = {
    "multi-frame": (
        lambda: dicom_bytes(frame(), pixel_data=bytes(2 * 64 * 64), NumberOfFrames=2),
        415,
        "unsupported_format",
        "multi-frame",
    ),
    "JPEG-LS": (
        lambda: dicom_bytes(
            frame(), transfer_syntax=JPEGLSLossless, pixel_data=encapsulate([b"\xff\xd8\xff\xd9"])
        ),
        415,
        "unsupported_format",
        "JPEG-LS Lossless",
    ),
    "palette": (
        lambda: dicom_bytes(frame(), "PALETTE COLOR"),
        415,
        "unsupported_format",
        "PALETTE COLOR",
    ),
    "no pixel data": (missing_pixel_data, 422, "corrupt_image", "no Pixel Data"),
    "truncated": (
        lambda: radiograph()[: len(radiograph()) // 2],
        422,
        "corrupt_image",
        "truncated",
    ),
    "oversize": (
        lambda: dicom_bytes(frame(), Rows=10_000, Columns=10_000),
        413,
        "image_too_large",
        "10000x10000",
    ),
    "not DICOM": (lambda: b"\x00" * 200, 415, "not_an_image", "not a JPEG, PNG or DICOM"),
}


@pytest.mark.parametrize("case", BAD_DICOMS)
def test_a_bad_raw_dicom_body_gets_its_4xx(api, live_server, case):
    make, status, code, words = BAD_DICOMS[case]
    response = api.post(PREDICTIONS, content=make(), headers={"content-type": DICOM})
    assert_error(response, status, code, words)


@pytest.mark.parametrize("case", ["multi-frame", "no pixel data", "oversize"])
def test_a_bad_dicom_gets_the_same_4xx_from_v1(api, live_server, case):
    make, status, code, words = BAD_DICOMS[case]
    assert_error(api.post(V1, data={"b64": b64(make())}), status, code, words)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code", "words"),
    [
        ({"content": b"", "headers": {"content-type": DICOM}}, 400, "missing_input", "DICOM"),
        (
            {"content": b"x", "headers": {"content-type": DICOM}, "params": {"heatmap": "yes"}},
            422,
            "invalid_request",
            "heatmap",
        ),
        (
            {"json": {"image_b64": "aGVsbG8="}, "params": {"heatmap": "false"}},
            422,
            "invalid_request",
            "goes with a raw application/dicom body",
        ),
    ],
)
def test_the_heatmap_query_and_an_empty_raw_body(
    api, live_server, request_kwargs, status, code, words
):
    assert_error(api.post(PREDICTIONS, **request_kwargs), status, code, words)


def test_the_heatmap_query_is_documented_for_predictions(api, live_server):
    operation = api.get("/openapi.json").json()["paths"][PREDICTIONS]["post"]
    assert DICOM in operation["requestBody"]["content"]
    (heatmap,) = [p for p in operation["parameters"] if p["name"] == "heatmap"]
    assert heatmap["in"] == "query"


def test_the_documented_dicom_curl_example_works(live_server, tmp_path):
    (tmp_path / "chest.dcm").write_bytes(radiograph(JPEG2000))
    example = next(e for e in shell_examples() if "application/dicom" in e)
    body = run_example(example, live_server, tmp_path)
    assert body["dicom"] == identifiers(JPEG2000)
    assert body["overlay_url"] is None  # ?heatmap=false
