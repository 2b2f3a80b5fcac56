"""IcuService: the bodies both runtimes hand over, the answers and errors they send back.

Everything runs on the committed local model (models/icu/1); the IntegratedML path runs
against ``IrisDbApiDouble`` (IRIS cannot run here), with the local model as its scorer.
"""

from __future__ import annotations

import json
import logging
import math

import httpx
import jsonschema
import pytest

from aistack.errors import (
    AistackError,
    BadRequest,
    InvalidJson,
    InvalidRequest,
    MissingInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from aistack.icu.bodies import row_schema
from aistack.icu.columns import (
    FALLBACK_FORM_FIELDS,
    WORKBOOK_FEATURES,
    column_label,
    is_lab_or_vital,
    most_informative,
)
from aistack.icu.dataset import LABEL
from aistack.icu.local import LocalPredictor, load_local
from aistack.icu.predictor import METRIC_NAMES, predict
from aistack.icu.service import IcuService
from aistack.metrics import REGISTRY

JSON = "application/json"
CSV = "text/csv"
ROW = {
    "PATIENT_VISIT_IDENTIFIER": 17,
    "WINDOW": "0-2",
    "AGE_ABOVE65": 1,
    "AGE_PERCENTIL": "70th",
    "GENDER": 0,
    "RESPIRATORY_RATE_MAX": -0.2,
    "OXYGEN_SATURATION_MIN": "0.5",
    "PCR_MEDIAN": -0.85,
    "LINFOCITOS_MEDIAN": -0.6,
    "UREA_MEDIAN": None,
}


@pytest.fixture(scope="module")
def local() -> LocalPredictor:
    return load_local()


@pytest.fixture(scope="module")
def service(local) -> IcuService:
    return IcuService(local)


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def refused(error: type[AistackError], call, *args) -> str:
    """The message of the error ``call(*args)`` must raise; it is exactly ``error``'s code."""
    with pytest.raises(error) as caught:
        call(*args)
    assert caught.value.code == error.code, caught.value.message
    return caught.value.message


def contributions(answer) -> list[dict]:
    return [
        {
            "feature": c.feature,
            "label": column_label(c.feature),
            "value": c.value,
            "contribution": c.contribution,
        }
        for c in answer.top_features
    ]


# --- one row


def test_a_row_is_answered_exactly_as_the_core_predicts_it(service, local):
    answer = service.predict_json(body(ROW), JSON)
    expected = predict(load_local(), [ROW])[0]
    assert answer["probability"] == expected.probability
    assert answer["label"] == expected.label and answer["threshold"] == expected.threshold
    assert answer["top_features"] == contributions(expected)
    assert len(answer["top_features"]) == 5
    magnitudes = [abs(c["contribution"]) for c in answer["top_features"]]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert answer["prediction"] == (
        "ICU admission predicted" if expected.label else "ICU admission not predicted"
    )
    assert answer["model"] == {
        "backend": "local",
        "version": "1",
        "training_data_hash": local.metadata.training_data_hash,
    }
    assert answer["contribution_unit"] == "log-odds"
    fhir = answer["fhir"]
    assert fhir["resourceType"] == "RiskAssessment"
    assert fhir["prediction"][0]["probabilityDecimal"] == answer["probability"]
    assert fhir["subject"]["identifier"]["value"] == "17"
    json.dumps(answer, allow_nan=False)  # sendable as it is


def test_the_answer_survives_json_round_trips_unchanged(service):
    answer = service.predict_json(body(ROW), "application/json; charset=utf-8")
    assert json.loads(json.dumps(answer)) == answer


def test_missing_values_are_allowed_as_absent_keys_nulls_or_empty_text(service):
    sparse = {"AGE_PERCENTIL": 40, "HEART_RATE_MAX": None, "PCR_MEDIAN": ""}
    answer = service.predict_json(body(sparse), JSON)
    assert answer["probability"] == predict(load_local(), [sparse])[0].probability
    assert any(c["value"] is None for c in answer["top_features"])  # missing, and it mattered
    assert answer["fhir"]["subject"] == {"type": "Patient", "display": "Patient (not identified)"}
    assert "basis" not in answer["fhir"]  # no lab or vital value was given


@pytest.mark.parametrize("row", [{"GENDER": None}, {"PATIENT_VISIT_IDENTIFIER": 3}])
def test_a_row_with_every_value_missing_is_answered_for_a_patient_of_whom_nothing_is_known(
    service, row
):
    nothing = predict(load_local(), [{}])[0].probability
    assert service.predict_json(body(row), JSON)["probability"] == nothing


def test_an_empty_object_sent_nothing_and_is_a_422(service):
    assert "row 1 is an empty object" in refused(InvalidRequest, service.predict_json, b"{}", JSON)
    message = refused(InvalidRequest, service.batch_json, body([{"GENDER": 1}, {}, {}]), JSON)
    assert "rows 2, 3 are empty objects" in message


def test_unknown_columns_are_a_422_naming_them_with_a_hint(service):
    row = {"AGE_PERCENTIL": 50, "RESPIRATORY_RATE_MAXX": 1, "SHOE_SIZE": None}
    message = refused(InvalidRequest, service.predict_json, body(row), JSON)
    assert "'RESPIRATORY_RATE_MAXX' (did you mean 'RESPIRATORY_RATE_MAX'?)" in message
    assert "'SHOE_SIZE'" in message


@pytest.mark.parametrize(
    "value",
    [[1], {"v": 1}, "abc", True, False, "nan", "Infinity", "1_000", " ", "1e400", 1e301, 10**400],
)
def test_a_value_that_is_no_number_is_a_422_naming_the_column(service, value):
    message = refused(InvalidRequest, service.predict_json, body({"HEART_RATE_MAX": value}), JSON)
    assert "HEART_RATE_MAX=" in message and "row 1" in message


@pytest.mark.parametrize("value", [[17], {"id": 17}, True, 1.5, "", "a b", "x" * 65, 2**60])
def test_a_patient_identifier_must_be_an_integer_or_plain_text(service, value):
    row = {"PATIENT_VISIT_IDENTIFIER": value, "AGE_PERCENTIL": 20}
    if value == "":  # empty: no identifier, as a missing value
        assert "identifier" not in service.predict_json(body(row), JSON)["fhir"]["subject"]
        return
    refused(InvalidRequest, service.predict_json, body(row), JSON)


def test_identifiers_and_the_workbooks_age_spellings_are_accepted(service):
    def probability(row: dict) -> float:
        return service.predict_json(body(row), JSON)["probability"]

    assert probability({"AGE_PERCENTIL": "60th"}) == probability({"AGE_PERCENTIL": 60})
    assert probability({"AGE_PERCENTIL": "Above 90th"}) == probability({"AGE_PERCENTIL": 100})
    for identifier, text in ((12.0, "12"), ("visit-12", "visit-12"), (12, "12")):
        row = {"PATIENT_VISIT_IDENTIFIER": identifier, "GENDER": 1}
        subject = service.predict_json(body(row), JSON)["fhir"]["subject"]
        assert subject["identifier"]["value"] == text


@pytest.mark.parametrize("document", [[ROW], "text", 3, None, []])
def test_a_body_that_is_not_one_object_is_a_422(service, document):
    message = refused(InvalidRequest, service.predict_json, body(document), JSON)
    assert "ONE JSON object" in message


@pytest.mark.parametrize(
    "raw", [b"{", b'{"GENDER": 1,}', b"\xff\xfe{", b'{"GENDER": NaN}', b"[" * 100_000]
)
def test_malformed_json_is_a_400(service, raw):
    refused(InvalidJson, service.predict_json, raw, JSON)


def test_a_column_given_twice_is_a_422(service):
    message = refused(InvalidRequest, service.predict_json, b'{"GENDER": 1, "GENDER": 0}', JSON)
    assert "'GENDER' is given twice" in message


def test_content_types_other_than_json_are_refused(service):
    refused(UnsupportedMediaType, service.predict_json, b"GENDER\n1\n", CSV)
    refused(UnsupportedMediaType, service.predict_json, body(ROW), None)
    refused(MissingInput, service.predict_json, b"", None)
    refused(MissingInput, service.predict_json, b"  ", JSON)


# --- the runtime's record of a single prediction's RiskAssessment


def test_a_single_prediction_hands_its_risk_assessment_to_the_hook_and_a_batch_none(local):
    recorded: list[dict] = []
    service = IcuService(local, record_risk=recorded.append)
    answer = service.predict_json(body(ROW), JSON)
    assert recorded == [answer["fhir"]]  # before the answer is returned, as answered
    service.batch_json(body([ROW, {"GENDER": 1}]), JSON)
    service.batch_json(b"GENDER\n1\n", CSV)
    assert len(recorded) == 1
    refused(InvalidRequest, service.predict_json, body({"SHOE_SIZE": 1}), JSON)
    assert len(recorded) == 1  # a refused row has no prediction to record


def test_a_hook_that_fails_is_logged_by_type_and_the_prediction_is_answered(local, caplog):
    def unreachable_store(resource: dict) -> None:
        raise ConnectionError(f"the FHIR server did not take {json.dumps(resource)}")

    service = IcuService(local, record_risk=unreachable_store)
    with caplog.at_level(logging.INFO, logger="aistack.events"):
        answer = service.predict_json(body(ROW), JSON, client="ward-7")
    assert answer["fhir"]["resourceType"] == "RiskAssessment"
    plain = IcuService(local).predict_json(body(ROW), JSON)
    assert answer.keys() == plain.keys()
    assert all(answer[key] == plain[key] for key in answer.keys() - {"fhir"})  # as without
    (record,) = [r for r in caplog.records if "icu_risk_not_recorded" in r.message]
    assert record.levelno == logging.WARNING
    line = json.loads(record.message)
    assert line["event"] == "icu_risk_not_recorded"
    assert (line["risk_id"], line["error"]) == (answer["fhir"]["id"], "ConnectionError")
    assert "PCR_MEDIAN" not in caplog.text and "did not take" not in caplog.text  # no values


def test_from_settings_passes_the_hook(tmp_path):
    from aistack.config import Settings  # noqa: PLC0415

    recorded: list[dict] = []
    service = IcuService.from_settings(Settings(var_dir=tmp_path), record_risk=recorded.append)
    answer = service.predict_json(body({"GENDER": 1}), JSON)
    assert recorded == [answer["fhir"]]


# --- batches


def test_a_json_list_is_answered_row_by_row_as_the_core_does(service):
    rows = [ROW, {"AGE_PERCENTIL": 20, "GENDER": 1}, {"PCR_MEDIAN": 0.9}]
    answer = service.batch_json(body(rows), JSON)
    expected = predict(load_local(), rows)
    assert answer["count"] == 3 and [p["row"] for p in answer["predictions"]] == [1, 2, 3]
    for got, want in zip(answer["predictions"], expected, strict=True):
        assert got["probability"] == want.probability and got["label"] == want.label
        assert got["top_features"] == contributions(want)
        assert set(got) == {"row", "probability", "label", "prediction", "top_features"}
    assert answer["model"]["threshold"] == expected[0].threshold
    assert answer["contribution_unit"] == "log-odds"


def test_a_csv_body_equals_the_same_rows_as_json(service):
    csv = (
        "\ufeffPATIENT_VISIT_IDENTIFIER,AGE_PERCENTIL,DISEASE GROUPING 1,PCR_MEDIAN\r\n"
        "1,70th,1,-0.85\r\n"
        "\r\n"  # blank lines are skipped
        '2,,0," 0.3 "\r\n'
    ).encode()
    as_csv = service.batch_json(csv, "text/csv; charset=utf-8")
    rows = [
        {"PATIENT_VISIT_IDENTIFIER": 1, "AGE_PERCENTIL": "70th", "DISEASE GROUPING 1": 1,
         "PCR_MEDIAN": -0.85},
        {"PATIENT_VISIT_IDENTIFIER": 2, "AGE_PERCENTIL": None, "DISEASE GROUPING 1": 0,
         "PCR_MEDIAN": 0.3},
    ]  # fmt: skip
    assert as_csv == service.batch_json(body(rows), JSON)


def multipart(files: dict, data: dict | None = None) -> tuple[bytes, str]:
    """A multipart body as a client sends it (httpx's encoder), and its Content-Type."""
    request = httpx.Request("POST", "http://icu.test/", files=files, data=data)
    return request.read(), request.headers["content-type"]


def test_a_csv_upload_equals_the_csv_body(service):
    csv = b"AGE_PERCENTIL,HEART_RATE_MAX\n60th,0.2\n30th,\n"
    raw, content_type = multipart({"file": ("rows.csv", csv, "text/csv")})
    assert service.batch_json(raw, content_type) == service.batch_json(csv, CSV)


def test_an_upload_needs_the_file_part_and_nothing_else(service):
    raw, content_type = multipart({"rows": ("rows.csv", b"GENDER\n1\n", "text/csv")})
    refused(MissingInput, service.batch_json, raw, content_type)
    files = {"file": ("rows.csv", b"GENDER\n1\n", "text/csv")}
    raw, content_type = multipart(files, {"top": "3"})
    assert "'top'" in refused(BadRequest, service.batch_json, raw, content_type)


@pytest.mark.parametrize(
    ("csv", "needle"),
    [
        (b"AGE_PERCENTIL,PCR_MEDAN\n50,0.1\n", "'PCR_MEDAN' (did you mean 'PCR_MEDIAN'?)"),
        (b"AGE_PERCENTIL,GENDER\n50,0,1\n", "CSV row 1 has 3 cells"),
        (b"AGE_PERCENTIL,,GENDER\n50,1,0\n", "empty name"),
        (b"GENDER,GENDER\n1,1\n", "names 'GENDER' twice"),
        (b"", "the CSV is empty"),
        (b"AGE_PERCENTIL,GENDER\n", "no rows"),
        (b"AGE_PERCENTIL,GENDER\n50,abc\n", "row 1 GENDER='abc'"),
    ],
)
def test_a_csv_that_cannot_be_used_is_a_422_saying_why(service, csv, needle):
    assert needle in refused(InvalidRequest, service.batch_json, csv, CSV)


def test_a_csv_that_cannot_be_read_is_a_400(service):
    refused(BadRequest, service.batch_json, b"GENDER\n\xff\n", CSV)
    refused(BadRequest, service.batch_json, b'GENDER\n"1\n', CSV)  # an unclosed quote


@pytest.mark.parametrize(
    ("document", "needle"),
    [([], "no rows"), (ROW, "JSON LIST"), ([ROW, 3], "row 2 of the list is not a JSON object")],
)
def test_a_json_batch_that_is_not_a_list_of_objects_is_a_422(service, document, needle):
    assert needle in refused(InvalidRequest, service.batch_json, body(document), JSON)


def test_batches_over_the_cap_are_a_413_naming_it(local):
    small = IcuService(local, max_batch_rows=3)
    rows = [{"GENDER": 1}] * 4
    message = refused(PayloadTooLarge, small.batch_json, body(rows), JSON)
    assert "at most 3 rows" in message and "got 4" in message
    csv = b"GENDER\n" + b"1\n" * 4
    assert "at most 3 rows" in refused(PayloadTooLarge, small.batch_json, csv, CSV)
    assert small.batch_json(b"GENDER\n" + b"1\n" * 3, CSV)["count"] == 3


def test_batch_content_types(service):
    refused(UnsupportedMediaType, service.batch_json, b"GENDER\n1\n", "text/plain")
    refused(MissingInput, service.batch_json, b"", "")


# --- the model


def test_the_model_answer_has_the_contract_keys(service, local):
    model = service.model_json()
    assert set(model) == {
        "backend",
        "version",
        "training_data_hash",
        "threshold",
        "metrics",
        "evaluation",
        "explanation_method",
        "contribution_unit",
        "features",
        "form_fields",
    }
    assert model["features"] == list(local.metadata.features)
    assert set(model["metrics"]) == set(METRIC_NAMES)
    assert model["threshold"] == local.metadata.threshold
    json.dumps(model, allow_nan=False)


def test_form_fields_follow_the_models_gain_one_per_measurement(service, local):
    fields = service.model_json()["form_fields"]
    assert len(fields) == 8 and fields[0] == {"name": "AGE_PERCENTIL", "label": "Age percentile"}
    gains = dict(
        zip(
            local.metadata.features,
            local.model.booster.feature_importance(importance_type="gain"),
            strict=True,
        )
    )
    names = [f["name"] for f in fields]
    assert [gains[n] for n in names] == sorted((gains[n] for n in names), reverse=True)
    assert "PCR_MEDIAN" in names and "PCR_MIN" not in names  # one field per measurement,
    assert gains["PCR_MIN"] > gains["CREATININ_MEDIAN"]  # though its min outranks others
    assert tuple(names) == FALLBACK_FORM_FIELDS  # the documented list is this model's


@pytest.mark.parametrize(
    ("column", "label"),
    [
        ("RESPIRATORY_RATE_MAX", "Respiratory rate (max)"),
        ("HEART_RATE_DIFF_REL", "Heart rate (relative range)"),
        ("BLOODPRESSURE_SISTOLIC_DIFF", "Systolic blood pressure (range)"),
        ("PCR_MEDIAN", "C-reactive protein (median)"),
        ("P02_ARTERIAL_MIN", "Arterial pO2 (min)"),
        ("AGE_ABOVE65", "Age above 65"),
        ("DISEASE GROUPING 3", "Disease grouping 3"),
        ("IMMUNOCOMPROMISED", "Immunocompromised"),
    ],
)
def test_labels_come_from_the_column_names(column, label):
    assert column_label(column) == label


def test_labs_and_vitals_are_told_from_demographics():
    assert is_lab_or_vital("TEMPERATURE_DIFF_REL") and is_lab_or_vital("DIMER_MAX")
    assert not is_lab_or_vital("AGE_PERCENTIL") and not is_lab_or_vital("HTN")


def test_the_published_feature_list_is_the_committed_models(local):
    assert local.metadata.features == WORKBOOK_FEATURES


# --- the published schema says exactly what the service takes

VALUES = [
    0, -1, 0.25, "0.5", "-.5", "+1.", "1e-3", "60th", "Above 90th", None, "", True, "abc",
    "nan", "1_0", "inf", "1e400", 1e301, -1e300, [1], {"a": 1}, "12\n", "١٢",
]  # fmt: skip


@pytest.mark.parametrize("column", ["GENDER", "AGE_PERCENTIL", "PATIENT_VISIT_IDENTIFIER"])
def test_the_row_schema_and_the_service_agree_on_every_value(service, column):
    validator = jsonschema.Draft202012Validator(row_schema())
    for value in VALUES:
        row = {column: value, "HEART_RATE_MAX": 0.1}
        try:
            service.predict_json(body(row), JSON)
            accepted = True
        except InvalidRequest:
            accepted = False
        assert accepted == validator.is_valid(row), (column, value)


def test_the_row_schema_refuses_what_the_service_refuses_as_a_whole(service):
    validator = jsonschema.Draft202012Validator(row_schema())
    for row in ({}, {"FOO": 1}, {"ICU": [1], "GENDER": 1}, {"WINDOW": True}):
        assert not validator.is_valid(row), row
        refused(InvalidRequest, service.predict_json, body(row), JSON)
    for row in ({"WINDOW": "0-2", "ICU": 0, "GENDER": 1}, {"GENDER": None}, {"ICU": "x"}):
        assert validator.is_valid(row), row
        service.predict_json(body(row), JSON)


# --- the IntegratedML backend, through IRIS's DB-API double


def test_an_integratedml_predictor_is_served_alike_with_the_documented_form(local):
    from aistack.icu import integratedml as iml  # noqa: PLC0415
    from aistack.icu.dataset import prepare, read_workbook  # noqa: PLC0415
    from aistack.icu.defaults import DEFAULT_WORKBOOK  # noqa: PLC0415
    from tests.doubles.iris_dbapi import IrisDbApiDouble  # noqa: PLC0415

    if not DEFAULT_WORKBOOK.is_file():
        pytest.skip(f"the ICU workbook is not at {DEFAULT_WORKBOOK}")
    db = IrisDbApiDouble(trained_scorer=local.model.probabilities)
    remote = iml.train_integratedml(db, prepare(read_workbook(DEFAULT_WORKBOOK)))
    service = IcuService(remote, top=3)
    model = service.model_json()
    assert model["backend"] == "integratedml" and model["contribution_unit"] == "probability"
    assert [f["name"] for f in model["form_fields"]] == list(FALLBACK_FORM_FIELDS)
    assert most_informative(remote) == list(FALLBACK_FORM_FIELDS)
    answer = service.predict_json(body(ROW), JSON)
    assert answer["probability"] == pytest.approx(predict(local, [ROW])[0].probability, abs=1e-12)
    assert answer["model"]["version"] == remote.metadata.version
    device = answer["fhir"]["contained"][0]
    assert {
        "system": "urn:aistack:icu-model",
        "value": f"integratedml/{remote.metadata.version}",
    } in (device["identifier"])
    batch = service.batch_json(body([ROW, {"GENDER": 1}]), JSON)
    assert batch["count"] == 2 and all(len(p["top_features"]) <= 3 for p in batch["predictions"])
    assert LABEL not in model["features"] and not math.isnan(answer["probability"])


# --- from the settings


def test_the_settings_default_to_the_committed_local_model(tmp_path):
    from aistack.config import Settings  # noqa: PLC0415
    from aistack.icu.defaults import DEFAULT_MODEL_DIR  # noqa: PLC0415

    settings = Settings(var_dir=tmp_path)
    assert settings.icu_backend == "local" and settings.icu_model_dir == DEFAULT_MODEL_DIR
    assert settings.icu_max_batch_rows == 10_000 and settings.iris_dsn is None
    service = IcuService.from_settings(settings.model_copy(update={"icu_max_batch_rows": 7}))
    assert service.model_json()["version"] == "1" and service.max_batch_rows == 7
    with pytest.raises(ValueError, match="AISTACK_IRIS_DSN"):
        IcuService.from_settings(settings.model_copy(update={"icu_backend": "integratedml"}))
    with pytest.raises(FileNotFoundError, match="no ICU model version 9"):
        IcuService.from_settings(settings.model_copy(update={"icu_model_version": 9}))


def test_each_request_is_counted_timed_and_logged_without_its_values(service, caplog):
    def scored(label: str) -> float:
        labels = {"backend": "local", "label": label}
        return REGISTRY.get_sample_value("aistack_icu_predictions_total", labels) or 0.0

    def timed(route: str) -> float:
        labels = {"backend": "local", "route": route}
        return REGISTRY.get_sample_value("aistack_icu_scoring_duration_seconds_count", labels) or 0

    before = {label: scored(label) for label in "01"}
    timed_before = timed("batch")
    rows = [ROW, {**ROW, "PCR_MEDIAN": 0.9}, {"GENDER": 1}]
    with caplog.at_level(logging.INFO, logger="aistack.events"):
        answer = service.batch_json(body(rows), JSON, client="ward-7")
    admitted = sum(p["label"] for p in answer["predictions"])
    assert scored("1") - before["1"] == admitted
    assert scored("0") - before["0"] == len(rows) - admitted
    assert timed("batch") == timed_before + 1
    (line,) = [json.loads(r.message) for r in caplog.records if "icu_prediction" in r.message]
    assert line["event"] == "icu_prediction" and line["route"] == "batch"
    assert line["client"] == "ward-7" and line["rows"] == 3
    assert line["admission_predicted"] == admitted and line["model_version"] == "1"
    assert "PCR_MEDIAN" not in caplog.text  # no patient values in the log
