"""The prediction as an AI-asserted imaging Observation (REFERENCE.md §7)."""

from __future__ import annotations

from typing import Any

from aistack.fhir.codes import (
    ABNORMAL,
    AI_ASSERTED,
    CLASS_PROBABILITIES,
    DEEP_LEARNING,
    DICOM_FINDING,
    FINDINGS,
    IMAGING,
    INDETERMINATE,
    NEGATIVE,
    NORMAL,
    POSITIVE,
    PROBABILITY_UNIT,
    RADIOLOGIC_FINDING,
    THORAX,
    Code,
)
from aistack.fhir.context import OBSERVATION_PREFIX, SOURCE_PREFIX, PredictionContext, reference
from aistack.fhir.device import ModelDescription

STATUS = "preliminary"
"""AI output nobody has confirmed yet: never ``final``."""
PROBABILITY_DECIMALS = 6
AI_NOTE = (
    "AI-generated classification of the image, not a diagnosis: a qualified clinician must "
    "review it. COVID-19 is reported positive only when it is the top class and its "
    "probability exceeds the threshold ({threshold:g})."
)
METHOD_TEXT = "Deep learning (convolutional neural network) classification of a chest X-ray"


def observation_json(ctx: PredictionContext, model: ModelDescription) -> dict[str, Any]:
    record = ctx.record
    finding = finding_code(record.label)
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ctx.resource_id(OBSERVATION_PREFIX),
        "meta": {"security": [AI_ASSERTED.coding()]},
        "identifier": [ctx.prediction_identifier()],
        "status": STATUS,
        "category": [IMAGING.concept()],
        "code": {
            "coding": [RADIOLOGIC_FINDING.coding(), DICOM_FINDING.coding()],
            "text": "Chest X-ray finding (AI classification)",
        },
        "effectiveDateTime": ctx.issued,
        "issued": ctx.issued,
        "valueCodeableConcept": finding.concept(),
        "interpretation": [(NORMAL if record.label == "normal" else ABNORMAL).concept()],
        "note": [{"text": AI_NOTE.format(threshold=record.threshold)}],
        "bodySite": THORAX.concept(),
        "method": DEEP_LEARNING.concept(METHOD_TEXT),
        "device": reference("Device", model.device_id),
        "derivedFrom": [ctx.imaging_study() or reference("Media", ctx.resource_id(SOURCE_PREFIX))],
        "component": [_probability(ctx, name) for name in CLASS_PROBABILITIES],
    }
    if (order := ctx.order()) is not None:
        observation["basedOn"] = [order]
    if (subject := ctx.subject()) is not None:
        observation["subject"] = subject
    return observation


def finding_code(label: str) -> Code:
    """The SNOMED CT concept of a class label; a label the model does not have is refused."""
    try:
        return FINDINGS[label]
    except KeyError:
        raise ValueError(f"label {label!r} is not one of {sorted(FINDINGS)}") from None


def _probability(ctx: PredictionContext, name: str) -> dict[str, Any]:
    try:
        probability = float(ctx.record.probabilities[name])
    except KeyError:
        raise ValueError(f"the prediction has no probability for {name!r}") from None
    component: dict[str, Any] = {
        "code": CLASS_PROBABILITIES[name].concept(),
        "valueQuantity": {
            "value": round(probability, PROBABILITY_DECIMALS),
            "unit": PROBABILITY_UNIT.display,
            "system": PROBABILITY_UNIT.system,
            "code": PROBABILITY_UNIT.code,
        },
    }
    if name == "covid":
        component["interpretation"] = [_covid_interpretation(ctx).concept()]
    return component


def _covid_interpretation(ctx: PredictionContext) -> Code:
    """POS by the covid rule; IND when covid leads but stays under the threshold; else NEG."""
    if ctx.record.covid_positive:
        return POSITIVE
    return INDETERMINATE if ctx.record.label == "covid" else NEGATIVE
