"""The transaction Bundle: references resolve inside it, and each entry is a conditional
create on the right search, so a retried publish makes nothing twice."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle

from aistack.fhir import MediaLinks, ModelDescription, build_prediction_resources
from aistack.fhir.bundle import conditional_query
from aistack.store import PredictionRecord
from tests.conftest import MODEL_DIR


@pytest.fixture(scope="module")
def model() -> ModelDescription:
    return ModelDescription.from_model_dir(MODEL_DIR, 1)


@pytest.fixture(scope="module")
def prediction() -> PredictionRecord:
    return PredictionRecord.create(
        id="5f0c2b9e8d7a4c3b9a1e0f2d3c4b5a69",
        model_name="covid19",
        model_version=1,
        input_sha256=hashlib.sha256(b"image").hexdigest(),
        probabilities={"covid": 0.2, "normal": 0.1, "pneumonia_bac": 0.7},
        label="pneumonia_bac",
        covid_positive=False,
        threshold=0.65,
        latency_ms=5.0,
        endpoint="v1",
        image_file="5f0c.jpg",
        overlay_file="5f0c.jpg",
        created_at=datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
        study_instance_uid="1.2.3.4",
        patient_id="P1",
    )


@pytest.fixture(scope="module")
def bundle(prediction, model) -> dict:
    links = MediaLinks(overlay_url="https://aistack.example/static/result/5f0c.jpg")
    return build_prediction_resources(prediction, model, links).bundle_json


def entry(bundle: dict, resource_type: str, index: int = 0) -> dict:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type][index]


def references(value) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for item in value.values() for r in references(item)]
    if isinstance(value, list):
        return [r for item in value for r in references(item)]
    return []


def test_it_is_a_valid_transaction_of_posts(bundle):
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    for item in bundle["entry"]:
        assert item["fullUrl"].startswith("urn:uuid:")
        assert item["request"]["method"] == "POST"
        assert item["request"]["url"] == item["resource"]["resourceType"]
        assert "id" not in item["resource"]  # the server gives a created resource its id


def test_every_reference_resolves_to_an_entry_of_the_right_type(bundle):
    by_url = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
    literals = references([e["resource"] for e in bundle["entry"]])
    assert literals and all(r in by_url for r in literals)  # no Type/id left, none dangling
    obs, report = entry(bundle, "Observation")["resource"], entry(bundle, "DiagnosticReport")
    assert by_url[obs["device"]["reference"]] == "Device"
    assert by_url[report["resource"]["result"][0]["reference"]] == "Observation"
    assert by_url[report["resource"]["media"][0]["link"]["reference"]] == "Media"
    heatmap = entry(bundle, "Media", 1)
    assert report["resource"]["media"][0]["link"]["reference"] == heatmap["fullUrl"]
    provenance = entry(bundle, "Provenance")["resource"]
    assert {by_url[t["reference"]] for t in provenance["target"]} == {
        "Observation",
        "DiagnosticReport",
        "Media",
    }
    assert by_url[provenance["agent"][0]["who"]["reference"]] == "Device"


def test_logical_references_stay_logical(bundle):
    obs = entry(bundle, "Observation")["resource"]
    assert obs["subject"] == {
        "type": "Patient",
        "identifier": obs["subject"]["identifier"],
    }
    assert obs["derivedFrom"][0]["identifier"]["value"] == "urn:oid:1.2.3.4"


def test_conditional_creates_search_the_right_identifiers(bundle, prediction, model):
    queries = {
        (e["resource"]["resourceType"], i): e["request"]["ifNoneExist"]
        for i, e in enumerate(bundle["entry"])
    }
    assert list(queries.values()) == [
        f"identifier=urn:aistack:model-artifact-sha256|{model.artifact_sha256}",
        f"identifier=urn:aistack:input-sha256|{prediction.input_sha256}",
        f"identifier=urn:aistack:prediction|{prediction.id}",
        f"identifier=urn:aistack:prediction|{prediction.id}",
        f"identifier=urn:aistack:prediction|{prediction.id}",
        f"_tag=urn:aistack:prediction|{prediction.id}",
    ]
    assert [t for t, _ in queries] == [
        "Device",
        "Media",
        "Media",
        "Observation",
        "DiagnosticReport",
        "Provenance",
    ]


def test_each_query_finds_its_own_resource(bundle):
    """The search matches the resource it guards (by identifier, or by tag for Provenance)."""
    for item in bundle["entry"]:
        resource = item["resource"]
        name, _, token = item["request"]["ifNoneExist"].partition("=")
        system, _, value = token.partition("|")
        if name == "_tag":
            assert {"system": system, "code": value} in resource["meta"]["tag"]
        else:
            assert name == "identifier"
            assert {"system": system, "value": value} in resource["identifier"]


def test_query_values_are_url_encoded():
    resource = {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:x", "value": "a b&c"}],
    }
    assert conditional_query(resource) == "identifier=urn:x|a%20b%26c"


def test_the_bundle_is_plain_json_and_the_same_on_every_build(prediction, model, bundle):
    again = build_prediction_resources(
        prediction, model, MediaLinks(overlay_url="https://aistack.example/static/result/5f0c.jpg")
    )
    assert json.dumps(again.bundle_json, sort_keys=True) == json.dumps(bundle, sort_keys=True)
