"""The checks fhir.resources does not make: each wrong value here passes the R4B model, and
is refused by ours. Codes are checked against their check digits and the registry."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.media import Media
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from aistack.fhir import FhirCheckError, ModelDescription, build_prediction_resources, codes
from aistack.fhir.checks import bundle_problems, check_resource, resource_problems
from aistack.fhir.r4 import R4_RESOURCE_TYPES, r4_problems
from aistack.store import PredictionRecord
from aistack.xray.labels import CLASSES
from tests.conftest import MODEL_DIR

MODELS = {
    "Observation": Observation,
    "DiagnosticReport": DiagnosticReport,
    "Media": Media,
    "Device": Device,
    "Provenance": Provenance,
    "Bundle": Bundle,
}


@pytest.fixture(scope="module")
def resources():
    prediction = PredictionRecord.create(
        model_name="covid19",
        model_version=1,
        input_sha256=hashlib.sha256(b"x").hexdigest(),
        probabilities={"covid": 0.1, "normal": 0.7, "pneumonia_bac": 0.2},
        label="normal",
        covid_positive=False,
        threshold=0.65,
        latency_ms=3.0,
        endpoint="v2",
        image_file="a.jpg",
        overlay_file="a.jpg",
        created_at=datetime(2026, 11, 25, tzinfo=UTC),
    )
    return build_prediction_resources(prediction, ModelDescription.from_model_dir(MODEL_DIR, 1))


def refused(resource: dict, expected: str) -> None:
    """The R4B model accepts ``resource``; our checks refuse it, saying ``expected``."""
    MODELS[resource["resourceType"]].model_validate(resource)
    problems = resource_problems(resource)
    assert any(expected in p for p in problems), problems
    with pytest.raises(FhirCheckError):
        check_resource(resource)


def changed(data: dict, change) -> dict:
    data = copy.deepcopy(data)
    change(data)
    return data


def test_the_built_resources_pass(resources):
    for data in resources.all_json():
        assert resource_problems(data) == []
    assert bundle_problems(resources.bundle_json) == []


@pytest.mark.parametrize("status", ["nonsense", "FINAL", "draft"])
def test_status_outside_the_r4_value_sets_is_refused(resources, status):
    for data, where in [
        (resources.observation_json, "Observation.status"),
        (resources.report_json, "DiagnosticReport.status"),
        (resources.source_media_json, "Media.status"),
        (resources.device_json, "Device.status"),
    ]:
        refused(changed(data, lambda d: d.update(status=status)), f"{where} {status!r}")


def test_an_ai_result_may_not_claim_to_be_final(resources):
    for data in (resources.observation_json, resources.report_json):
        refused(changed(data, lambda d: d.update(status="final")), "stays 'preliminary'")


def test_value_set_codes_of_other_elements_are_refused(resources):
    refused(
        changed(resources.device_json, lambda d: d["deviceName"][0].update(type="model")),
        "Device.deviceName.type 'model'",
    )
    refused(
        changed(resources.provenance_json, lambda d: d["entity"][0].update(role="input")),
        "Provenance.entity.role 'input'",
    )
    bundle = changed(resources.bundle_json, lambda d: d["entry"][0]["request"].update(method="GO"))
    assert any("request.method 'GO'" in p for p in bundle_problems(bundle))
    bundle = changed(resources.bundle_json, lambda d: d.update(type="pile"))
    assert any("Bundle.type 'pile'" in p for p in bundle_problems(bundle))


def test_a_wrong_category_or_missing_ai_label_is_refused(resources):
    def lab(data: dict) -> None:
        data["category"] = [
            {"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "vital-signs"}]}
        ]

    refused(changed(resources.observation_json, lab), "Observation.category lacks")
    refused(changed(resources.report_json, lambda d: d.pop("meta")), "meta.security AIAST")
    refused(changed(resources.heatmap_media_json, lambda d: d.pop("meta")), "meta.security AIAST")
    refused(changed(resources.report_json, lambda d: d.pop("conclusion")), "conclusion")


def test_wrong_snomed_codes_and_displays_are_refused(resources):
    def value(code: str, display: str = "Normal"):
        return lambda d: d["valueCodeableConcept"].update(
            coding=[{"system": codes.SNOMED, "code": code, "display": display}]
        )

    obs = resources.observation_json
    refused(changed(obs, value("17621006")), "not a valid SNOMED CT concept id")  # typo
    refused(changed(obs, value("168731009")), "not a code aistack uses")  # a real procedure code
    refused(changed(obs, value("17621005", "Abnormal")), "display 'Abnormal'")
    refused(changed(obs, value("168731009")), "none of the SNOMED CT findings")


def test_wrong_loinc_codes_are_refused(resources):
    def code(value: str):
        return lambda d: d["code"]["coding"][0].update(code=value)

    refused(changed(resources.report_json, code("18748-5")), "not a valid LOINC code")
    refused(changed(resources.report_json, code("36643-5")), "not a code aistack uses")


def test_registered_codes_have_valid_check_digits_and_cover_every_class():
    for code in codes.REGISTERED.values():
        if code.system == codes.SNOMED:
            assert codes.snomed_id_is_valid(code.code), code
        if code.system == codes.LOINC:
            assert codes.loinc_code_is_valid(code.code), code
    assert set(codes.FINDINGS) == set(codes.CLASS_PROBABILITIES) == set(CLASSES)
    assert not codes.snomed_id_is_valid("840539060")  # digits swapped
    assert not codes.loinc_code_is_valid("18784-4")


def test_r4_check_refuses_what_only_r4b_allows(resources):
    # R4B lets Observation.subject be a Practitioner; R4 allows Patient, Group, Device, Location.
    refused(
        changed(
            resources.observation_json,
            lambda d: d.update(subject={"reference": "Practitioner/p1"}),
        ),
        "R4 does not allow a reference to Practitioner",
    )
    # CodeableReference is an R4B datatype: Extension.valueCodeableReference is not in R4.
    extension = {"url": "urn:x", "valueCodeableReference": {"concept": {"text": "x"}}}
    refused(
        changed(resources.device_json, lambda d: d["extension"].append(extension)),
        "Extension has no element 'valueCodeableReference' in R4",
    )
    # Citation is an R4B resource; R4 has none.
    citation = {"resourceType": "Citation", "status": "draft"}
    Bundle.model_validate(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": citation}]}
    )
    problems = r4_problems(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": citation}]}
    )
    assert problems == ["Bundle.entry.resource: resource type 'Citation' does not exist in R4"]
    assert "Citation" not in R4_RESOURCE_TYPES and "Observation" in R4_RESOURCE_TYPES


def test_r4_check_walks_primitive_extensions_and_unknown_elements(resources):
    extended = changed(
        resources.observation_json,
        lambda d: d.update(_status={"extension": [{"url": "urn:x", "valueRatioRange": {}}]}),
    )
    assert any("valueRatioRange" in p for p in r4_problems(extended))
    stray = changed(resources.observation_json, lambda d: d.update(bodyStructure={}))
    assert r4_problems(stray) == [
        "Observation.bodyStructure: Observation has no element 'bodyStructure' in R4"
    ]


def test_a_reference_out_of_the_bundle_is_refused(resources):
    def dangle(bundle: dict) -> None:
        obs = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
        obs["resource"]["device"] = {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}

    problems = bundle_problems(changed(resources.bundle_json, dangle))
    assert any("resolves to no entry" in p for p in problems), problems


def test_an_unconditional_create_is_refused(resources):
    bundle = changed(resources.bundle_json, lambda d: d["entry"][3]["request"].pop("ifNoneExist"))
    problems = bundle_problems(bundle)
    assert problems == ["Bundle.entry[3]: a POST without ifNoneExist duplicates on every retry"], (
        problems
    )


def test_a_bundle_reference_to_the_wrong_type_is_refused(resources):
    def swap(bundle: dict) -> None:
        report = next(
            e for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"
        )
        device = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Device")
        report["resource"]["result"] = [{"reference": device["fullUrl"]}]

    problems = bundle_problems(changed(resources.bundle_json, swap))
    assert any("R4 does not allow a reference to Device" in p for p in problems), problems
