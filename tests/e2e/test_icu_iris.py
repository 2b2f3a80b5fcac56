"""The ICU predictor of the IRIS runtime end to end: HAProxy → Web Gateway → AIStack.REST.ICU
→ IcuPredictService → IntegratedML (SQL PREDICT / PROBABILITY on the installer's model).

Against a running stack (``docker compose up`` with the Sirio-Libanes workbook mounted, see
docs/IRIS.md) at ``AISTACK_IRIS_URL`` (e.g. http://localhost:8088), as ``AISTACK_IRIS_USER`` /
``AISTACK_IRIS_PASSWORD`` (an IRIS user with the AIStackPredict role). The installer trains
the model after the container starts, which takes minutes: the first test waits for the
model for up to ``AISTACK_ICU_WAIT_S`` seconds (600). With ``AISTACK_IRIS_DSN`` also set
(the superserver, e.g. iris://_SYSTEM:<password>@localhost:1972/AISTACK), the statements
docs/IRIS.md gives for the Management Portal's SQL page run too. Without ``AISTACK_IRIS_URL``
every test is skipped: nothing here runs without the stack.
"""

from __future__ import annotations

import csv
import io
import os
import time
from typing import Any

import httpx
import pytest

from tests.e2e.stack import IRIS_URL, TIMEOUT

pytestmark = pytest.mark.iris

IRIS_DSN = os.environ.get("AISTACK_IRIS_DSN", "")
WAIT_S = float(os.environ.get("AISTACK_ICU_WAIT_S", "600"))
MODEL = "/icu/api/v1/model"
PREDICT = "/icu/api/v1/predict"
BATCH = "/icu/api/v1/predict/batch"


@pytest.fixture(scope="module")
def model(caller: httpx.Client) -> dict[str, Any]:
    """The model, once the installer has trained it (a 503 until then)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        response = caller.get(MODEL)
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert response.status_code == 200, (
        f"{response.status_code} {response.text}: is the workbook mounted "
        "(AISTACK_ICU_DATA), and did EnsureIcuModel train? (docker compose logs iris)"
    )
    return response.json()


def form_row(model: dict[str, Any]) -> dict[str, Any]:
    """The web form's fields filled in (values on the workbook's [-1, 1] scale)."""
    row: dict[str, Any] = {f["name"]: -0.5 for f in model["form_fields"]}
    row["AGE_PERCENTIL"] = "60th"
    return row


def error_of(response: httpx.Response) -> dict[str, str]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]


def test_the_model_is_integratedml_s_trained_and_validated(model: dict[str, Any]):
    assert model["backend"] == "integratedml"
    assert model["version"].startswith("IcuAdmissionT")
    assert model["threshold"] == 0.5 and model["contribution_unit"] == "probability"
    assert set(model["metrics"]) <= {"ROC-AUC", "Precision", "Recall", "F-Measure", "Accuracy"}
    assert model["metrics"] and len(model["features"]) > 200
    assert len(model["form_fields"]) == 8


def test_one_prediction_with_its_risk_assessment(caller, model):
    row = {**form_row(model), "PATIENT_VISIT_IDENTIFIER": 12}
    response = caller.post(PREDICT, json=row)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert 0.0 <= answer["probability"] <= 1.0
    assert answer["label"] == int(answer["probability"] >= answer["threshold"])
    assert answer["model"]["version"] == model["version"]
    risk = answer["fhir"]
    assert risk["resourceType"] == "RiskAssessment" and risk["status"] == "final"
    assert risk["prediction"][0]["probabilityDecimal"] == answer["probability"]
    assert risk["subject"]["identifier"]["value"] == "12"
    assert risk["basis"] and risk["performer"]["reference"].startswith("#")


def test_a_batch_as_json_csv_and_upload(caller, model):
    rows = [form_row(model), {**form_row(model), "AGE_PERCENTIL": "Above 90th"}]
    as_json = caller.post(BATCH, json=rows)
    assert as_json.status_code == 200, as_json.text
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    data = out.getvalue().encode()
    as_csv = caller.post(BATCH, content=data, headers={"content-type": "text/csv"})
    upload = caller.post(BATCH, files={"file": ("rows.csv", data, "text/csv")})
    for response in (as_csv, upload):
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == as_json.json()["predictions"]
    assert as_json.json()["count"] == 2


def test_bad_input_and_missing_credentials_answer_in_the_project_format(caller, model):
    unknown = caller.post(PREDICT, json={"PCR_MEDIN": 0.1})
    assert unknown.status_code == 422, unknown.text
    assert "PCR_MEDIN" in error_of(unknown)["message"]
    wrong_type = caller.post(BATCH, content=b"x", headers={"content-type": "image/png"})
    assert (wrong_type.status_code, error_of(wrong_type)["code"]) == (415, "unsupported_media_type")
    with httpx.Client(base_url=IRIS_URL, timeout=TIMEOUT) as anonymous:
        refused = anonymous.post(PREDICT, json=form_row(model))
    assert (refused.status_code, error_of(refused)["code"]) == (401, "unauthorized")


def test_the_management_portal_statements_run_as_documented(model):
    """What docs/IRIS.md gives for the SQL page (inspect, predict), over the superserver."""
    if not IRIS_DSN:
        pytest.skip("AISTACK_IRIS_DSN is not set: it names the stack's superserver")
    from aistack.icu.integratedml import Statement, connect, run  # noqa: PLC0415
    from aistack.interop.icu_setup import portal_sql  # noqa: PLC0415

    connection = connect(IRIS_DSN)
    statements = portal_sql()
    trained = run(connection, Statement(statements["inspect"][0]))
    assert model["version"] in [str(r[1]) for r in trained]
    assert run(connection, Statement(statements["inspect"][1]))  # the validation metrics
    assert run(connection, Statement(statements["inspect"][2]))[0][1] == model["version"]
    predicted = run(connection, Statement(statements["predict"][0]))
    assert predicted and all(0.0 <= float(r[1]) <= 1.0 for r in predicted)
