"""The 2020 API, kept byte-compatible: paths, form field ``b64`` and JSON keys (typos too)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from aistack.api.admission import predict_in_thread
from aistack.api.deps import get_runtime
from aistack.api.inputs import v1_image_reader
from aistack.api.models import BACKEND_HEADER_DOC, tell_backend
from aistack.api.openapi import AUTH_ERRORS, BODY_ERRORS, error_responses
from aistack.api.security import authorize, v1_is_open
from aistack.auth.keys import Permission, Principal
from aistack.runtime import Runtime
from aistack.store import PredictionRecord
from aistack.xray.schemas import (
    HEALTHCHECK_TEXT,
    V1HeatmapPrediction,
    V1Prediction,
    v1_heatmap_prediction,
    v1_prediction,
)

router = APIRouter(prefix="/covid19/api/v1", tags=["v1 (2020-compatible)"])
may_predict = authorize(Permission.PREDICT, open_when=v1_is_open)

B64_FIELD = {
    "type": "string",
    "format": "byte",
    "minLength": 4,
    "description": "base64 of the whole image file",
}
FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"b64": B64_FIELD},
                    "required": ["b64"],
                    "additionalProperties": False,
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "b64": B64_FIELD,
                        "file": {"type": "string", "format": "binary", "minLength": 1},
                    },
                    "additionalProperties": False,
                    "minProperties": 1,
                    "maxProperties": 1,
                }
            },
        },
    }
}
ERRORS = {200: {"headers": BACKEND_HEADER_DOC}} | error_responses(*AUTH_ERRORS, *BODY_ERRORS)


async def _predict(
    request: Request, response: Response, runtime: Runtime, caller: Principal, heatmap: bool
) -> PredictionRecord:
    service = runtime.service  # 503 before reading a body we could not serve
    service.refuse_if_full()  # overload is refused before the upload is read
    image = await v1_image_reader(request)
    endpoint = "v1-heatmap" if heatmap else "v1-predict"
    record = await predict_in_thread(service, image, heatmap, endpoint, caller.client)
    tell_backend(response, record)  # a header: the 2020 JSON stays as it was
    return record


@router.get("/healthcheck", operation_id="v1_healthcheck")
async def v1_healthcheck() -> str:
    """2020 liveness text (open, like /healthz)."""
    return HEALTHCHECK_TEXT


@router.post("/healthcheck", operation_id="v1_healthcheck_post")
async def v1_healthcheck_post() -> str:
    """The same by POST, as the 2020 Flask service allowed."""
    return HEALTHCHECK_TEXT


@router.post(
    "/predict/",
    operation_id="v1_predict",
    openapi_extra=FORM_BODY,
    response_model=V1Prediction,
    responses=ERRORS,
)
async def v1_predict(
    request: Request,
    response: Response,
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_predict),
) -> V1Prediction:
    """Classify one image sent as form field ``b64`` (base64) or file ``file``."""
    record = await _predict(request, response, runtime, caller, heatmap=False)
    return v1_prediction(record)


@router.post(
    "/predict/heatmap",
    operation_id="v1_predict_heatmap",
    openapi_extra=FORM_BODY,
    response_model=V1HeatmapPrediction,
    responses=ERRORS,
)
async def v1_predict_heatmap(
    request: Request,
    response: Response,
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_predict),
) -> V1HeatmapPrediction:
    """Classify and render the Grad-CAM heatmap; the URLs are signed and expire."""
    record = await _predict(request, response, runtime, caller, heatmap=True)
    return v1_heatmap_prediction(record, runtime.links)
