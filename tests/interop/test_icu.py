"""The ICU predictor in the IRIS runtime: REST → IcuPredictService → IntegratedML → SQL.

IRIS is doubled twice over, and nothing else: IoP's handle (``iris_double``) plays the
production, and ``EmbeddedIrisDouble`` answers ``iris_ep.install().dbapi.connect(mode=
"embedded")`` with a DB-API double of IntegratedML (tests/doubles/iris_dbapi.py) on which the
installer's own code (``icu_setup.ensure_model``) has trained the model, with the committed
local model installed as the double's trained model. The REST layer, the business service,
the operation, every message's serialization, the core's ``IcuService`` and
``IntegratedMLPredictor`` and its SQL run as they do in IRIS. The RiskAssessment of a single
prediction goes on through IRIS's queue to the ``FhirPublisher`` operation, which publishes it
over real HTTP to a double of IRIS for Health's FHIR endpoint (``FhirServerDouble``), behind
``FhirFront``, the double of the network in front of it that fails or goes away on demand.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import iris_ep
import numpy as np
import pytest
import sqlalchemy as sa
from iop.messages.dispatch import dispatch_deserializer, dispatch_serializer

from aistack.errors import AistackError, InvalidRequest
from aistack.fhir.publish import FhirPublisher, PublishError, PublishRejected
from aistack.http_contract import REQUEST_ID_HEADER
from aistack.icu import integratedml as iml
from aistack.icu.dataset import LABEL, PreparedTable, load_prepared
from aistack.icu.defaults import WORKBOOK_NAME
from aistack.icu.local import LocalPredictor, load_local
from aistack.icu.service import IcuService
from aistack.interop import icu_setup, rest, wiring
from aistack.interop.icu import ICU_OPERATION, NOT_TRAINED, IntegratedMLOperation
from aistack.interop.messages import (
    ErrorReply,
    FhirResourcePublishReply,
    FhirResourcePublishRequest,
    IcuReply,
    IcuRequest,
)
from aistack.xray.request_body import parse_multipart
from tests.conftest import DATA_DIR
from tests.doubles.iris_dbapi import (
    EmbeddedConnectionDouble,
    EmbeddedIrisDouble,
    IrisDbApiDouble,
)
from tests.interop.fhir_server_double import FhirServerDouble
from tests.interop.iris_double import CspRequestDouble, HostDouble, MessageDouble
from tests.interop.test_fhir_operation import PUBLISHER, deliver, iris_action, queued_publish
from tests.unit.test_fhir_publish import FhirFront

WORKBOOK = DATA_DIR / "icu" / WORKBOOK_NAME
MODEL = "/icu/api/v1/model"
PREDICT = "/icu/api/v1/predict"
BATCH = "/icu/api/v1/predict/batch"
OPERATION_OF = {MODEL: "icu_model", PREDICT: "icu_predict", BATCH: "icu_predict_batch"}
JSON_TYPE = "application/json"
NOWHERE = "http://127.0.0.1:9"
"""The TF Serving operations' address: the ICU tests send them nothing."""
VARYING_FHIR = {"id", "identifier", "occurrenceDateTime"}
"""What differs between two RiskAssessments of the same prediction (a fresh id and the
identifier made of it, the time)."""
ICU_PREDICTION_SYSTEM = "urn:aistack:icu-prediction"
NAMES = iml.IrisNames()


@pytest.fixture(scope="module")
def table() -> PreparedTable:
    if not WORKBOOK.is_file():
        pytest.skip(f"the ICU workbook is not at {WORKBOOK}")
    return load_prepared(WORKBOOK)


@pytest.fixture(scope="module")
def local() -> LocalPredictor:
    return load_local()


@pytest.fixture(scope="module")
def rows(table: PreparedTable) -> list[dict[str, Any]]:
    """Six patients' first-window rows as a client sends them (missing values as null)."""
    frame = table.first_window().drop(columns=[LABEL]).head(6)
    return [
        {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


@pytest.fixture
def database(table: PreparedTable, local: LocalPredictor) -> IrisDbApiDouble:
    """IRIS with the ICU model trained by the installer's code; the committed local model
    answers for IntegratedML's trained model, so the probabilities are known."""
    db = IrisDbApiDouble(trained_scorer=local.model.probabilities)
    result = icu_setup.ensure_model(str(WORKBOOK), connect=lambda: EmbeddedConnectionDouble(db))
    assert result.status == "trained", result
    return db


@pytest.fixture
def embedded(database: IrisDbApiDouble, monkeypatch: pytest.MonkeyPatch) -> EmbeddedIrisDouble:
    """``iris_ep.install()`` inside IRIS: its embedded DB-API reaches ``database``."""
    double = EmbeddedIrisDouble(database)
    monkeypatch.setattr(iris_ep, "install", lambda *args, **kwargs: double)
    return double


@pytest.fixture
def running(production, embedded):
    return production(NOWHERE, NOWHERE)


def request(path: str, body: bytes = b"", content_type: str = JSON_TYPE) -> dict[str, Any]:
    method = "GET" if path == MODEL else "POST"
    return {"method": method, "url": path, "content_type": content_type, "body": body}


def call(path: str, user: str = "UnknownUser", roles: str = "", **content: Any) -> rest.Reply:
    """One request through the REST entry, as the ICU class's route hands it over."""
    csp = CspRequestDouble(**request(path, **content))
    return rest.handle(OPERATION_OF[path], csp, user, roles)


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


def as_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return out.getvalue().encode()


def multipart(**content: Any) -> dict[str, Any]:
    """(body, content type) of a form exactly as an HTTP client sends it."""
    sent = httpx.Request("POST", "http://iris.test/", **content)
    return {"body": sent.read(), "content_type": sent.headers["content-type"]}


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer as JSON text carries it, without the RiskAssessment's id and time."""
    answer = json.loads(rest.json_text(answer))
    if "fhir" in answer:
        answer["fhir"] = {k: v for k, v in answer["fhir"].items() if k not in VARYING_FHIR}
    return answer


def error_json(error: AistackError) -> tuple[int, dict[str, Any]]:
    return error.status, {"error": {"code": error.code, "message": error.message}}


def service_over(db: IrisDbApiDouble, max_batch_rows: int = 10_000) -> IcuService:
    """The core's service over the same IntegratedML model, outside the production."""
    return IcuService(iml.IntegratedMLPredictor.open(db), max_batch_rows=max_batch_rows)


# -- the answers ------------------------------------------------------------------------------


def test_the_production_answers_with_the_core_service_s_json(running, database, rows):
    service = service_over(database)
    one = as_json(rows[0])
    reply = call(PREDICT, body=one)
    assert (reply.status, reply.content_type) == (200, JSON_TYPE), reply.body
    got = json.loads(reply.body)
    assert comparable(got) == comparable(service.predict_json(one, JSON_TYPE))
    assert got["fhir"]["resourceType"] == "RiskAssessment" and got["fhir"]["id"]
    assert got["model"]["backend"] == "integratedml"
    assert got["contribution_unit"] == "probability"

    batches = {
        "JSON list": {"body": as_json(rows)},
        "CSV": {"body": as_csv(rows), "content_type": "text/csv"},
        "CSV in a form": multipart(files={"file": ("rows.csv", as_csv(rows), "text/csv")}),
    }
    expected = comparable(service.batch_json(as_json(rows), JSON_TYPE))
    for name, content in batches.items():
        reply = call(BATCH, **content)
        assert reply.status == 200, (name, reply.body)
        assert comparable(json.loads(reply.body)) == expected, name

    model = call(MODEL)
    assert json.loads(model.body) == comparable(service.model_json())
    assert json.loads(model.body)["version"].startswith("IcuAdmissionT")


def test_probabilities_are_integratedml_s_which_are_the_local_model_s_here(running, rows, local):
    """The double's trained model is the committed local model: what SQL's PROBABILITY
    returned through the production is what the model computes in process."""
    reply = call(BATCH, body=as_json(rows))
    got = [p["probability"] for p in json.loads(reply.body)["predictions"]]
    np.testing.assert_allclose(got, local.predict_proba(rows), rtol=0, atol=1e-12)
    labels = [p["label"] for p in json.loads(reply.body)["predictions"]]
    assert labels == [int(p >= iml.IRIS_THRESHOLD) for p in got]  # PREDICT's rule


def test_the_sql_the_operation_sends_reads_as_documented_and_compiles_for_iris(
    running, database, embedded, rows
):
    before = len(database.statements)
    assert call(PREDICT, body=as_json(rows[1])).status == 200
    sent = database.statements[before:]
    opened = iml.IntegratedMLPredictor.open(database)
    trained, features = opened.trained_model, opened.metadata.features
    scoring = iml._table(NAMES, NAMES.scoring_table, features, "scoring")

    inserts = [(sql, p) for sql, p in sent if sql.startswith("INSERT")]
    scores = [(sql, p) for sql, p in sent if "PROBABILITY(" in sql]
    deletes = [(sql, p) for sql, p in sent if sql.startswith("DELETE")]
    assert inserts and len(inserts) == len(scores) == len(deletes)  # one batch each time
    assert inserts[0][0] == iml.insert_sql(scoring).sql
    assert inserts[0][0].startswith('INSERT INTO "AIStackICU"."ScoringRows" ("BATCH_ID", ')
    for (score, params), (delete, delete_params) in zip(scores, deletes, strict=True):
        assert delete == iml.delete_batch_sql(scoring, str(params[0])).sql
        assert score == iml.score_sql(NAMES, trained, str(params[0])).sql
        assert score == (
            f'SELECT "ROW_NO", PREDICT(IcuAdmission USE {trained}) AS PREDICTED, '
            f"PROBABILITY(IcuAdmission USE {trained} FOR 1) AS PROBABILITY "
            'FROM "AIStackICU"."ScoringRows" WHERE "BATCH_ID" = ? ORDER BY "ROW_NO"'
        )
        assert re.fullmatch(r"[0-9a-f]{32}", str(params[0]))
        assert delete_params == params  # the batch scored is the batch deleted
    for sql, params in sent:  # every value bound, none in the text; each compiles for IRIS
        assert str(sa.text(sql).compile(dialect=iml.dialect())) == sql
        assert not re.search(r"\b0\.\d{3,}", sql), sql
        if not sql.startswith("INSERT"):
            assert sql.count("?") == len(params), sql
    # one embedded connection, opened at the first message and kept
    assert [c.closed for c in embedded.connections] == [False]
    assert call(MODEL).status == 200 and len(embedded.connections) == 1


# -- errors: the core's words, through the production ---------------------------------------

BAD = {
    "unknown column": (PREDICT, {"body": as_json({"PCR_MEDIN": 0.1, "AGE_ABOVE65": 1})}),
    "not a number": (PREDICT, {"body": as_json({"PCR_MEDIAN": "high"})}),
    "a boolean": (PREDICT, {"body": as_json({"AGE_ABOVE65": True})}),
    "a list to predict": (PREDICT, {"body": as_json([{"AGE_ABOVE65": 1}])}),
    "an empty object": (PREDICT, {"body": as_json({})}),
    "not JSON": (PREDICT, {"body": b"{nope"}),
    "empty body": (PREDICT, {"body": b""}),
    "NaN in JSON": (PREDICT, {"body": b'{"PCR_MEDIAN": NaN}'}),
    "text/plain": (PREDICT, {"body": b"PCR_MEDIAN=1", "content_type": "text/plain"}),
    "empty list": (BATCH, {"body": b"[]"}),
    "object to batch": (BATCH, {"body": as_json({"AGE_ABOVE65": 1})}),
    "empty CSV": (BATCH, {"body": b"", "content_type": "text/csv"}),
    "ragged CSV": (BATCH, {"body": b"AGE_ABOVE65,PCR_MEDIAN\n1\n", "content_type": "text/csv"}),
    "unknown CSV column": (BATCH, {"body": b"PCR_MEDIN\n1\n", "content_type": "text/csv"}),
    "form without file": (BATCH, multipart(data={"rows": "AGE_ABOVE65\n1\n"})),
    "form with another field": (
        BATCH,
        multipart(files={"file": ("a.csv", b"AGE_ABOVE65\n1\n")}, data={"note": "x"}),
    ),
    "image to batch": (BATCH, {"body": b"\x89PNG", "content_type": "image/png"}),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_the_core_service_s_error(running, database, case):
    path, content = BAD[case]
    service = service_over(database)
    answer = service.predict_json if path == PREDICT else service.batch_json
    with pytest.raises(AistackError) as raised:
        answer(content["body"], content.get("content_type", JSON_TYPE))
    reply = call(path, **content)
    assert 400 <= reply.status < 500, reply.body
    assert (reply.status, json.loads(reply.body)) == error_json(raised.value)


def test_unknown_columns_are_a_422_naming_them(running):
    reply = call(PREDICT, body=as_json({"PCR_MEDIN": 0.1, "LACTATE_MEDAIN": 2}))
    error = json.loads(reply.body)["error"]
    assert (reply.status, error["code"]) == (422, "invalid_request")
    assert "'LACTATE_MEDAIN'" in error["message"] and "'PCR_MEDIN'" in error["message"]
    assert "did you mean 'PCR_MEDIAN'?" in error["message"]


def test_a_batch_over_the_cap_is_a_413_naming_it(running, database, monkeypatch):
    monkeypatch.setenv("AISTACK_ICU_MAX_BATCH_ROWS", "2")
    wiring.reset()
    reply = call(BATCH, body=as_json([{"AGE_ABOVE65": 1}] * 3))
    with pytest.raises(AistackError) as raised:
        service_over(database, max_batch_rows=2).batch_json(as_json([{}] * 3), JSON_TYPE)
    assert (reply.status, json.loads(reply.body)) == error_json(raised.value)
    assert reply.status == 413 and "icu_max_batch_rows" in reply.body


# -- who may call -----------------------------------------------------------------------------


@pytest.fixture
def auth_on(monkeypatch: pytest.MonkeyPatch, var_dir) -> None:
    monkeypatch.setenv("AISTACK_AUTH", "on")
    wiring.reset()


def test_iris_roles_decide_as_for_every_other_route(running, auth_on, rows):
    body = as_json(rows[0])
    anonymous = call(PREDICT, body=body)
    assert anonymous.status == 401 and anonymous.headers["WWW-Authenticate"]
    assert call(MODEL).status == 401
    assert call(BATCH, body=as_json(rows)).status == 401

    assert call(MODEL, "nurse", "%DB_USER").status == 403
    refused = call(PREDICT, "carol", "AIStackRead", body=body)
    assert (refused.status, json.loads(refused.body)["error"]) == (
        403,
        {
            "code": "forbidden",
            "message": "the user 'carol' (role read) may not ask for predictions",
        },
    )
    assert call(BATCH, "carol", "AIStackRead", body=body).status == 403
    assert call(MODEL, "carol", "AIStackRead").status == 200  # reading the model: any role

    assert call(PREDICT, "alice", "%DB_USER,AIStackPredict", body=body).status == 200
    assert call(BATCH, "alice", "AIStackPredict", body=as_json(rows[:2])).status == 200
    assert call(MODEL, "alice", "AIStackPredict").status == 200
    assert call(PREDICT, "root", "AIStackAdmin", body=body).status == 200


def test_the_operation_logs_who_asked_as_the_standalone_does(running, auth_on, rows, caplog):
    with caplog.at_level(logging.INFO, logger="aistack.events"):
        reply = call(BATCH, "alice", "AIStackPredict", body=as_json(rows[:3]))
    assert reply.status == 200, reply.body
    (line,) = [json.loads(r.message) for r in caplog.records if "icu_prediction" in r.message]
    assert (line["client"], line["route"], line["rows"]) == ("alice", "batch", 3)
    assert line["backend"] == "integratedml"


# -- the operation's life: not trained yet, trained again -------------------------------------


def test_before_the_installer_trained_a_model_the_routes_say_so_then_answer(
    production, monkeypatch, table, local, rows
):
    empty = IrisDbApiDouble(trained_scorer=local.model.probabilities)
    embedded = EmbeddedIrisDouble(empty)
    monkeypatch.setattr(iris_ep, "install", lambda *args, **kwargs: embedded)
    production(NOWHERE, NOWHERE)

    waiting = call(PREDICT, body=as_json(rows[0]))
    error = json.loads(waiting.body)["error"]
    assert (waiting.status, error["code"]) == (503, "not_ready")
    assert error["message"].startswith(NOT_TRAINED) and waiting.headers["Retry-After"] == "5"
    assert all(c.closed for c in embedded.connections)  # nothing left open

    assert (
        icu_setup.ensure_model(
            str(WORKBOOK), connect=lambda: EmbeddedConnectionDouble(empty)
        ).status
        == "trained"
    )
    assert call(PREDICT, body=as_json(rows[0])).status == 200  # no restart needed


def test_a_model_trained_again_is_picked_up_by_the_running_operation(
    running, iris, database, table, rows
):
    first = json.loads(call(PREDICT, body=as_json(rows[0])).body)["model"]["version"]
    recorded = iml.IntegratedMLPredictor.open(database).metadata.details["recorded_at"]
    # Trained model names and records carry the second they were made in: train again in a
    # later second, so that "the latest record" names one model.
    while datetime.now(UTC).replace(microsecond=0) <= datetime.fromisoformat(str(recorded)):
        time.sleep(0.05)
    iml.train_integratedml(database, table)  # DROP MODEL: the first trained model is gone

    reply = call(PREDICT, body=as_json(rows[0]))
    assert reply.status == 200, reply.body
    again = json.loads(reply.body)["model"]["version"]
    assert again != first and again.startswith("IcuAdmissionT")
    assert any("reopening the ICU model" in text for _, _, text in iris.event_log)


def test_a_trained_model_can_be_pinned_by_the_operation_s_setting(production, embedded, database):
    trained = iml.IntegratedMLPredictor.open(database).trained_model
    running = production(NOWHERE, NOWHERE)
    running.overrides[ICU_OPERATION] = {"trained_model": trained}
    assert json.loads(call(MODEL).body)["version"] == trained
    running.stop()
    running = production(NOWHERE, NOWHERE)
    running.overrides[ICU_OPERATION] = {"trained_model": "IcuAdmissionT19990101000000"}
    reply = call(MODEL)
    assert reply.status == 503 and "IcuAdmissionT19990101000000" in reply.body


# -- when the production cannot answer ---------------------------------------------------------


def test_a_production_that_cannot_deliver_is_a_503_and_no_answer_a_504(running, monkeypatch):
    def undeliverable(target: str, message: Any) -> Any:
        raise RuntimeError("ERROR #6104: the item IntegratedML is not running")

    monkeypatch.setattr(running, "deliver", undeliverable)
    reply = call(MODEL)
    assert (reply.status, json.loads(reply.body)["error"]["code"]) == (503, "backend_unavailable")
    assert "not running" in json.loads(reply.body)["error"]["message"]

    monkeypatch.setattr(running, "deliver", lambda target, message: None)  # IRIS's timeout
    reply = call(MODEL)
    assert (reply.status, json.loads(reply.body)["error"]["code"]) == (504, "deadline_exceeded")


def test_a_failing_statement_is_a_502_and_a_line_in_the_event_log(running, iris, database, rows):
    assert call(MODEL).status == 200  # opened
    database.fail_scoring = "SQLCODE -400: Fatal error occurred"
    reply = call(PREDICT, body=as_json(rows[0]))
    error = json.loads(reply.body)["error"]
    assert (reply.status, error["code"]) == (502, "backend_error")
    assert "SQLCODE -400" in error["message"]
    logged = [text for _, _, text in iris.event_log]
    assert any("reopening the ICU model" in text for text in logged)  # tried once more
    assert any("ICU predict: backend_error" in text for text in logged)
    database.fail_scoring = None
    assert call(PREDICT, body=as_json(rows[0])).status == 200  # and back once IRIS is


# -- messages and the request body ------------------------------------------------------------


def test_icu_messages_survive_iris_storage_byte_for_byte_and_float_for_float(iris):
    body = bytes(range(256)) * 3
    sent = IcuRequest(call="predict_batch", body=body, content_type="text/csv", request_id="r1")
    assert dispatch_deserializer(dispatch_serializer(sent)) == sent
    answer = {"probability": 0.1 + 0.2, "tiny": 5e-324, "label": 1, "values": [None, 1.0, -0.0]}
    back = dispatch_deserializer(dispatch_serializer(IcuReply(answer=answer)))
    assert rest.json_text(back.answer) == rest.json_text(answer)
    failed = IcuReply(error=ErrorReply.from_error(InvalidRequest("unknown column 'X'")))
    assert dispatch_deserializer(dispatch_serializer(failed)).error.to_error().status == 422


def test_a_form_csp_has_parsed_is_handed_on_as_the_client_sent_it():
    form = multipart(
        files={"file": ("rows.csv", b"AGE_ABOVE65\n1\n\xff\n", "text/csv")},
        data={"note": "a", "other": ["1", "2"]},
    )
    csp = CspRequestDouble("POST", f"{BATCH}?note=query", form["content_type"], form["body"])
    body, content_type = rest.CspRequest(csp).body_as_sent()
    assert content_type.startswith("multipart/form-data; boundary=")
    assert parse_multipart(body, content_type) == parse_multipart(
        form["body"], form["content_type"]
    )
    raw = CspRequestDouble("POST", BATCH, "text/csv", b"A\n1\n")
    assert rest.CspRequest(raw).body_as_sent() == (b"A\n1\n", "text/csv")


# -- the installer's step ---------------------------------------------------------------------


def test_the_installer_step_is_skipped_without_a_workbook(monkeypatch, tmp_path):
    connected: list[str] = []
    monkeypatch.delenv(icu_setup.WORKBOOK_ENV, raising=False)
    result = icu_setup.ensure_model(connect=lambda: connected.append("connect"))
    assert result.status == "skipped" and icu_setup.WORKBOOK_ENV in result.message
    missing = tmp_path / "absent.xlsx"
    monkeypatch.setenv(icu_setup.WORKBOOK_ENV, str(missing))
    result = icu_setup.ensure_model(connect=lambda: connected.append("connect"))
    assert result.status == "skipped" and str(missing) in result.message
    assert "mounted" in result.message and connected == []


def test_the_installer_step_trains_once_over_the_embedded_connection(monkeypatch, table, local):
    db = IrisDbApiDouble(trained_scorer=local.model.probabilities)
    embedded = EmbeddedIrisDouble(db)
    monkeypatch.setattr(iris_ep, "install", lambda *args, **kwargs: embedded)
    monkeypatch.setenv(icu_setup.WORKBOOK_ENV, str(WORKBOOK))

    trained = icu_setup.ensure_model()
    assert trained.status == "trained" and table.data_hash[:12] in trained.message
    verbs = [" ".join(sql.split()[:2]) for sql, _ in db.statements]
    assert verbs.index("CREATE MODEL") < verbs.index("TRAIN MODEL") < verbs.index("VALIDATE MODEL")
    assert len(db.tables["AIStackICU.TrainRows"][1]) + len(
        db.tables["AIStackICU.HoldoutRows"][1]
    ) == len(table.first_window())
    model = iml.IntegratedMLPredictor.open(db).metadata
    assert model.training_data_hash == table.data_hash and model.features == table.features

    again = icu_setup.ensure_model()
    assert again.status == "current" and model.version in again.message
    assert [" ".join(sql.split()[:2]) for sql, _ in db.statements].count("TRAIN MODEL") == 1
    assert [c.closed for c in embedded.connections] == [True, True]


def test_the_operation_is_declared_with_its_documented_settings():
    from aistack.interop.settings import prod  # noqa: PLC0415 - the graph under test

    items = {item.name: item for item in prod.items}
    assert items[ICU_OPERATION].component_class is IntegratedMLOperation
    assert items[ICU_OPERATION].pool_size == 1
    assert items[ICU_OPERATION].host_settings == {"FhirPublisher": "FhirPublisher"}  # target
    assert items["IcuPredictService"].pool_size == 0
    assert items["IcuPredictService"].host_settings["timeout_s"] == 55.0
    host = {s["@Name"]: s["#text"] for s in items[ICU_OPERATION].other_settings}
    assert host == {"RetryInterval": "1", "FailureTimeout": "15", "AlertOnError": "1"}


# -- parity with the standalone runtime -------------------------------------------------------


def both(standalone, path: str, **content: Any) -> tuple[httpx.Response, rest.Reply]:
    """The same request to the standalone app and to the IRIS REST entry."""
    sent = request(path, **content)
    headers = {"content-type": sent["content_type"]} if sent["content_type"] else {}
    if sent["method"] == "GET":
        answer = standalone.get(path)
    else:
        answer = standalone.post(path, content=sent["body"], headers=headers)
    return answer, call(path, **content)


@pytest.mark.parametrize("case", sorted(BAD))
def test_both_runtimes_refuse_bad_input_alike(standalone, running, case):
    path, content = BAD[case]
    answer, reply = both(standalone, path, **content)
    assert 400 <= reply.status < 500, reply.body
    assert (reply.status, json.loads(reply.body)) == (answer.status_code, answer.json())


def test_both_runtimes_refuse_a_batch_over_the_default_cap_alike(standalone, running):
    answer, reply = both(standalone, BATCH, body=as_json([{}] * 10_001))
    assert (reply.status, json.loads(reply.body)) == (answer.status_code, answer.json())
    assert reply.status == 413


def test_both_runtimes_answer_in_the_same_shape_with_the_same_probabilities(
    standalone, running, rows
):
    """The backends differ (the committed model in process; IntegratedML in IRIS, whose
    trained model is that same model here): the probabilities, the RiskAssessment's basis and
    subject, and the shape of every answer are the same; the model, its threshold, the
    contributions (TreeSHAP in log-odds, occlusion in probability) are each backend's."""
    answer, reply = both(standalone, PREDICT, body=as_json(rows[0]))
    assert answer.status_code == reply.status == 200, (answer.text, reply.body)
    local, iris = answer.json(), json.loads(reply.body)
    assert list(iris) == list(local)
    assert iris["probability"] == pytest.approx(local["probability"], abs=1e-12)
    assert (local["model"]["backend"], iris["model"]["backend"]) == ("local", "integratedml")
    assert [list(f) for f in iris["top_features"]] == [list(f) for f in local["top_features"]]
    fhir_local, fhir_iris = local["fhir"], iris["fhir"]
    assert set(fhir_iris) == set(fhir_local)
    for key in ("resourceType", "status", "subject", "basis", "meta"):
        assert fhir_iris[key] == fhir_local[key], key
    assert fhir_iris["prediction"][0]["probabilityDecimal"] == pytest.approx(
        fhir_local["prediction"][0]["probabilityDecimal"], abs=1e-12
    )
    observations = [r for r in fhir_local["contained"] if r["resourceType"] == "Observation"]
    assert observations and all(r in fhir_iris["contained"] for r in observations)

    answer, reply = both(standalone, BATCH, body=as_csv(rows), content_type="text/csv")
    local, iris = answer.json(), json.loads(reply.body)
    assert list(iris) == list(local) and iris["count"] == local["count"] == len(rows)
    assert [p["row"] for p in iris["predictions"]] == [p["row"] for p in local["predictions"]]
    np.testing.assert_allclose(
        [p["probability"] for p in iris["predictions"]],
        [p["probability"] for p in local["predictions"]],
        rtol=0,
        atol=1e-12,
    )

    answer, reply = both(standalone, MODEL)
    local, iris = answer.json(), json.loads(reply.body)
    assert list(iris) == list(local) and iris["features"] == local["features"]
    assert [f["name"] for f in iris["form_fields"]] == [f["name"] for f in local["form_fields"]]


# -- the RiskAssessment to the FHIR server, through IRIS's queue -------------------------------


@pytest.fixture
def fhir_server() -> Iterator[FhirServerDouble]:
    """IRIS for Health's FHIR endpoint, signing the publisher in as an IRIS user."""
    server = FhirServerDouble(user="AIStackFhirPublisher", password=uuid.uuid4().hex).start()
    yield server
    server.close()


@pytest.fixture
def publishing(
    monkeypatch: pytest.MonkeyPatch, var_dir, fhir_server: FhirServerDouble
) -> Iterator[FhirFront]:
    """The iris service's environment with publishing on, through the network double."""
    front = FhirFront(upstream=fhir_server.url).start()
    monkeypatch.setenv("AISTACK_FHIR_PUBLISH_URL", front.fhir_url)
    monkeypatch.setenv("AISTACK_FHIR_PUBLISH_USER", fhir_server.user)
    monkeypatch.setenv("AISTACK_FHIR_PUBLISH_PASSWORD", fhir_server.password)
    yield front
    front.close()


def risk_assessments(server: FhirServerDouble, token: str) -> list[dict[str, Any]]:
    """``GET [base]/RiskAssessment?identifier=`` on the server, as docs/IRIS.md searches."""
    answer = httpx.get(
        f"{server.fhir_url}/RiskAssessment",
        params={"identifier": token},
        auth=(server.user, server.password),
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    return [entry["resource"] for entry in answer.json()["entry"]]


def publishes(running) -> list[tuple[str, str, str]]:
    """What was sent to FhirPublisher, by whom and how."""
    return [sent for sent in running.sent if sent[1] == PUBLISHER]


def risk_token(resource: dict[str, Any]) -> str:
    """The RiskAssessment's identifier as a FHIR token (``system|value``)."""
    (identifier,) = resource["identifier"]
    assert identifier["system"] == ICU_PREDICTION_SYSTEM
    assert resource["id"] == f"risk-{identifier['value']}"
    return f"{ICU_PREDICTION_SYSTEM}|{identifier['value']}"


def test_a_single_prediction_queues_exactly_its_risk_assessment_for_the_publisher(
    running, publishing, database, rows
):
    body = as_json(rows[0])
    reply = call(PREDICT, body=body)
    assert reply.status == 200, reply.body
    answer = json.loads(reply.body)
    # The answer is the core service's, publishing or not.
    assert comparable(answer) == comparable(service_over(database).predict_json(body, JSON_TYPE))
    assert publishes(running) == [(ICU_OPERATION, PUBLISHER, "async")]
    _target, classname, text = queued_publish(running)
    stored = MessageDouble()  # the queue entry as IRIS hands it to the operation
    stored.classname, stored.json = classname, text
    queued = dispatch_deserializer(stored)
    assert isinstance(queued, FhirResourcePublishRequest)
    assert queued.resource == answer["fhir"]  # the RiskAssessment answered, value for value
    assert queued.request_id == reply.headers[REQUEST_ID_HEADER]
    risk_token(queued.resource)
    assert publishing.seen == []  # the answer left before anything was published


def test_the_publisher_creates_the_risk_assessment_once_however_often_it_is_delivered(
    running, publishing, fhir_server, iris, rows
):
    answer = json.loads(call(PREDICT, body=as_json(rows[1])).body)
    token = risk_token(answer["fhir"])
    entry = queued_publish(running)
    assert risk_assessments(fhir_server, token) == []

    published = deliver(running, entry)
    assert isinstance(published, FhirResourcePublishReply)
    assert (published.resource_type, published.identifier) == ("RiskAssessment", token)
    assert (published.created, published.existing, len(published.locations)) == (1, 0, 1)
    (post,) = publishing.posts()
    bundle = json.loads(post.body)
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "transaction")
    (sent,) = bundle["entry"]
    assert sent["request"] == {
        "method": "POST",
        "url": "RiskAssessment",
        "ifNoneExist": f"identifier={token}",
    }
    # The resource as answered; a create's id is the server's to give.
    assert sent["resource"] == {k: v for k, v in answer["fhir"].items() if k != "id"}

    again = deliver(running, entry)  # IRIS delivers the message again (a restart mid-reply)
    assert (again.created, again.existing) == (0, 1)
    assert again.locations == published.locations
    logged = [text for level, _, text in iris.event_log if level == 4]
    assert f"RiskAssessment {token} published: 0 created, 1 already there" in logged
    (stored,) = risk_assessments(fhir_server, token)
    assert published.locations == [f"RiskAssessment/{stored['id']}/_history/1"]
    # What the server keeps is the answer's RiskAssessment, under an id of its own.
    assert {k: v for k, v in stored.items() if k not in ("id", "meta")} == {
        k: v for k, v in answer["fhir"].items() if k not in ("id", "meta")
    }
    assert stored["meta"]["security"] == answer["fhir"]["meta"]["security"]


def test_a_refused_risk_assessment_fails_at_once_and_an_absent_server_is_retried(
    running, publishing, fhir_server, iris, rows
):
    running.overrides[PUBLISHER] = {"attempts": 1}
    answer = json.loads(call(PREDICT, body=as_json(rows[2])).body)
    token = risk_token(answer["fhir"])
    entry = queued_publish(running)

    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "not this one"}],
    }
    publishing.fail(422, body=outcome)
    with pytest.raises(PublishRejected, match="answered 422: not this one") as refused:
        deliver(running, entry)
    assert iris_action(refused.value) == "F"  # ReplyCodeActions: failed, an alert; no retry

    publishing.stop()  # the server is away
    with pytest.raises(PublishError) as away:
        deliver(running, entry)
    assert type(away.value) is PublishError and iris_action(away.value) == "R"
    warnings = [text for level, _, text in iris.event_log if level == 3]
    assert any(answer["fhir"]["id"] in text for text in warnings), iris.event_log

    publishing.start()  # IRIS's retry delivers the same message: created once
    assert deliver(running, entry).created == 1
    assert len(risk_assessments(fhir_server, token)) == 1


def test_a_resource_without_an_identifier_is_refused_without_a_request(running, publishing, rows):
    answer = json.loads(call(PREDICT, body=as_json(rows[3])).body)
    queued_publish(running)
    anonymous = {k: v for k, v in answer["fhir"].items() if k != "identifier"}
    message = dispatch_serializer(FhirResourcePublishRequest(resource=anonymous))
    with pytest.raises(PublishRejected, match="has no identifier") as raised:
        running.deliver(PUBLISHER, message)
    assert iris_action(raised.value) == "F"
    assert publishing.seen == []


def test_a_batch_publishes_nothing(running, publishing, rows):
    reply = call(BATCH, body=as_json(rows))
    assert reply.status == 200, reply.body
    assert "fhir" not in json.loads(reply.body)
    assert publishes(running) == [] and len(running.queue) == 0


def test_without_a_publish_url_nothing_is_sent_and_the_answer_is_the_same(
    running, database, rows, monkeypatch
):
    monkeypatch.delenv("AISTACK_FHIR_PUBLISH_URL", raising=False)
    body = as_json(rows[0])
    reply = call(PREDICT, body=body)
    assert reply.status == 200, reply.body
    assert comparable(json.loads(reply.body)) == comparable(
        service_over(database).predict_json(body, JSON_TYPE)
    )
    assert publishes(running) == [] and len(running.queue) == 0


def test_a_risk_assessment_that_cannot_be_queued_leaves_the_answer_alone(
    running, publishing, iris, database, rows, monkeypatch
):
    def refuse(host: HostDouble, target: str, request: Any, *rest: Any) -> None:
        raise RuntimeError("ERROR #5002: queue full")

    monkeypatch.setattr(HostDouble, "dispatchSendRequestAsync", refuse)
    body = as_json(rows[0])
    reply = call(PREDICT, body=body)
    assert reply.status == 200, reply.body
    assert comparable(json.loads(reply.body)) == comparable(
        service_over(database).predict_json(body, JSON_TYPE)
    )
    errors = [text for level, _, text in iris.event_log if level == 2]
    assert any("not queued for FHIR publishing" in text for text in errors), iris.event_log


def test_the_fhir_server_double_refuses_what_a_fhir_server_refuses(fhir_server):
    """The double is only worth its passes if it refuses: an invalid resource (400, the
    Bundle refused) and a caller it does not know (401, credentials)."""
    invalid = {"resourceType": "RiskAssessment", "status": "final", "prediction": "high"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": invalid, "request": {"method": "POST", "url": "RiskAssessment"}}],
    }
    signed_in = FhirPublisher(
        fhir_server.fhir_url, user=fhir_server.user, password=fhir_server.password, attempts=1
    )
    with pytest.raises(PublishRejected, match="answered 400: entry 0: not a valid RiskAssessment"):
        signed_in.publish(bundle)
    stranger = FhirPublisher(fhir_server.fhir_url, user="nobody", password="x", attempts=1)
    with pytest.raises(PublishError) as refused:
        stranger.publish(bundle)
    assert type(refused.value) is PublishError and refused.value.status == 401
    assert fhir_server.resources == {}
    signed_in.close()
    stranger.close()


# -- docs/IRIS.md's statements for the Management Portal ---------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "IRIS.md"


def test_the_sql_page_statements_in_the_docs_are_the_code_s_and_compile_for_iris():
    section = DOC.read_text().split("## ICU admission with IntegratedML", 1)[1].split("\n## ")[0]
    documented = [
        line.removesuffix(";")
        for block in re.findall(r"```sql\n(.*?)```", section, re.S)
        for line in block.splitlines()
        if line.strip()
    ]
    generated = [sql for statements in icu_setup.portal_sql().values() for sql in statements]
    assert documented == generated
    for sql in generated:
        assert "?" not in sql  # the SQL page takes no parameters: values are written in
        assert str(sa.text(sql).compile(dialect=iml.dialect())) == sql
    written = icu_setup.inline(iml.Statement("SELECT ?, ?, ?, ?", ("it's", 3, 0.5, None)))
    assert written == "SELECT 'it''s', 3, 0.5, NULL"
    with pytest.raises(ValueError, match="1 values for 2 parameters"):
        icu_setup.inline(iml.Statement("SELECT ?, ?", ("a",)))
