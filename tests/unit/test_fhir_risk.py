"""The ICU RiskAssessment: valid R4 (fhir.resources and the project's checks), self-contained,
and saying what the JSON answer says."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace

import pytest
from fhir.resources.R4B.riskassessment import RiskAssessment, RiskAssessmentPrediction

from aistack.fhir.bundle import conditional_query
from aistack.fhir.checks import FhirCheckError, resource_problems
from aistack.fhir.codes import SNOMED, UCUM, snomed_id_is_valid
from aistack.fhir.r4 import R4_TYPES
from aistack.fhir.risk import (
    ICU_ADMISSION,
    ICU_COLUMN_SYSTEM,
    ICU_PREDICTION_SYSTEM,
    TRAINING_DATA_SYSTEM,
    check_risk_assessment,
    icu_device_id,
    icu_device_json,
    risk_assessment_json,
    risk_problems,
)
from aistack.icu.columns import column_label
from aistack.icu.local import LocalPredictor, load_local
from aistack.icu.predictor import IcuPrediction, predict

ROW = {
    "AGE_PERCENTIL": "70th",
    "GENDER": 1,
    "RESPIRATORY_RATE_MAX": -0.2,
    "OXYGEN_SATURATION_MIN": 0.5,
    "PCR_MEDIAN": -0.85,
}
MEASURED = {"RESPIRATORY_RATE_MAX": -0.2, "OXYGEN_SATURATION_MIN": 0.5, "PCR_MEDIAN": -0.85}


@pytest.fixture(scope="module")
def local() -> LocalPredictor:
    return load_local()


@pytest.fixture(scope="module")
def answer(local) -> IcuPrediction:
    return predict(local, [ROW])[0]


@pytest.fixture
def resource(local, answer) -> dict:
    return risk_assessment_json(
        answer, local.metadata, MEASURED, subject_id="17", label_of=column_label
    )


def contained(resource: dict, reference: dict) -> dict:
    """The contained resource a ``#id`` reference names (KeyError: it names none)."""
    by_id = {f"#{c['id']}": c for c in resource["contained"]}
    return by_id[reference["reference"]]


def test_it_is_valid_r4_by_fhir_resources_and_the_projects_checks(resource):
    assert risk_problems(resource) == []
    model = RiskAssessment.model_validate(resource)
    assert model.status == "final" and len(model.contained) == 4
    check_risk_assessment(json.loads(json.dumps(resource)))  # as a client receives it


def test_the_probability_outcome_and_subject_are_the_predictions(resource, answer):
    prediction = resource["prediction"][0]
    assert prediction["probabilityDecimal"] == answer.probability
    assert prediction["outcome"]["coding"] == [
        {"system": SNOMED, "code": "305351004", "display": "Admission to intensive care unit"}
    ]
    assert snomed_id_is_valid(ICU_ADMISSION.code)
    assert f"{answer.threshold:g}" in prediction["rationale"]
    assert column_label(answer.top_features[0].feature) in prediction["rationale"]
    assert resource["subject"]["identifier"] == {
        "system": "urn:aistack:icu-patient-visit",
        "value": "17",
    }
    assert resource["meta"]["security"][0]["code"] == "AIAST"


def test_the_identifier_names_the_prediction_by_the_uuid_of_its_id(resource, local, answer):
    (identifier,) = resource["identifier"]
    assert identifier["system"] == ICU_PREDICTION_SYSTEM == "urn:aistack:icu-prediction"
    assert re.fullmatch("[0-9a-f]{32}", identifier["value"])
    assert resource["id"] == f"risk-{identifier['value']}"
    # What a FHIR server's conditional create searches, so a resent one is not stored again.
    assert (
        conditional_query(resource) == f"identifier={ICU_PREDICTION_SYSTEM}|{identifier['value']}"
    )
    again = risk_assessment_json(answer, local.metadata, MEASURED)
    assert again["identifier"][0]["value"] != identifier["value"]  # one per prediction


def test_the_performer_is_the_models_device_identified_by_version_and_training_data(
    resource, local
):
    device = contained(resource, resource["performer"])
    meta = local.metadata
    assert device["resourceType"] == "Device" and device["id"] == icu_device_id(meta)
    assert {"system": TRAINING_DATA_SYSTEM, "value": meta.training_data_hash} in (
        device["identifier"]
    )
    assert {"system": "urn:aistack:icu-model", "value": "local/1"} in device["identifier"]
    assert device["version"][0]["value"] == meta.version
    assert resource_problems(device) == []  # the project's Device rules, R4 elements, codes
    assert device == icu_device_json(meta)


def test_basis_refers_to_one_contained_observation_per_given_value(resource):
    observations = [contained(resource, reference) for reference in resource["basis"]]
    assert [o["code"]["coding"][0]["code"] for o in observations] == list(MEASURED)
    for observation in observations:
        column = observation["code"]["coding"][0]["code"]
        assert observation["code"]["coding"][0]["system"] == ICU_COLUMN_SYSTEM
        assert observation["valueQuantity"] == {
            "value": MEASURED[column],
            "unit": "1",
            "system": UCUM,
            "code": "1",
        }
        assert "scaled to [-1, 1]" in observation["code"]["text"]
        assert observation["subject"] == resource["subject"]
    assert observations[0]["code"]["coding"][0]["display"] == "Respiratory rate (max)"


def test_without_lab_or_vital_values_there_is_no_basis(local, answer):
    bare = risk_assessment_json(answer, local.metadata, {})
    assert "basis" not in bare and [c["resourceType"] for c in bare["contained"]] == ["Device"]
    assert bare["subject"] == {"type": "Patient", "display": "Patient (not identified)"}
    check_risk_assessment(bare)


def test_a_retrained_model_is_another_device(local):
    meta = local.metadata
    retrained = replace(meta, training_data_hash="0" * 64)
    assert icu_device_id(meta) == icu_device_id(replace(meta))
    assert icu_device_id(retrained) != icu_device_id(meta)
    assert icu_device_id(replace(meta, backend="integratedml")) != icu_device_id(meta)


def broken(resource: dict, change) -> list[str]:
    copied = copy.deepcopy(resource)
    change(copied)
    return risk_problems(copied)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda r: r.update(encounterReference={}), "no element 'encounterReference'"),
        (lambda r: r["prediction"][0].update(probability=0.5), "no element 'probability'"),
        (lambda r: r.update(status="done"), "status 'done'"),
        (lambda r: r.pop("subject"), "subject is required"),
        (lambda r: r["performer"].update(reference="#obs-pcr-median"), "is a Observation"),
        (lambda r: r["performer"].update(reference="#nothing"), "no contained resource"),
        (lambda r: r.update(subject={"reference": "Practitioner/1"}), "Practitioner here"),
        (lambda r: r.pop("basis"), "referred to by nothing"),
        (lambda r: r["contained"][1].update(meta={}), "may not carry meta"),
        (lambda r: r["contained"][1].update(valueFoo=1), "no element 'valueFoo'"),
        (lambda r: r["contained"][0].update(status="on"), "Device.status 'on'"),
        (
            lambda r: r["prediction"][0]["outcome"]["coding"][0].update(code="305351005"),
            "not a valid SNOMED CT concept id",
        ),
        (lambda r: r.update(resourceType="Observation"), "is not RiskAssessment"),
    ],
)
def test_the_checks_catch_what_would_break_r4_or_the_projects_rules(resource, change, needle):
    problems = broken(resource, change)
    assert any(needle in p for p in problems), problems


def test_a_breach_stops_the_build(resource):
    resource["prediction"][0]["probabilityDecimal"] = "high"
    with pytest.raises(ValueError):  # pydantic's ValidationError
        check_risk_assessment(resource)
    resource["status"] = "done"
    with pytest.raises(FhirCheckError, match="status"):
        check_risk_assessment(resource)


def test_the_r4_element_lists_are_the_models_own():
    """RiskAssessment did not change from R4 to R4B: the R4B model has exactly these."""
    for name, model in (
        ("RiskAssessment", RiskAssessment),
        ("RiskAssessmentPrediction", RiskAssessmentPrediction),
    ):
        own = {field for field in model.model_fields if not field.endswith("__ext")}
        assert set(R4_TYPES[name]) == own - {"fhir_comments", "resource_type"}
