"""The 2020 API, kept byte-compatible: paths, form field ``b64`` and JSON keys (typos too)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from aistack.api.admission import predict_in_thread
from aistack.api.deps import file_url, get_runtime
from aistack.api.inputs import image_from_form
from aistack.api.models import BACKEND_HEADER_DOC, tell_backend
from aistack.api.openapi import AUTH_ERRORS, BODY_ERRORS, error_responses
from aistack.api.security import authorize, v1_is_open
from aistack.auth.keys import Permission, Principal
from aistack.runtime import Runtime
from aistack.store import PredictionRecord
from aistack.xray.files import RESULT, SOURCE
from aistack.xray.labels import BACTERIAL_INDEX, CLASSES, V1_CLASS_NAMES

router = APIRouter(prefix="/covid19/api/v1", tags=["v1 (2020-compatible)"])
may_predict = authorize(Permission.PREDICT, open_when=v1_is_open)

HEALTHCHECK_TEXT = "Covid19 detector API is live!\n\n"
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


class V1Prediction(BaseModel):
    """`/predict/`: the 2020 keys, misspelt ``Classfication`` included."""

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    model_name: str = Field(description="model name and version")
    result: str = Field(
        alias="X-Ray_Classification_Result",
        description="Covid19 | Normal_Lung | Pneumonia_Bacterial_Lung",
    )
    raw_result: list[list[float]] = Field(
        alias="X-Ray_Classfication_Raw_Result",
        description="[[p_covid, p_normal, p_bacterial]]",
    )


class V1HeatmapPrediction(BaseModel):
    """`/predict/heatmap`: the label worded as in 2020, probability and image URLs.

    Fields are declared in the 2020 key order.
    """

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    model_name: str = Field(description="model name and version")
    result: str = Field(
        alias="X-Ray_Classification_Result",
        description="Covid-19 POSITIVE | Covid-19 Negative; Bacterial Penumonia Positive | "
        "Covid-19 Negative; Bacterial Penumonia Negative",
    )
    covid_probability: float = Field(alias="X-Ray_Classification_Covid19_Probability")
    raw_result: list[list[float]] = Field(alias="X-Ray_Classfication_Raw_Result")
    input_image: str = Field(alias="Input_Image", description="signed URL of the upload")
    output_heatmap: str = Field(alias="Output_Heatmap", description="signed URL of the overlay")


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


async def _predict(
    request: Request, response: Response, runtime: Runtime, caller: Principal, heatmap: bool
) -> PredictionRecord:
    service = runtime.service  # 503 before reading a body we could not serve
    service.refuse_if_full()  # overload is refused before the upload is read
    data, _ = await image_from_form(request, runtime.settings.max_body_bytes)
    endpoint = "v1-heatmap" if heatmap else "v1-predict"
    client = None if caller.is_anonymous else caller.name
    record = await predict_in_thread(service, data, heatmap, endpoint, client)
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
    return V1Prediction(
        model_name=_model_name(record),
        result=V1_CLASS_NAMES[CLASSES.index(record.label)],
        raw_result=_raw(record),
    )


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
    return V1HeatmapPrediction(
        model_name=_model_name(record),
        result=v1_heatmap_label(record),
        covid_probability=round(record.probabilities["covid"], 2),
        raw_result=_raw(record),
        input_image=file_url(runtime, SOURCE, record.image_file),
        output_heatmap=file_url(runtime, RESULT, record.overlay_file),
    )
