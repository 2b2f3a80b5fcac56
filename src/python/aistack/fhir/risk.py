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

from aistack.fhir.checks import FhirCheckError, coding_problems, resource_problems
from aistack.fhir.codes import (
    AI_ASSERTED,
    AI_DEVICE,
    AI_DEVICE_KIND_EXTENSION,
    ALGORITHM_VERSION,
    ICU_ADMISSION,
    OBSERVATION_STATUS,
    PROBABILITY_UNIT,
)
from aistack.fhir.context import DEVICE_PREFIX
from aistack.fhir.device import MANUFACTURER
from aistack.fhir.r4 import LITERAL_REFERENCE, r4_problems
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

# --- R4 (4.0.1) RiskAssessment elements, for the element check of :func:`risk_problems`
R4_RISK_ASSESSMENT: dict[str, frozenset[str] | None] = {
    **dict.fromkeys(
        (
            "id",
            "meta",
            "implicitRules",
            "language",
            "text",
            "contained",
            "extension",
            "modifierExtension",
            "identifier",
            "status",
            "method",
            "code",
            "occurrenceDateTime",
            "occurrencePeriod",
            "reasonCode",
            "prediction",
            "mitigation",
            "note",
        )
    ),
    "basedOn": frozenset(),
    "parent": frozenset(),
    "basis": frozenset(),
    "subject": frozenset({"Patient", "Group"}),
    "encounter": frozenset({"Encounter"}),
    "condition": frozenset({"Condition"}),
    "performer": frozenset({"Practitioner", "PractitionerRole", "Device"}),
    "reasonReference": frozenset(
        {"Condition", "Observation", "DiagnosticReport", "DocumentReference"}
    ),
}
"""Element → reference target types (empty: any resource; None: not a Reference)."""
R4_RISK_PREDICTION = frozenset(
    (
        "id",
        "extension",
        "modifierExtension",
        "outcome",
        "probabilityDecimal",
        "probabilityRange",
        "qualitativeRisk",
        "relativeRisk",
        "whenPeriod",
        "whenRange",
        "rationale",
    )
)
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
    """What in a RiskAssessment breaks R4 or the project's rules; empty when nothing does.

    The R4 element table (``fhir.r4``) has no RiskAssessment, so its own elements and
    reference targets are checked here against R4's definition; what it contains goes
    through the project's checks (a Device fully, Observations as R4: they are the
    caller's values, not AI results). Codings everywhere: ``checks.coding_problems``.
    """
    problems: list[str] = []
    if resource.get("resourceType") != "RiskAssessment":
        return [f"resource type {resource.get('resourceType')!r} is not RiskAssessment"]
    if resource.get("status") not in OBSERVATION_STATUS:  # R4 binds RiskAssessment.status to it
        problems.append(f"RiskAssessment.status {resource.get('status')!r} is not an R4 code")
    if "subject" not in resource:
        problems.append("RiskAssessment.subject is required")
    contained = {f"#{c.get('id')}": c for c in resource.get("contained") or []}
    for key, value in resource.items():
        if key == "resourceType":
            continue
        if key.removeprefix("_") not in R4_RISK_ASSESSMENT:
            problems.append(f"RiskAssessment has no element {key!r} in R4")
            continue
        targets = R4_RISK_ASSESSMENT[key]
        for item in value if isinstance(value, list) else [value]:
            if targets and isinstance(item, dict):
                problems += _target_problems(f"RiskAssessment.{key}", item, targets, contained)
    for i, prediction in enumerate(resource.get("prediction") or []):
        for key in prediction.keys() - R4_RISK_PREDICTION:
            problems.append(f"RiskAssessment.prediction[{i}] has no element {key!r} in R4")
    referenced = {str(r.get("reference")) for r in _references(resource)}
    for literal, inner in contained.items():
        where = f"RiskAssessment.contained {literal}"
        if literal not in referenced:
            problems.append(f"{where} is referred to by nothing (R4 dom-3)")
        if "meta" in inner:
            problems.append(f"{where} may not carry meta (R4 dom-4, dom-5)")
        is_device = inner.get("resourceType") == "Device"
        found = resource_problems(inner) if is_device else r4_problems(inner)
        problems += [f"{where}: {p}" for p in found]
    problems += coding_problems(resource)
    return problems


def _target_problems(
    where: str, reference: dict[str, Any], allowed: frozenset[str], contained: dict[str, Any]
) -> list[str]:
    literal = reference.get("reference")
    target = reference.get("type")
    if isinstance(literal, str) and literal.startswith("#"):
        if literal not in contained:
            return [f"{where}: {literal} is no contained resource"]
        target = target or contained[literal].get("resourceType")
        if contained[literal].get("resourceType") != target:
            return [f"{where}: {literal} is a {contained[literal].get('resourceType')}"]
    elif (
        target is None and isinstance(literal, str) and (match := LITERAL_REFERENCE.search(literal))
    ):
        target = match.group(1)
    if target is not None and target not in allowed:
        return [f"{where}: R4 does not allow a reference to {target} here"]
    return []


def _references(value: Any) -> list[dict[str, Any]]:
    """Every Reference (an object with a ``reference``) in a JSON tree."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            found.append(value)
        for item in value.values():
            found += _references(item)
    elif isinstance(value, list):
        for item in value:
            found += _references(item)
    return found
