"""The FHIR builders: each resource validates as FHIR (R4B models) and carries what §7 asks.

Built from real PredictionRecords and the committed model's folder; nothing is mocked.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.media import Media
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from aistack.fhir import (
    MediaLinks,
    ModelDescription,
    PredictionResources,
    as_json,
    build_prediction_resources,
    codes,
)
from aistack.fhir.checks import resource_problems
from aistack.store import PredictionRecord
from aistack.xray.labels import CLASSES
from tests.conftest import MODEL_DIR

PROBABILITIES = {"covid": 0.81, "normal": 0.07, "pneumonia_bac": 0.12}
LINKS = MediaLinks(
    image_url="https://aistack.example/static/source/x.png",
    overlay_url="https://aistack.example/static/result/x.jpg",
)
DICOM = {
    "patient_id": "PID-0042",
    "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
    "series_instance_uid": "1.2.826.0.1.3680043.8.498.2",
    "sop_instance_uid": "1.2.826.0.1.3680043.8.498.3",
    "accession_number": "ACC-7",
}


def record(**changes) -> PredictionRecord:
    values = {
        "model_name": "covid19",
        "model_version": 1,
        "input_sha256": hashlib.sha256(b"an x-ray").hexdigest(),
        "probabilities": PROBABILITIES,
        "label": "covid",
        "covid_positive": True,
        "threshold": 0.65,
        "latency_ms": 12.5,
        "endpoint": "v2",
        "image_file": "0123.png",
        "heatmap_file": "0123.jpg",
        "overlay_file": "0123.jpg",
        "created_at": datetime(2026, 11, 25, 10, 30, 0, tzinfo=UTC),
    }
    return PredictionRecord.create(**{**values, **changes})


@pytest.fixture(scope="module")
def model() -> ModelDescription:
    return ModelDescription.from_model_dir(MODEL_DIR, 1)


@pytest.fixture(scope="module")
def built(model: ModelDescription) -> tuple[PredictionRecord, PredictionResources]:
    prediction = record()
    return prediction, build_prediction_resources(prediction, model, LINKS)


def codings(concept: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept["coding"]}


def test_every_resource_validates_with_the_r4b_model_and_passes_the_checks(built):
    _, resources = built
    pairs = [
        (Device, resources.device_json),
        (Media, resources.source_media_json),
        (Media, resources.heatmap_media_json),
        (Observation, resources.observation_json),
        (DiagnosticReport, resources.report_json),
        (Provenance, resources.provenance_json),
    ]
    for model_class, data in pairs:
        validated = model_class.model_validate(data)
        assert validated.id == data["id"]
        assert resource_problems(data) == []
        assert resource_problems(as_json(validated)) == []  # the library's JSON passes too
    assert isinstance(resources.observation, Observation)
    assert isinstance(resources.bundle, Bundle)


def test_observation_is_an_ai_asserted_preliminary_imaging_finding(built, model):
    prediction, resources = built
    obs = resources.observation_json
    assert obs["id"] == f"obs-{prediction.id}"
    assert obs["meta"]["security"] == [codes.AI_ASSERTED.coding()]
    assert obs["status"] == "preliminary"
    assert codings(obs["category"][0]) == {(codes.OBSERVATION_CATEGORY, "imaging")}
    assert (codes.SNOMED, "118247008") in codings(obs["code"])
    assert obs["valueCodeableConcept"]["coding"] == [
        {"system": codes.SNOMED, "code": "840539006", "display": "COVID-19"}
    ]
    assert obs["identifier"] == [{"system": codes.PREDICTION_SYSTEM, "value": prediction.id}]
    assert obs["effectiveDateTime"] == obs["issued"] == "2026-11-25T10:30:00.000Z"
    assert obs["device"] == {"reference": f"Device/{model.device_id}"}
    assert obs["derivedFrom"] == [{"reference": f"Media/src-{prediction.id}"}]
    assert codings(obs["interpretation"][0]) == {(codes.V3_INTERPRETATION, "A")}
    assert obs["method"]["coding"][0]["code"] == "Deep-Learning-Models"
    assert "subject" not in obs


def test_observation_has_one_probability_component_per_class(built):
    prediction, resources = built
    components = resources.observation_json["component"]
    assert [c["code"]["coding"][0]["code"] for c in components] == list(CLASSES)
    for component, name in zip(components, CLASSES, strict=True):
        quantity = component["valueQuantity"]
        assert quantity["value"] == pytest.approx(prediction.probabilities[name])
        assert (quantity["system"], quantity["code"], quantity["unit"]) == (codes.UCUM, "1", "1")
    covid = components[0]["interpretation"][0]["coding"][0]["code"]
    assert covid == "POS"


@pytest.mark.parametrize(
    ("label", "positive", "finding", "interpretation", "covid"),
    [
        ("covid", True, "840539006", "A", "POS"),
        ("covid", False, "840539006", "A", "IND"),  # covid leads, under the threshold
        ("normal", False, "17621005", "N", "NEG"),
        ("pneumonia_bac", False, "53084003", "A", "NEG"),
    ],
)
def test_value_and_interpretations_follow_the_label_and_the_covid_rule(
    model, label, positive, finding, interpretation, covid
):
    resources = build_prediction_resources(
        record(label=label, covid_positive=positive), model, LINKS
    )
    obs = resources.observation_json
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == finding
    assert obs["interpretation"][0]["coding"][0]["code"] == interpretation
    assert obs["component"][0]["interpretation"][0]["coding"][0]["code"] == covid
    assert resources.report_json["conclusionCode"][0]["coding"][0]["code"] == finding


def test_report_is_a_preliminary_radiology_report_with_a_readable_ai_conclusion(built):
    prediction, resources = built
    report = resources.report_json
    assert report["status"] == "preliminary"
    assert codings(report["category"][0]) == {(codes.V2_SERVICE_SECTION, "RAD")}
    assert codings(report["code"]) == {(codes.LOINC, "18748-4")}
    assert report["result"] == [{"reference": f"Observation/obs-{prediction.id}"}]
    assert report["media"][0]["link"] == {"reference": f"Media/heatmap-{prediction.id}"}
    assert report["identifier"] == [{"system": codes.PREDICTION_SYSTEM, "value": prediction.id}]
    conclusion = report["conclusion"]
    assert "AI-generated" in conclusion and "not a diagnosis" in conclusion
    assert "COVID-19 (probability 0.81" in conclusion
    assert report["meta"]["security"] == [codes.AI_ASSERTED.coding()]


def test_heatmap_media_points_at_the_overlay_and_names_the_model(built, model):
    prediction, resources = built
    media = resources.heatmap_media_json
    assert media["content"]["contentType"] == "image/jpeg"
    assert media["content"]["url"] == LINKS.overlay_url
    assert codings(media["type"]) == {(codes.MEDIA_TYPE, "image")}
    assert media["device"] == {"reference": f"Device/{model.device_id}"}
    assert media["identifier"] == [{"system": codes.PREDICTION_SYSTEM, "value": prediction.id}]
    assert media["meta"]["security"] == [codes.AI_ASSERTED.coding()]
    source = resources.source_media_json
    assert source["content"] == {
        "title": "Chest X-ray analysed by the model",
        "contentType": "image/png",
        "url": LINKS.image_url,
    }
    assert source["identifier"][0] == {
        "system": codes.INPUT_SHA256_SYSTEM,
        "value": prediction.input_sha256,
    }


def test_heatmap_bytes_are_embedded_with_size_and_sha1(model):
    jpeg = b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9"
    resources = build_prediction_resources(record(), model, MediaLinks(overlay_jpeg=jpeg))
    content = resources.heatmap_media_json["content"]
    assert base64.b64decode(content["data"]) == jpeg
    assert content["size"] == len(jpeg)
    assert base64.b64decode(content["hash"]) == hashlib.sha1(jpeg).digest()
    assert "url" not in content
    assert resources.heatmap_media.content.data is not None  # the R4B model takes it


def test_a_prediction_without_a_heatmap_has_no_heatmap_media(model):
    resources = build_prediction_resources(
        record(heatmap_file=None, overlay_file=None), model, MediaLinks()
    )
    assert resources.heatmap_media_json is None and resources.heatmap_media is None
    assert "media" not in resources.report_json
    assert len(resources.provenance_json["target"]) == 2
    assert [e["resource"]["resourceType"] for e in resources.bundle_json["entry"]] == [
        "Device",
        "Media",
        "Observation",
        "DiagnosticReport",
        "Provenance",
    ]


def test_device_identifies_the_trained_artifact(built, model):
    _, resources = built
    device = resources.device_json
    assert device["identifier"] == [
        {"system": codes.MODEL_ARTIFACT_SYSTEM, "value": model.artifact_sha256}
    ]
    assert {(n["name"], n["type"]) for n in device["deviceName"]} >= {("covid19", "model-name")}
    assert device["version"][0]["value"] == "1"
    assert codings(device["type"]) == {(codes.AI_DEVICE_TYPE, "Artificial-Intelligence")}


def test_provenance_says_the_model_made_the_results_from_the_input(built, model):
    prediction, resources = built
    provenance = resources.provenance_json
    assert {t["reference"] for t in provenance["target"]} == {
        f"Observation/obs-{prediction.id}",
        f"DiagnosticReport/report-{prediction.id}",
        f"Media/heatmap-{prediction.id}",
    }
    (agent,) = provenance["agent"]
    assert agent["who"] == {"reference": f"Device/{model.device_id}"}
    assert codings(agent["type"]) == {(codes.PROVENANCE_PARTICIPANT_TYPE, "performer")}
    assert provenance["recorded"] == "2026-11-25T10:30:00.000Z"
    assert codings(provenance["reason"][0]) == {(codes.V3_OBSERVATION_VALUE, "AIAST")}
    (entity,) = provenance["entity"]
    assert entity["what"]["identifier"]["value"] == prediction.input_sha256
    assert provenance["meta"]["tag"] == [{"system": codes.PREDICTION_SYSTEM, "code": prediction.id}]


def test_a_dicom_record_names_patient_study_and_accession(model):
    prediction = record(**DICOM)
    resources = build_prediction_resources(prediction, model, LINKS)
    patient = {
        "type": "Patient",
        "identifier": {"type": codes.MEDICAL_RECORD_NUMBER.concept(), "value": "PID-0042"},
    }
    study = {
        "type": "ImagingStudy",
        "identifier": {
            "type": codes.STUDY_INSTANCE_UID.concept(),
            "system": "urn:dicom:uid",
            "value": "urn:oid:1.2.826.0.1.3680043.8.498.1",
        },
    }
    order = {
        "type": "ServiceRequest",
        "identifier": {"type": codes.ACCESSION.concept(), "value": "ACC-7"},
    }
    obs, report = resources.observation_json, resources.report_json
    for resource in (obs, report, resources.source_media_json, resources.heatmap_media_json):
        assert resource["subject"] == patient
        assert resource["basedOn"] == [order]
    assert obs["derivedFrom"] == [study]
    assert report["imagingStudy"] == [study]
    assert study in [e["what"] for e in resources.provenance_json["entity"]]
    source_ids = {i["value"] for i in resources.source_media_json["identifier"]}
    assert "urn:oid:1.2.826.0.1.3680043.8.498.3" in source_ids  # SOP Instance UID
    assert resources.bundle.entry  # the whole set still validates
    system = build_prediction_resources(prediction, model, LINKS, patient_system="urn:oid:1.2.3")
    assert system.observation_json["subject"]["identifier"]["system"] == "urn:oid:1.2.3"


def test_a_record_without_dicom_fields_builds_without_subject(model):
    resources = build_prediction_resources(record(), model)
    for data in resources.all_json():
        assert "subject" not in data and "basedOn" not in data
    assert "imagingStudy" not in resources.report_json
    assert resources.source_media_json["content"] == {
        "title": "Chest X-ray analysed by the model",
        "contentType": "image/png",
    }


def test_ids_are_stable_for_a_prediction(model):
    prediction = record()
    first = build_prediction_resources(prediction, model, LINKS)
    again = build_prediction_resources(prediction, model, LINKS)
    assert first.bundle_json == again.bundle_json  # a retried publish sends the same Bundle
    assert [d["id"] for d in first.all_json()] == [
        model.device_id,
        f"src-{prediction.id}",
        f"heatmap-{prediction.id}",
        f"obs-{prediction.id}",
        f"report-{prediction.id}",
        f"prov-{prediction.id}",
    ]


def test_naive_times_and_unknown_labels_are_refused(model):
    with pytest.raises(ValueError, match="timezone-aware"):
        build_prediction_resources(record(created_at=datetime(2026, 1, 1)), model)
    with pytest.raises(ValueError, match="label 'tuberculosis'"):
        build_prediction_resources(record(label="tuberculosis"), model)
    missing = {"covid": 0.9, "normal": 0.1}
    with pytest.raises(ValueError, match="pneumonia_bac"):
        build_prediction_resources(record(probabilities=missing), model)
