"""The IRIS runtime answers as the standalone runtime does, image for image and error for error.

The IRIS side is the whole chain run in this process: ``rest.handle`` → XRayPredictService →
XRayRouter (the core's service and router) → TfServingOperation over real HTTP to the TF
Serving double serving the committed model, with IRIS doubled and every message serialized
on the way as IRIS would. The standalone side is the real FastAPI app with the model in
process. Ids, times, latencies, URLs and the backend's name differ by nature; all else must
be equal.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from aistack.interop import rest
from tests.api.helpers import b64
from tests.interop.iris_double import CspRequestDouble

V1_PREDICT = "/covid19/api/v1/predict/"
V1_HEATMAP = "/covid19/api/v1/predict/heatmap"
V2 = "/api/v2/xray/predictions"
OPERATIONS = {V1_PREDICT: "v1_predict", V1_HEATMAP: "v1_predict_heatmap", V2: "create_prediction"}
DICOM_TYPE = {"content-type": "application/dicom"}
VARYING = {"id", "created_at", "latency_ms", "backend", "fhir"}
"""``fhir``: the standalone service serves its own FHIR resources and names them; the IRIS
runtime publishes them to the IRIS for Health FHIR server after answering (FhirPublisher),
whose ids are the server's, so its answer carries null there."""
URL_KEYS = {"image_url", "heatmap_url", "overlay_url", "Input_Image", "Output_Heatmap"}


@pytest.fixture
def iris_side(production, tfserving):
    return production(tfserving.url, tfserving.url)


def encoded(path: str, **content) -> tuple[str, bytes]:
    """(content type, body) exactly as an HTTP client would send them."""
    request = httpx.Request("POST", f"http://test{path}", **content)
    return request.headers.get("content-type", ""), request.read()


def both(standalone, path: str, content_type: str, body: bytes):
    """The same bytes to both runtimes: (standalone response, IRIS reply)."""
    headers = {"content-type": content_type} if content_type else {}
    answer = standalone.post(path, content=body, headers=headers)
    request = CspRequestDouble("POST", path, content_type, body)
    reply = rest.handle(OPERATIONS[path.split("?")[0]], request, "UnknownUser", "")
    return answer, reply


def comparable(body: dict) -> dict:
    """The body without what differs by nature; a URL only says whether there is one."""
    return {
        key: (value is not None if key in URL_KEYS else value)
        for key, value in body.items()
        if key not in VARYING
    }


def test_same_json_for_every_test_image_on_both_api_versions(
    standalone, iris_side, xray_test_dir: Path
):
    images = sorted(p for p in xray_test_dir.rglob("*") if p.is_file())
    assert len(images) == 27
    for image in images:
        data = image.read_bytes()
        cases = [
            (V1_PREDICT, encoded(V1_PREDICT, data={"b64": b64(data)})),
            (V1_HEATMAP, encoded(V1_HEATMAP, data={"b64": b64(data)})),
            (V2, encoded(V2, json={"image_b64": b64(data), "heatmap": True})),
        ]
        for path, (content_type, body) in cases:
            answer, reply = both(standalone, path, content_type, body)
            assert answer.status_code == reply.status == (201 if path == V2 else 200), reply.body
            expected, got = answer.json(), json.loads(reply.body)
            assert comparable(got) == comparable(expected), (image.name, path)
            assert reply.content_type == "application/json"
            assert reply.headers["X-Model-Backend"] == "gpu"  # TF Serving, GPU first


def test_same_json_for_a_real_dicom_radiograph(standalone, iris_side):
    """The identifiers a DICOM file carries come back through the production too."""
    from pydicom.data import get_testdata_file  # noqa: PLC0415 - test data, when present

    data = Path(get_testdata_file("RG1_UNCR.dcm")).read_bytes()
    cases = [
        (V2 + "?heatmap=false", (DICOM_TYPE["content-type"], data)),
        (V2, encoded(V2, json={"image_b64": b64(data), "heatmap": True})),
        (V1_PREDICT, encoded(V1_PREDICT, data={"b64": b64(data)})),
    ]
    for path, (content_type, body) in cases:
        answer, reply = both(standalone, path, content_type, body)
        assert answer.status_code == reply.status, reply.body
        expected, got = answer.json(), json.loads(reply.body)
        assert comparable(got) == comparable(expected), path
    dicom = json.loads(both(standalone, V2, *encoded(V2, json={"image_b64": b64(data)}))[1].body)
    assert dicom["dicom"]["study_instance_uid"]


BAD = {
    "not an image": (V1_HEATMAP, {"data": {"b64": b64(b"hello, I am text, not an X-ray")}}),
    "empty body": (V1_PREDICT, {}),
    "empty b64": (V1_PREDICT, {"data": {"b64": ""}}),
    "bad base64": (V1_HEATMAP, {"data": {"b64": "this is not base64!"}}),
    "wrong content type": (
        V1_PREDICT,
        {"content": b"{}", "headers": {"content-type": "text/plain"}},
    ),
    "unknown form field": (V1_PREDICT, {"data": {"b64": "aGVsbG8=", "heatmpa": "true"}}),
    "no image field": (V1_PREDICT, {"data": {"image": "x"}}),
    "v2 empty": (V2, {}),
    "v2 not JSON": (V2, {"content": b"{nope", "headers": {"content-type": "application/json"}}),
    "v2 wrong type": (V2, {"json": {"image_b64": 12345}}),
    "v2 unknown field": (V2, {"files": {"file": ("a.png", b"x")}, "data": {"heatmpa": "1"}}),
    "v2 bad heatmap": (V2, {"files": {"file": ("a.png", b"x")}, "data": {"heatmap": "yes"}}),
    "v2 empty file": (V2, {"files": {"file": ("a.png", b"")}}),
    "v2 not an image": (V2, {"files": {"file": ("a.png", b"plain text")}}),
    "v2 bad base64": (V2, {"json": {"image_b64": "%%%% not base64"}}),
    "v2 wrong content type": (V2, {"content": b"x", "headers": {"content-type": "image/png"}}),
    "v2 unknown query": (V2 + "?verison=1", {"json": {"image_b64": "aGVsbG8="}}),
    "v2 unserved version": (V2 + "?version=7", {"json": {"image_b64": "aGVsbG8="}}),
    "v2 heatmap query with JSON": (V2 + "?heatmap=false", {"json": {"image_b64": "aGVsbG8="}}),
    "v2 bad heatmap query": (V2 + "?heatmap=no", {"content": b"x", "headers": DICOM_TYPE}),
    "v2 empty DICOM": (V2, {"content": b"", "headers": DICOM_TYPE}),
    "v2 DICOM without pixels": (V2, {"content": b"\0" * 128 + b"DICM", "headers": DICOM_TYPE}),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_same_error_for_the_same_bad_input(standalone, iris_side, case):
    path, content = BAD[case]
    content_type, body = encoded(path, **content)
    answer, reply = both(standalone, path, content_type, body)
    assert 400 <= reply.status < 500
    assert (reply.status, json.loads(reply.body)) == (answer.status_code, answer.json())
