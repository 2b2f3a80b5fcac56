"""An ICU-admission prediction as a FHIR R4 RiskAssessment, with the model as its Device.

The RiskAssessment is self-contained, so a client can keep or forward it as it is: it
contains the model's Device (``performer``) and one Observation per lab or vital-sign value
the prediction was given (``basis``). The workbook's values are the dataset's own scaling to
[-1, 1], not clinical units: each Observation says so in its code's text and carries the
value as a dimensionless quantity (UCUM ``1``), coded by its workbook column under
:data:`ICU_COLUMN_SYSTEM`. No LOINC code is attached: a LOINC vital-sign or lab code
promises a clinical unit these scaled numbers do not have.

The model is identified by backend, version and the SHA-256 of its training data
(``ModelMetadata``), as IHE AI Results asks of an algorithm identifier; the Device's id is
derived from the three. The outcome is SNOMED CT "Admission to intensive care unit". Each
RiskAssessment is identified by its prediction (:data:`ICU_PREDICTION_SYSTEM`, the uuid of
its id), so a FHIR server keeps it once however often it is sent.

Validation, on every build: fhir.resources (R4B models; RiskAssessment is the same in R4 and
R4B) and :func:`risk_problems`, which applies the project's R4 and coding checks
(``fhir.r4``, ``fhir.checks``) to the RiskAssessment and what it contains.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.riskassessment import RiskAssessment

from aistack.fhir.checks import FhirCheckError, resource_problems
from aistack.fhir.codes import (
    AI_ASSERTED,
    AI_DEVICE,
    AI_DEVICE_KIND_EXTENSION,
    ALGORITHM_VERSION,
    ICU_ADMISSION,
    PROBABILITY_UNIT,
)
from aistack.fhir.context import DEVICE_PREFIX
from aistack.fhir.device import MANUFACTURER
from aistack.icu.predictor import IcuPrediction, ModelMetadata

# --- systems and codes of the ICU resources
ICU_COLUMN_SYSTEM = "urn:aistack:icu-column"
"""A value by its column name in the Sirio-Libanes workbook (Observation.code)."""
ICU_MODEL_SYSTEM = "urn:aistack:icu-model"
"""The ICU model by ``<backend>/<version>`` (Device.identifier)."""
TRAINING_DATA_SYSTEM = "urn:aistack:icu-training-data-sha256"
"""The rows a model was trained on, by the SHA-256 of the prepared table (Device.identifier)."""
PATIENT_VISIT_SYSTEM = "urn:aistack:icu-patient-visit"
"""The workbook's ``PATIENT_VISIT_IDENTIFIER`` (RiskAssessment.subject.identifier)."""
ICU_PREDICTION_SYSTEM = "urn:aistack:icu-prediction"
"""One prediction, by the 32-hex uuid its RiskAssessment's id carries (``risk-<hex>``):
what a conditional create searches, so that a stored or published one is never repeated."""


STATUS = "final"
SUBJECT_UNKNOWN = "Patient (not identified)"
MODEL_NAME = "icu-admission"
SCALED_NOTE = "scaled to [-1, 1] as in the Sirio-Libanes workbook (not a clinical unit)"
AI_NOTE = (
    "AI-generated risk estimate of a research demonstration, not a diagnosis and not for "
    "clinical decisions. Lab and vital-sign values are the dataset's own scaling to [-1, 1]. "
    "Label 1 (admission predicted) when the probability is at or above the model's threshold "
    "({threshold:g})."
)
DEVICE_NOTE = (
    "Estimates the probability that a hospitalised COVID-19 patient is admitted to the ICU "
    "after the first two hours, from that window's values (Sirio-Libanes data). Its outputs "
    "are AI-generated, not diagnoses, and need review by a qualified clinician."
)
METHODS = {
    "local": "Gradient-boosted trees scored in-process (local backend), explained by TreeSHAP",
    "integratedml": "IRIS IntegratedML model scored with SQL PREDICT/PROBABILITY, explained by "
    "occlusion",
}

NOT_IN_ID = re.compile(r"[^A-Za-z0-9]+")


def icu_device_id(meta: ModelMetadata) -> str:
    """Stable per (backend, version, training data): a retrained model is a new Device."""
    key = f"{meta.backend}\0{meta.version}\0{meta.training_data_hash}".encode()
    return f"{DEVICE_PREFIX}-icu-{hashlib.sha256(key).hexdigest()[:32]}"


def icu_device_json(meta: ModelMetadata) -> dict[str, Any]:
    """The ICU model as a Device (AI Transparency IG AI device, DICOM TID 4019 version)."""
    return {
        "resourceType": "Device",
        "id": icu_device_id(meta),
        "extension": [
            {"url": AI_DEVICE_KIND_EXTENSION, "valueCodeableConcept": AI_DEVICE.concept()}
        ],
        "identifier": [
            {"system": ICU_MODEL_SYSTEM, "value": f"{meta.backend}/{meta.version}"},
            {"system": TRAINING_DATA_SYSTEM, "value": meta.training_data_hash},
        ],
        "status": "active",
        "manufacturer": MANUFACTURER,
        "deviceName": [
            {"name": MODEL_NAME, "type": "model-name"},
            {
                "name": f"{MANUFACTURER} ICU-admission predictor ({meta.backend}) v{meta.version}",
                "type": "user-friendly-name",
            },
        ],
        "type": AI_DEVICE.concept(),
        "version": [{"type": ALGORITHM_VERSION.concept(), "value": meta.version}],
        "note": [{"text": DEVICE_NOTE}],
    }


def subject_reference(subject_id: str | None) -> dict[str, Any]:
    """The patient by the workbook's visit identifier, or a display-only reference."""
    if subject_id is None:
        return {"type": "Patient", "display": SUBJECT_UNKNOWN}
    return {
        "type": "Patient",
        "identifier": {"system": PATIENT_VISIT_SYSTEM, "value": subject_id},
        "display": f"Patient visit {subject_id}",
    }


def observation_id(column: str) -> str:
    """A contained Observation's id from its column: ``"HEART_RATE_MAX"`` → ``"heart-rate-max"``."""
    return "obs-" + NOT_IN_ID.sub("-", column).strip("-").lower()


def basis_observation_json(
    column: str, value: float, label: str, subject: dict[str, Any]
) -> dict[str, Any]:
    """One given value as a (contained) Observation, in the dataset's own scaling."""
    return {
        "resourceType": "Observation",
        "id": observation_id(column),
        "status": "final",
        "code": {
            "coding": [{"system": ICU_COLUMN_SYSTEM, "code": column, "display": label}],
            "text": f"{label}, {SCALED_NOTE}",
        },
        "subject": subject,
        "valueQuantity": {
            "value": value,
            "unit": PROBABILITY_UNIT.display,
            "system": PROBABILITY_UNIT.system,
            "code": PROBABILITY_UNIT.code,
        },
    }


def rationale(answer: IcuPrediction, meta: ModelMetadata, label_of: Callable[[str], str]) -> str:
    verdict = "at or above" if answer.label else "below"
    text = f"Probability {answer.probability:.3f} is {verdict} the threshold {answer.threshold:g}."
    if answer.top_features:
        moved = "; ".join(
            f"{label_of(c.feature)} {c.contribution:+.3f}" for c in answer.top_features
        )
        text += f" Strongest contributions ({meta.contribution_unit}): {moved}."
    return text


def risk_assessment_json(
    answer: IcuPrediction,
    meta: ModelMetadata,
    measured: Mapping[str, float],
    *,
    subject_id: str | None = None,
    label_of: Callable[[str], str] = str,
    issued: datetime | None = None,
) -> dict[str, Any]:
    """The checked and validated RiskAssessment of one prediction.

    ``measured`` maps workbook columns to the lab and vital-sign values given (each becomes
    a contained basis Observation); ``subject_id`` is the patient's visit identifier, when
    given; ``label_of`` names a column for people. Raises ``FhirCheckError`` (a ValueError)
    or pydantic's ValidationError when the result would not be valid R4.
    """
    issued = issued or datetime.now(UTC)
    key = uuid.uuid4().hex
    subject = subject_reference(subject_id)
    device = icu_device_json(meta)
    observations = [
        basis_observation_json(column, value, label_of(column), subject)
        for column, value in measured.items()
    ]
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": f"risk-{key}",
        "meta": {"security": [AI_ASSERTED.coding()]},
        "contained": [device, *observations],
        "identifier": [{"system": ICU_PREDICTION_SYSTEM, "value": key}],
        "status": STATUS,
        "method": {"text": METHODS.get(meta.backend, meta.backend)},
        "code": {"text": "Risk of ICU admission after the first two hours in hospital"},
        "subject": subject,
        "occurrenceDateTime": issued.isoformat(timespec="seconds"),
        "performer": {
            "reference": f"#{device['id']}",
            "type": "Device",
            "display": device["deviceName"][1]["name"],
        },
        "prediction": [
            {
                "outcome": ICU_ADMISSION.concept("ICU admission after the first two hours"),
                "probabilityDecimal": answer.probability,
                "rationale": rationale(answer, meta, label_of),
            }
        ],
        "note": [{"text": AI_NOTE.format(threshold=answer.threshold)}],
    }
    if observations:
        resource["basis"] = [
            {"reference": f"#{o['id']}", "type": "Observation", "display": o["code"]["text"]}
            for o in observations
        ]
    check_risk_assessment(resource)
    return resource


def check_risk_assessment(resource: dict[str, Any]) -> None:
    """Raise ``FhirCheckError`` listing what :func:`risk_problems` finds, then validate the
    resource with fhir.resources (pydantic's ValidationError)."""
    if problems := risk_problems(resource):
        raise FhirCheckError(problems)
    RiskAssessment.model_validate(resource)


def risk_problems(resource: dict[str, Any]) -> list[str]:
    """What in a RiskAssessment breaks R4 or the project's rules; empty when nothing does
    (``checks.resource_problems``: the R4 table, contained resources included, and the
    project's RiskAssessment rule)."""
    if resource.get("resourceType") != "RiskAssessment":
        return [f"resource type {resource.get('resourceType')!r} is not RiskAssessment"]
    return resource_problems(resource)
