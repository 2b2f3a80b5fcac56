"""Provenance (AI Transparency IG): the model made the results, from this input image.

R4 Provenance has no identifier, so the prediction id rides in ``meta.tag``: the transaction's
conditional create searches ``_tag`` for it.
"""

from __future__ import annotations

from typing import Any

from aistack.fhir.codes import (
    AI_ASSERTED,
    AI_DEVICE,
    CREATE,
    INPUT_SHA256_SYSTEM,
    PERFORMER,
    PREDICTION_SYSTEM,
)
from aistack.fhir.context import (
    HEATMAP_PREFIX,
    OBSERVATION_PREFIX,
    PROVENANCE_PREFIX,
    REPORT_PREFIX,
    SOURCE_PREFIX,
    PredictionContext,
    reference,
)
from aistack.fhir.device import ModelDescription

INPUT_ROLE = "derivation"
"""R4 provenance-entity-role: the results were computed from the image (a transformation of
one entity into another); the AI Transparency IG gives its AI inputs this role too."""


def prediction_tag(ctx: PredictionContext) -> dict[str, str]:
    return {"system": PREDICTION_SYSTEM, "code": ctx.prediction_id}


def provenance_json(
    ctx: PredictionContext, model: ModelDescription, with_heatmap: bool
) -> dict[str, Any]:
    targets = [
        reference("Observation", ctx.resource_id(OBSERVATION_PREFIX)),
        reference("DiagnosticReport", ctx.resource_id(REPORT_PREFIX)),
    ]
    if with_heatmap:
        targets.append(reference("Media", ctx.resource_id(HEATMAP_PREFIX)))
    source = reference("Media", ctx.resource_id(SOURCE_PREFIX))
    source["identifier"] = {"system": INPUT_SHA256_SYSTEM, "value": ctx.record.input_sha256}
    entities = [{"role": INPUT_ROLE, "what": source}]
    if (study := ctx.imaging_study()) is not None:
        entities.append({"role": INPUT_ROLE, "what": study})
    return {
        "resourceType": "Provenance",
        "id": ctx.resource_id(PROVENANCE_PREFIX),
        "meta": {"tag": [prediction_tag(ctx)]},
        "target": targets,
        "occurredDateTime": ctx.issued,
        "recorded": ctx.issued,
        "reason": [AI_ASSERTED.concept()],
        "activity": CREATE.concept(),
        "agent": [
            {
                "type": PERFORMER.concept(),
                "role": [AI_DEVICE.concept()],
                "who": reference("Device", model.device_id),
            }
        ],
        "entity": entities,
    }
