"""The clean API: JSON or multipart in, snake_case JSON out, predictions addressable by id."""

from __future__ import annotations

import json
from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from aistack.api.deps import file_url, get_runtime
from aistack.api.inputs import (
    FORM_TYPES,
    decode_base64,
    image_from_form,
    media_type,
)
from aistack.errors import BadRequest, MissingInput, NotFound, UnsupportedMediaType
from aistack.runtime import Runtime
from aistack.store import PredictionRecord
from aistack.xray.files import HEATMAP, RESULT, SOURCE

router = APIRouter(prefix="/api/v2/xray", tags=["v2"])


class PredictionRequest(BaseModel):
    image_b64: str = Field(description="base64 of a JPEG or PNG file (a data: URL is accepted)")
    heatmap: bool = Field(True, description="also compute and render the Grad-CAM heatmap")


class Probabilities(BaseModel):
    covid: float
    normal: float
    pneumonia_bac: float


class ModelRef(BaseModel):
    name: str
    version: int


class Prediction(BaseModel):
    id: str
    created_at: datetime
    label: str = Field(description="covid | normal | pneumonia_bac")
    probabilities: Probabilities
    covid_positive: bool = Field(description="label is covid and p(covid) > threshold")
    threshold: float
    image_url: str | None
    heatmap_url: str | None = Field(description="colorized Grad-CAM alone, image-sized")
    overlay_url: str | None = Field(description="Grad-CAM blended over the image")
    model: ModelRef
    latency_ms: float
    input_sha256: str


REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictionRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "heatmap": {"type": "boolean", "default": True},
                    },
                }
            },
        },
    }
}


def to_response(request: Request, record: PredictionRecord) -> Prediction:
    return Prediction(
        id=record.id,
        created_at=record.created_at,
        label=record.label,
        probabilities=Probabilities(**record.probabilities),
        covid_positive=record.covid_positive,
        threshold=record.threshold,
        image_url=file_url(request, SOURCE, record.image_file),
        heatmap_url=file_url(request, HEATMAP, record.heatmap_file),
        overlay_url=file_url(request, RESULT, record.overlay_file),
        model=ModelRef(name=record.model_name, version=record.model_version),
        latency_ms=record.latency_ms,
        input_sha256=record.input_sha256,
    )


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise BadRequest(f"heatmap must be true or false, not {text!r}")


async def _read_request(request: Request, max_bytes: int) -> tuple[bytes, bool]:
    kind = media_type(request)
    if kind in FORM_TYPES:
        data, fields = await image_from_form(request, max_bytes)
        return data, _parse_bool(fields.get("heatmap", "true"))
    if kind != "application/json":
        if not kind and not await request.body():
            raise MissingInput('empty request: send JSON {"image_b64": ...} or multipart file')
        raise UnsupportedMediaType(
            f"content type {kind or 'missing'!r} is not accepted; send application/json "
            "or multipart/form-data"
        )
    body = await request.body()
    if not body.strip():
        raise MissingInput('empty JSON body: send {"image_b64": ..., "heatmap": true}')
    try:
        parsed = PredictionRequest.model_validate(json.loads(body))
    except json.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from error
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise MissingInput(problems) from error
    return decode_base64(parsed.image_b64), parsed.heatmap


@router.post(
    "/predictions",
    response_model=Prediction,
    status_code=201,
    openapi_extra=REQUEST_BODY,
    responses={
        400: {"description": "bad input"},
        413: {"description": "too large"},
        415: {"description": "not a JPEG/PNG"},
        503: {"description": "loading"},
    },
)
async def create_prediction(
    request: Request, response: Response, runtime: Runtime = Depends(get_runtime)
) -> Prediction:
    service = runtime.service  # 503 before reading a body we could not serve
    data, heatmap = await _read_request(request, runtime.settings.max_body_bytes)
    record = await run_in_threadpool(service.predict, data, heatmap, "v2")
    response.headers["Location"] = str(request.url_for("get_prediction", prediction_id=record.id))
    return to_response(request, record)


@router.get(
    "/predictions/{prediction_id}",
    response_model=Prediction,
    responses={404: {"description": "unknown id"}},
)
async def get_prediction(
    prediction_id: str, request: Request, runtime: Runtime = Depends(get_runtime)
) -> Prediction:
    record = await run_in_threadpool(runtime.store.get, prediction_id)
    if record is None:
        raise NotFound(f"no prediction with id {prediction_id!r}")
    return to_response(request, record)


@router.get("/predictions", response_model=list[Prediction])
async def list_predictions(
    request: Request,
    runtime: Runtime = Depends(get_runtime),
    limit: int = Query(50, ge=1, le=500, description="newest first"),
) -> list[Prediction]:
    records = await run_in_threadpool(runtime.store.recent, limit)
    return [to_response(request, record) for record in records]
