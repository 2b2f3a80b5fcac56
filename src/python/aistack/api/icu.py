"""The ICU-admission routes: the model, one prediction, a batch (JSON list, CSV or upload).

HTTP only: the body is read under the service's limits and handed, raw and with its
Content-Type, to ``aistack.icu.service.IcuService``, which the IRIS REST twin calls too, so
both answer the same JSON and the same errors. The ICU model loads on the first ICU request
(the X-ray readiness never waits for it); a failed load is a 503 on these routes only.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from aistack.api.deps import get_runtime
from aistack.api.inputs import read_body
from aistack.api.openapi import AUTH_ERRORS, BODY_ERRORS, error_responses
from aistack.api.security import authorize
from aistack.auth.keys import Permission, Principal
from aistack.icu.bodies import BATCH_MEDIA_TYPES, CSV, CSV_PART, row_schema
from aistack.icu.service import IcuService
from aistack.runtime import Runtime
from aistack.xray.request_body import JSON, MULTIPART

PREFIX = "/icu/api/v1"
router = APIRouter(prefix=PREFIX, tags=["icu"])
may_predict = authorize(Permission.PREDICT)
may_read = authorize(Permission.READ_OWN)


# --- what the answers look like (documentation: the service shapes them)


class FormField(BaseModel):
    name: str = Field(description="the workbook column")
    label: str = Field(description="for people, e.g. 'Respiratory rate (max)'")


class IcuModelInfo(BaseModel):
    """The model that answers, how it was measured, and what a row may hold."""

    backend: Literal["local", "integratedml"]
    version: str
    training_data_hash: str = Field(description="SHA-256 of the prepared rows it learnt from")
    threshold: float = Field(description="a probability at or above it is labelled 1")
    metrics: dict[str, float] = Field(description="ROC-AUC, Precision, Recall, F-Measure, Accuracy")
    evaluation: str = Field(description="how the metrics were measured")
    explanation_method: str
    contribution_unit: Literal["log-odds", "probability"]
    features: list[str] = Field(description="every feature column a row may hold")
    form_fields: list[FormField] = Field(description="the most informative first")


class ModelRef(BaseModel):
    backend: Literal["local", "integratedml"]
    version: str
    training_data_hash: str


class BatchModelRef(ModelRef):
    threshold: float


class TopFeature(BaseModel):
    feature: str
    value: float | None = Field(description="the row's value; null: missing")
    contribution: float = Field(description="positive: towards ICU admission")


PredictionText = Literal["ICU admission predicted", "ICU admission not predicted"]


class IcuAnswer(BaseModel):
    """One row's risk, why, and the same as a FHIR R4 RiskAssessment."""

    probability: float = Field(ge=0, le=1, description="of ICU admission after the window")
    label: Literal[0, 1]
    prediction: PredictionText
    threshold: float
    model: ModelRef
    contribution_unit: Literal["log-odds", "probability"]
    top_features: list[TopFeature] = Field(description="largest |contribution| first")
    fhir: dict[str, Any] = Field(
        description="RiskAssessment: performer the model's Device, basis the given lab and "
        "vital-sign values as Observations (all contained)"
    )


class BatchRow(BaseModel):
    row: int = Field(ge=1, description="1-based position in the list or the CSV's data rows")
    probability: float = Field(ge=0, le=1)
    label: Literal[0, 1]
    prediction: PredictionText
    top_features: list[TopFeature]


class IcuBatch(BaseModel):
    model: BatchModelRef
    count: int
    contribution_unit: Literal["log-odds", "probability"]
    predictions: list[BatchRow]


# --- request bodies, as the service reads them

ROW_SCHEMA_NAME = "IcuRow"
ROW = {"$ref": f"#/components/schemas/{ROW_SCHEMA_NAME}"}
"""Both POST routes refer to one copy of the 231-column row schema (:func:`add_row_schema`)."""
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": ROW}},
    }
}
BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": {"type": "array", "items": ROW, "minItems": 1}},
            CSV: {
                "schema": {"type": "string", "minLength": 1},
                "description": "UTF-8; a header row of column names, then one row per patient; "
                "an empty cell is a missing value",
            },
            MULTIPART: {
                "schema": {
                    "type": "object",
                    "required": [CSV_PART],
                    "properties": {CSV_PART: {"type": "string", "format": "binary"}},
                    "additionalProperties": False,
                }
            },
        },
    }
}


def add_row_schema(openapi: dict) -> None:
    """Put the row schema the request bodies refer to into the document's components."""
    openapi.setdefault("components", {}).setdefault("schemas", {})[ROW_SCHEMA_NAME] = row_schema()


async def icu_service(runtime: Runtime) -> IcuService:
    """Loaded on first use, off the event loop; 503 while it cannot be."""
    return await run_in_threadpool(runtime.icu_service)


@router.get(
    "/model",
    operation_id="icu_model",
    response_model=IcuModelInfo,
    responses=error_responses(*AUTH_ERRORS, 503),
)
async def icu_model(
    runtime: Runtime = Depends(get_runtime), caller: Principal = Depends(may_read)
) -> JSONResponse:
    """The ICU model: backend, version, metrics, threshold, features and the form's fields."""
    service = await icu_service(runtime)
    return JSONResponse(service.model_json())


@router.post(
    "/predict",
    operation_id="icu_predict",
    response_model=IcuAnswer,
    openapi_extra=PREDICT_BODY,
    responses=error_responses(*AUTH_ERRORS, *BODY_ERRORS),
)
async def icu_predict(
    request: Request,
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_predict),
) -> JSONResponse:
    """The risk of ICU admission for one patient's first-window values (JSON object keyed by
    the workbook's column names; missing values allowed, unknown columns a 422 naming them).
    """
    service = await icu_service(runtime)
    content_type, body = await read_body(request, (JSON,))
    answer = await run_in_threadpool(service.predict_json, body, content_type, caller.client)
    return JSONResponse(answer)


@router.post(
    "/predict/batch",
    operation_id="icu_predict_batch",
    response_model=IcuBatch,
    openapi_extra=BATCH_BODY,
    responses=error_responses(*AUTH_ERRORS, *BODY_ERRORS),
)
async def icu_predict_batch(
    request: Request,
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_predict),
) -> JSONResponse:
    """Many rows at once: a JSON list, a CSV body (text/csv) or a CSV upload (multipart part
    ``file``); at most ``AISTACK_ICU_MAX_BATCH_ROWS`` rows (413 beyond)."""
    service = await icu_service(runtime)
    content_type, body = await read_body(request, BATCH_MEDIA_TYPES)
    answer = await run_in_threadpool(service.batch_json, body, content_type, caller.client)
    return JSONResponse(answer)
