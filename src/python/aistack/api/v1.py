"""The 2020 API, kept byte-compatible: paths, form field ``b64`` and JSON keys (typos too)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from aistack.api.deps import file_url, get_runtime
from aistack.api.inputs import image_from_form
from aistack.runtime import Runtime
from aistack.store import PredictionRecord
from aistack.xray.files import RESULT, SOURCE
from aistack.xray.labels import BACTERIAL_INDEX, CLASSES, V1_CLASS_NAMES

router = APIRouter(prefix="/covid19/api/v1", tags=["v1 (2020-compatible)"])

HEALTHCHECK_TEXT = "Covid19 detector API is live!\n\n"
FORM_BODY = {
    "requestBody": {
        "content": {
            media: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "b64": {"type": "string", "description": "base64 of the whole image file"},
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            }
            for media in ("application/x-www-form-urlencoded", "multipart/form-data")
        }
    }
}


def v1_heatmap_label(record: PredictionRecord) -> str:
    """The 2020 wording, misspelling included, which clients match on."""
    if record.covid_positive:
        return "Covid-19 POSITIVE"
    if record.label == CLASSES[BACTERIAL_INDEX]:
        return "Covid-19 Negative; Bacterial Penumonia Positive"
    return "Covid-19 Negative; Bacterial Penumonia Negative"


def _raw(record: PredictionRecord) -> list[list[float]]:
    return [[record.probabilities[name] for name in CLASSES]]


def _model_name(record: PredictionRecord) -> str:
    return f"{record.model_name} v{record.model_version}"


async def _predict(request: Request, runtime: Runtime, heatmap: bool) -> PredictionRecord:
    service = runtime.service  # 503 before reading a body we could not serve
    data, _ = await image_from_form(request, runtime.settings.max_body_bytes)
    endpoint = "v1-heatmap" if heatmap else "v1-predict"
    return await run_in_threadpool(service.predict, data, heatmap, endpoint)


@router.api_route("/healthcheck", methods=["GET", "POST"])
async def healthcheck() -> str:
    return HEALTHCHECK_TEXT


@router.post("/predict/", openapi_extra=FORM_BODY)
async def predict(request: Request, runtime: Runtime = Depends(get_runtime)) -> dict:
    record = await _predict(request, runtime, heatmap=False)
    return {
        "model_name": _model_name(record),
        "X-Ray_Classification_Result": V1_CLASS_NAMES[CLASSES.index(record.label)],
        "X-Ray_Classfication_Raw_Result": _raw(record),
    }


@router.post("/predict/heatmap", openapi_extra=FORM_BODY)
async def predict_heatmap(request: Request, runtime: Runtime = Depends(get_runtime)) -> dict:
    record = await _predict(request, runtime, heatmap=True)
    return {
        "model_name": _model_name(record),
        "X-Ray_Classification_Result": v1_heatmap_label(record),
        "X-Ray_Classification_Covid19_Probability": round(record.probabilities["covid"], 2),
        "X-Ray_Classfication_Raw_Result": _raw(record),
        "Input_Image": file_url(request, SOURCE, record.image_file),
        "Output_Heatmap": file_url(request, RESULT, record.overlay_file),
    }
