"""The preliminary radiology DiagnosticReport that carries the Observation and the heatmap."""

from __future__ import annotations

from typing import Any

from aistack.fhir.codes import AI_ASSERTED, DIAGNOSTIC_IMAGING_STUDY, FINDINGS, RADIOLOGY
from aistack.fhir.context import (
    HEATMAP_PREFIX,
    OBSERVATION_PREFIX,
    REPORT_PREFIX,
    PredictionContext,
    reference,
)
from aistack.fhir.device import ModelDescription
from aistack.fhir.observation import finding_code

STATUS = "preliminary"


def report_json(
    ctx: PredictionContext, model: ModelDescription, with_heatmap: bool
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": ctx.resource_id(REPORT_PREFIX),
        "meta": {"security": [AI_ASSERTED.coding()]},
        "identifier": [ctx.prediction_identifier()],
        "status": STATUS,
        "category": [RADIOLOGY.concept()],
        "code": DIAGNOSTIC_IMAGING_STUDY.concept("Chest X-ray AI classification"),
        "effectiveDateTime": ctx.issued,
        "issued": ctx.issued,
        "result": [reference("Observation", ctx.resource_id(OBSERVATION_PREFIX))],
        "conclusion": conclusion(ctx, model),
        "conclusionCode": [finding_code(ctx.record.label).concept()],
    }
    if (order := ctx.order()) is not None:
        report["basedOn"] = [order]
    if (subject := ctx.subject()) is not None:
        report["subject"] = subject
    if (study := ctx.imaging_study()) is not None:
        report["imagingStudy"] = [study]
    if with_heatmap:
        report["media"] = [
            {
                "comment": "Grad-CAM heatmap: where the model looked",
                "link": reference("Media", ctx.resource_id(HEATMAP_PREFIX)),
            }
        ]
    return report


def conclusion(ctx: PredictionContext, model: ModelDescription) -> str:
    """One readable paragraph: what the model says, how sure, and that it is no diagnosis."""
    record = ctx.record
    probabilities = ", ".join(
        f"{code.display} {record.probabilities[name]:.2f}" for name, code in FINDINGS.items()
    )
    covid = "positive" if record.covid_positive else "not positive"
    return (
        f"AI-generated result, not a diagnosis. The model {model.name} v{model.version} "
        f"classifies this chest X-ray as {finding_code(record.label).display} "
        f"(probability {record.probabilities[record.label]:.2f}; {probabilities}). "
        f"COVID-19 is {covid} by the rule 'top class and probability above "
        f"{record.threshold:g}'. A qualified clinician must review the image and this result."
    )
