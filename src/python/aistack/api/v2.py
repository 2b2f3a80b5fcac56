"""The clean API: JSON or multipart in, snake_case JSON out, predictions addressable by id."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field, StrictBool, StrictStr, ValidationError
from starlette.concurrency import run_in_threadpool

from aistack.api.admission import predict_in_thread
from aistack.api.deps import file_url, get_runtime, public_url
from aistack.api.inputs import FORM_TYPES, decode_base64, image_from_form, media_type
from aistack.api.models import BACKEND_HEADER_DOC, tell_backend
from aistack.api.openapi import AUTH_ERRORS, BODY_ERRORS, error_responses
from aistack.api.security import authorize
from aistack.auth.keys import Permission, Principal
from aistack.errors import (
    BadRequest,
    InvalidJson,
    InvalidRequest,
    MissingInput,
    ModelNotFound,
    NotFound,
    UnsupportedMediaType,
)
from aistack.runtime import Runtime
from aistack.store import PredictionRecord
from aistack.xray.files import HEATMAP, RESULT, SOURCE
from aistack.xray.service import is_low_confidence

router = APIRouter(prefix="/api/v2/xray", tags=["v2"])
may_predict = authorize(Permission.PREDICT)
may_read = authorize(Permission.READ_OWN)
PREDICTION_ID = r"^[0-9a-f]{32}$"
QUERY_PARAMETERS = frozenset({"version", "label"})


class PredictionRequest(BaseModel):
    image_b64: StrictStr = Field(
        min_length=4,
        description="base64 of a JPEG or PNG file (a data: URL is accepted)",
        json_schema_extra={"format": "byte"},
    )
    heatmap: StrictBool = Field(True, description="also compute and render the Grad-CAM heatmap")


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
    low_confidence: bool = Field(
        description="the top two probabilities are closer than the service's margin: "
        "treat the label as uncertain"
    )
    image_url: str | None = Field(description="signed URL of the upload (expires)")
    heatmap_url: str | None = Field(description="colorized Grad-CAM alone, image-sized")
    overlay_url: str | None = Field(description="Grad-CAM blended over the image")
    model: ModelRef = Field(description="the model version that classified the image")
    backend: str | None = Field(
        description="the inference backend that ran it (inprocess, or a TF Serving one); "
        "null for predictions stored before backends were recorded"
    )
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
                        "file": {"type": "string", "format": "binary", "minLength": 1},
                        "heatmap": {"type": "boolean", "default": True},
                    },
                    "additionalProperties": False,
                }
            },
        },
    }
}
LOCATION = {"Location": {"description": "URL of the new prediction", "schema": {"type": "string"}}}
READ_BACK = {
    "GetPrediction": {
        "operationId": "get_prediction",
        "parameters": {"prediction_id": "$response.body#/id"},
        "description": "the stored prediction",
    }
}


def to_response(runtime: Runtime, record: PredictionRecord) -> Prediction:
    return Prediction(
        id=record.id,
        created_at=record.created_at,
        label=record.label,
        probabilities=Probabilities(**record.probabilities),
        covid_positive=record.covid_positive,
        threshold=record.threshold,
        low_confidence=is_low_confidence(
            list(record.probabilities.values()), runtime.settings.low_confidence_margin
        ),
        image_url=file_url(runtime, SOURCE, record.image_file),
        heatmap_url=file_url(runtime, HEATMAP, record.heatmap_file),
        overlay_url=file_url(runtime, RESULT, record.overlay_file),
        model=ModelRef(name=record.model_name, version=record.model_version),
        backend=record.backend,
        latency_ms=record.latency_ms,
        input_sha256=record.input_sha256,
    )


def _parse_form_bool(text: str) -> bool:
    """A form field's boolean as JSON spells it: ``true`` or ``false``, nothing looser."""
    value = text.strip()
    if value == "true":
        return True
    if value == "false":
        return False
    raise BadRequest(f"heatmap must be true or false, not {text[:40]!r}")


def parse_json_request(body: bytes) -> PredictionRequest:
    """Strict JSON: invalid UTF-8, bad syntax or nesting → 400; wrong types → 422."""
    try:
        return PredictionRequest.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            reason = problems[0].get("ctx", {}).get("error", "invalid JSON")
            raise InvalidJson(f"the body is not valid JSON: {reason}") from error
        if any(p["type"] == "model_type" for p in problems):
            raise InvalidRequest('the body must be a JSON object {"image_b64": ...}') from error
        described = "; ".join(
            f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}" for p in problems
        )
        if all(p["type"] == "missing" for p in problems):
            raise MissingInput(described) from error
        raise InvalidRequest(described) from error


async def _read_request(request: Request, max_bytes: int) -> tuple[bytes, bool]:
    kind = media_type(request)
    if kind in FORM_TYPES:
        data, fields = await image_from_form(request, max_bytes, frozenset({"heatmap"}))
        return data, _parse_form_bool(fields.get("heatmap", "true"))
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
    parsed = parse_json_request(body)
    return decode_base64(parsed.image_b64), parsed.heatmap


def requested_version(
    request: Request, runtime: Runtime, version: int | None, label: str | None
) -> int | None:
    """The version a request names by ``?version=`` or ``?label=``; None: the default.

    Both at once pin a label: it must name that version (a label moved since is a 404). As
    with form fields, an unknown query parameter (``?verison=2``) is an error rather than a
    prediction silently made by another version.
    """
    unknown = sorted(set(request.query_params) - QUERY_PARAMETERS)
    if unknown:
        raise BadRequest(
            f"unexpected query parameter {unknown[0][:40]!r}; expected version or label"
        )
    if label is None:
        return version
    labelled = runtime.version_for_label(label)
    if version is not None and version != labelled:
        raise ModelNotFound(f"label {label[:32]!r} names version {labelled}, not {version}")
    return labelled


@router.post(
    "/predictions",
    operation_id="create_prediction",
    response_model=Prediction,
    status_code=201,
    openapi_extra=REQUEST_BODY,
    responses={
        201: {
            "description": "stored",
            "headers": LOCATION | BACKEND_HEADER_DOC,
            "links": READ_BACK,
        }
    }
    | error_responses(*AUTH_ERRORS, *BODY_ERRORS, 404),
)
async def create_prediction(
    request: Request,
    response: Response,
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_predict),
    version: int | None = Query(
        None, ge=0, description="classify with this model version (default: the served default)"
    ),
    label: str | None = Query(
        None,
        min_length=1,
        description="classify with the version this label names in version_labels.json",
    ),
) -> Prediction:
    """Classify one image (JSON ``image_b64`` or multipart ``file``) and store the result.

    ``?version=N`` or ``?label=L`` chooses the model version (both: the label must name N);
    one that is not served is a 404.
    """
    # 404 or 503 before reading a body we could not serve
    service = runtime.service_for(requested_version(request, runtime, version, label))
    service.refuse_if_full()  # overload is refused before the upload is read
    data, heatmap = await _read_request(request, runtime.settings.max_body_bytes)
    client = None if caller.is_anonymous else caller.name
    record = await predict_in_thread(service, data, heatmap, "v2", client)
    response.headers["Location"] = public_url(runtime, f"/api/v2/xray/predictions/{record.id}")
    tell_backend(response, record)
    return to_response(runtime, record)


def readable(caller: Principal, record: PredictionRecord | None) -> bool:
    """Read-all keys see everything; predict keys see what they asked for."""
    if record is None:
        return False
    return caller.can(Permission.READ_ALL) or (
        caller.can(Permission.READ_OWN) and record.client == caller.name
    )


@router.get(
    "/predictions/{prediction_id}",
    operation_id="get_prediction",
    response_model=Prediction,
    responses=error_responses(*AUTH_ERRORS, 404, 422),
)
async def get_prediction(
    prediction_id: str = Path(pattern=PREDICTION_ID, description="32 hex digits"),
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_read),
) -> Prediction:
    """One stored prediction, with freshly signed image URLs."""
    record = await run_in_threadpool(runtime.store.get, prediction_id)
    if not readable(caller, record):
        raise NotFound(f"no prediction with id {prediction_id!r}")
    return to_response(runtime, record)


@router.get(
    "/predictions",
    operation_id="list_predictions",
    response_model=list[Prediction],
    responses=error_responses(*AUTH_ERRORS, 422),
)
async def list_predictions(
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_read),
    limit: int = Query(50, ge=1, le=500, description="newest first"),
) -> list[Prediction]:
    """The latest predictions (a predict key sees only its own)."""
    client = None if caller.can(Permission.READ_ALL) else caller.name
    records = await run_in_threadpool(runtime.store.recent, limit, client)
    return [to_response(runtime, record) for record in records]
