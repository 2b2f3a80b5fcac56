"""The ICU routes over the real server (auth on): answers equal the core's, errors as JSON.

The server is the session's ``live_server`` (tests/conftest.py) with the committed ICU model
(models/icu/1) loaded on the first ICU request.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from aistack.api.app import create_app
from aistack.bench.local_server import LocalServer
from aistack.config import Settings
from aistack.fhir.risk import ICU_PREDICTION_SYSTEM, check_risk_assessment
from aistack.icu.columns import column_label
from aistack.icu.local import load_local
from aistack.icu.predictor import predict
from aistack.runtime import Runtime

MODEL = "/icu/api/v1/model"
PREDICT = "/icu/api/v1/predict"
BATCH = "/icu/api/v1/predict/batch"
ICU_DOC = Path(__file__).resolve().parents[2] / "docs" / "ICU.md"
ROW = {
    "PATIENT_VISIT_IDENTIFIER": 17,
    "AGE_PERCENTIL": "70th",
    "GENDER": 1,
    "RESPIRATORY_RATE_MAX": -0.2,
    "OXYGEN_SATURATION_MIN": 0.5,
    "PCR_MEDIAN": -0.85,
    "LINFOCITOS_MEDIAN": None,
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return error["message"]


@pytest.fixture(scope="module")
def keys(live_server: LocalServer) -> dict[str, str]:
    return {
        role: live_server.create_key(f"icu-{role}-{time.monotonic_ns()}", role)
        for role in ("predict", "read")
    }


@pytest.fixture(scope="module")
def client(live_server: LocalServer, keys) -> httpx.Client:
    """A client with a predict key: the role the prediction routes are for."""
    with httpx.Client(base_url=live_server.url, headers=bearer(keys["predict"]), timeout=60) as c:
        yield c


def core_answers(rows: list[dict]) -> list[dict]:
    return [
        {
            "probability": a.probability,
            "label": a.label,
            "top_features": [
                {
                    "feature": c.feature,
                    "label": column_label(c.feature),
                    "value": c.value,
                    "contribution": c.contribution,
                }
                for c in a.top_features
            ],
        }
        for a in predict(load_local(), rows)
    ]


# --- authentication and roles


@pytest.mark.parametrize(("method", "path"), [("GET", MODEL), ("POST", PREDICT), ("POST", BATCH)])
def test_every_icu_route_needs_a_key(live_server, method, path):
    response = httpx.request(method, f"{live_server.url}{path}", json=ROW)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_read_key_sees_the_model_but_may_not_predict(live_server, keys):
    headers = bearer(keys["read"])
    assert httpx.get(f"{live_server.url}{MODEL}", headers=headers).status_code == 200
    for path, body in ((PREDICT, ROW), (BATCH, [ROW])):
        response = httpx.post(f"{live_server.url}{path}", headers=headers, json=body)
        assert "may not ask for predictions" in assert_error(response, 403, "forbidden")


def test_a_prediction_is_logged_with_the_key_that_asked_and_no_values(live_server):
    name = f"icu-logged-{time.monotonic_ns()}"
    headers = bearer(live_server.create_key(name, "predict"))
    response = httpx.post(f"{live_server.url}{PREDICT}", headers=headers, json=ROW)
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 10
    while not (lines := [line for line in live_server.log().splitlines() if name in line]):
        assert time.monotonic() < deadline, "no log line names the key"
        time.sleep(0.1)
    (raw,) = [line for line in lines if "icu_prediction" in line]
    logged = json.loads(raw[raw.index("{") :])
    assert (logged["client"], logged["route"], logged["rows"]) == (name, "predict", 1)
    assert not any(column in raw for column in ROW)  # no patient value is logged


# --- one row


def test_a_row_is_answered_as_the_core_predicts_it_with_a_valid_risk_assessment(client):
    response = client.post(PREDICT, json=ROW)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert {k: answer[k] for k in ("probability", "label", "top_features")} == core_answers([ROW])[
        0
    ]
    model = client.get(MODEL).json()
    assert answer["threshold"] == model["threshold"]
    assert answer["model"] == {k: model[k] for k in ("backend", "version", "training_data_hash")}
    resource = answer["fhir"]
    check_risk_assessment(resource)  # fhir.resources and the project's checks
    assert resource["prediction"][0]["probabilityDecimal"] == answer["probability"]
    assert resource["identifier"] == [  # what the FHIR server finds it by (test_fhir_facade.py)
        {"system": ICU_PREDICTION_SYSTEM, "value": resource["id"].removeprefix("risk-")}
    ]
    by_id = {f"#{c['id']}": c for c in resource["contained"]}
    performer = by_id[resource["performer"]["reference"]]
    assert performer["resourceType"] == "Device"
    assert {
        "system": "urn:aistack:icu-training-data-sha256",
        "value": model["training_data_hash"],
    } in (performer["identifier"])
    basis = [by_id[b["reference"]] for b in resource["basis"]]
    assert {o["code"]["coding"][0]["code"] for o in basis} == {
        "RESPIRATORY_RATE_MAX",
        "OXYGEN_SATURATION_MIN",
        "PCR_MEDIAN",
    }  # the lab and vital values given; LINFOCITOS_MEDIAN was missing
    assert all(o["resourceType"] == "Observation" for o in basis)


def test_missing_values_are_answered(client):
    rows = [{"AGE_PERCENTIL": 30}, {"GENDER": None, "PCR_MEDIAN": ""}]
    for row, expected in zip(rows, core_answers(rows), strict=True):
        response = client.post(PREDICT, json=row)
        assert response.status_code == 200, response.text
        assert response.json()["probability"] == expected["probability"]


def test_unknown_fields_are_a_422_naming_them(client):
    message = assert_error(
        client.post(PREDICT, json={"PCR_MEDAN": 0.1, "SHOE_SIZE": 9}), 422, "invalid_request"
    )
    assert "'PCR_MEDAN' (did you mean 'PCR_MEDIAN'?)" in message and "'SHOE_SIZE'" in message


@pytest.mark.parametrize("value", [[0.1], {"v": 0.1}, "abc", True, "NaN"])
def test_values_of_the_wrong_type_are_a_422_naming_the_column(client, value):
    message = assert_error(client.post(PREDICT, json={"PCR_MEDIAN": value}), 422, "invalid_request")
    assert "PCR_MEDIAN=" in message


@pytest.mark.parametrize("document", [[ROW], "a row", 1, {}])
def test_a_body_that_is_not_one_non_empty_object_is_a_422(client, document):
    assert_error(client.post(PREDICT, json=document), 422, "invalid_request")


def test_bad_json_is_a_400_and_other_types_a_415(client):
    bad = client.post(
        PREDICT, content=b'{"GENDER": 1', headers={"content-type": "application/json"}
    )
    assert_error(bad, 400, "invalid_json")
    form = client.post(PREDICT, data={"GENDER": "1"})
    assert_error(form, 415, "unsupported_media_type")


# --- batches


def test_a_json_list_is_answered_row_by_row(client):
    rows = [ROW, {"AGE_PERCENTIL": "Above 90th"}, {"HEART_RATE_MEAN": 0.3}]
    response = client.post(BATCH, json=rows)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["count"] == 3 and answer["contribution_unit"] == "log-odds"
    for i, (got, want) in enumerate(zip(answer["predictions"], core_answers(rows), strict=True)):
        assert got["row"] == i + 1
        assert {k: got[k] for k in want} == want


def test_a_csv_body_and_a_csv_upload_are_answered_alike(client):
    csv = b"AGE_PERCENTIL,RESPIRATORY_RATE_MAX,PCR_MEDIAN\n70th,-0.2,-0.85\n20th,,0.1\n"
    as_body = client.post(BATCH, content=csv, headers={"content-type": "text/csv"})
    as_upload = client.post(BATCH, files={"file": ("rows.csv", csv, "text/csv")})
    assert as_body.status_code == as_upload.status_code == 200, (as_body.text, as_upload.text)
    assert as_body.json() == as_upload.json()
    rows = [
        {"AGE_PERCENTIL": "70th", "RESPIRATORY_RATE_MAX": -0.2, "PCR_MEDIAN": -0.85},
        {"AGE_PERCENTIL": "20th", "PCR_MEDIAN": 0.1},
    ]
    expected = core_answers(rows)
    assert [p["probability"] for p in as_body.json()["predictions"]] == [
        e["probability"] for e in expected
    ]


def test_a_csv_with_an_unknown_header_is_a_422_naming_it(client):
    csv = b"AGE_PERCENTIL,TEMPERATURA_MAX\n70th,0.1\n"
    response = client.post(BATCH, content=csv, headers={"content-type": "text/csv"})
    assert "'TEMPERATURA_MAX' (did you mean 'TEMPERATURE_MAX'?)" in assert_error(
        response, 422, "invalid_request"
    )


def test_a_batch_over_the_cap_is_a_413_naming_it(client):
    rows = [{"GENDER": 1}] * 10_001
    message = assert_error(client.post(BATCH, json=rows), 413, "payload_too_large")
    assert "at most 10000 rows" in message
    csv = b"GENDER\n" + b"1\n" * 10_001
    response = client.post(BATCH, content=csv, headers={"content-type": "text/csv"})
    assert "at most 10000 rows" in assert_error(response, 413, "payload_too_large")


def test_empty_batches_are_a_422(client):
    assert_error(client.post(BATCH, json=[]), 422, "invalid_request")
    header_only = client.post(BATCH, content=b"GENDER\n", headers={"content-type": "text/csv"})
    assert_error(header_only, 422, "invalid_request")


# --- what the service publishes about itself


def test_the_openapi_document_declares_the_routes_bodies_and_errors(live_server):
    schema = httpx.get(f"{live_server.url}/openapi.json").json()
    operations = {
        ("get", MODEL): "icu_model",
        ("post", PREDICT): "icu_predict",
        ("post", BATCH): "icu_predict_batch",
    }
    for (method, path), operation_id in operations.items():
        operation = schema["paths"][path][method]
        assert operation["operationId"] == operation_id
        assert operation["security"] and {"401", "403", "429", "503"} <= set(operation["responses"])
    predict_body = schema["paths"][PREDICT]["post"]["requestBody"]["content"]
    assert set(predict_body) == {"application/json"}
    reference = predict_body["application/json"]["schema"]["$ref"]
    row = schema["components"]["schemas"][reference.rsplit("/", 1)[1]]  # one copy, referred to
    assert row["additionalProperties"] is False and "PCR_MEDIAN" in row["properties"]
    batch_body = schema["paths"][BATCH]["post"]["requestBody"]["content"]
    assert set(batch_body) == {"application/json", "text/csv", "multipart/form-data"}
    assert batch_body["application/json"]["schema"]["items"] == {"$ref": reference}
    assert {"400", "413", "415", "422"} <= set(schema["paths"][BATCH]["post"]["responses"])


def documented_examples(needle: str) -> list[str]:
    """The ```sh blocks of docs/ICU.md that name ``needle``."""
    return [
        e for e in re.findall(r"```sh\n(.*?)```", ICU_DOC.read_text(), re.DOTALL) if needle in e
    ]


def run_example(example: str, url: str, key: str, cwd: Path) -> dict:
    run = subprocess.run(
        ["bash", "-c", example.replace("http://127.0.0.1:8088", url)],
        cwd=cwd,
        env={"AISTACK_API_KEY": key, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_documented_curl_examples_work(live_server, keys, tmp_path):
    examples = documented_examples("/icu/api/v1/")
    assert len(examples) == 3
    answers = [run_example(e, live_server.url, keys["predict"], tmp_path) for e in examples]
    assert answers[0]["fhir"]["resourceType"] == "RiskAssessment"
    assert f'"probability": {answers[0]["probability"]}' in ICU_DOC.read_text()
    assert answers[1]["count"] == answers[2]["count"] == 2
    (search,) = documented_examples("/fhir/r4/RiskAssessment")
    found = run_example(search, live_server.url, keys["read"], tmp_path)  # a read key reads it
    assert found["resourceType"] == "Bundle" and found["total"] >= 1  # the first example's
    for entry in found["entry"]:
        assert entry["resource"]["subject"]["identifier"]["value"] == "17"


def test_an_icu_model_that_cannot_load_is_a_503_on_the_icu_routes_only(tmp_path):
    """In-process, without the X-ray loader: the ICU failure is reported, nothing else."""
    settings = Settings(var_dir=tmp_path / "var", auth=False, icu_model_dir=tmp_path / "none")
    runtime = Runtime(settings)
    with TestClient(create_app(settings, runtime)) as app:  # lifespan: the X-ray model loads
        for method, path in (("GET", MODEL), ("POST", PREDICT), ("POST", BATCH)):
            response = app.request(method, path, json=ROW)
            message = assert_error(response, 503, "not_ready")
            assert "ICU model failed to load" in message and "none" in message
            assert response.headers["retry-after"]
        assert runtime.wait_ready(60) and app.get("/readyz").status_code == 200
