"""The clean API: JSON or multipart in, snake_case JSON out, predictions addressable by id."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from aistack.api.admission import predict_in_thread
from aistack.api.deps import get_runtime, public_url
from aistack.api.inputs import v2_image
from aistack.api.models import BACKEND_HEADER_DOC, tell_backend
from aistack.api.openapi import AUTH_ERRORS, BODY_ERRORS, error_responses
from aistack.api.security import authorize
from aistack.auth.keys import Permission, Principal
from aistack.errors import BadRequest, ModelNotFound, NotFound
from aistack.http_contract import RECORD_ID, VERSION_QUERY_PARAMETERS
from aistack.runtime import Runtime
from aistack.store import PredictionRecord
from aistack.xray.request_body import DICOM, HEATMAP_QUERY
from aistack.xray.schemas import Prediction, PredictionRequest, v2_prediction

router = APIRouter(prefix="/api/v2/xray", tags=["v2"])
may_predict = authorize(Permission.PREDICT)
may_read = authorize(Permission.READ_OWN)
VersionQuery = Annotated[
    int | None,
    Query(ge=0, description="classify with this model version (default: the served default)"),
]
LabelQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        description="classify with the version this label names in version_labels.json",
    ),
]
HeatmapQuery = Annotated[
    Literal["true", "false"] | None,
    Query(
        alias=HEATMAP_QUERY,
        description=f"with a raw {DICOM} body only (default true): also compute and render "
        "the Grad-CAM heatmap; JSON and forms say heatmap in the body",
    ),
]

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
            DICOM: {
                "schema": {"type": "string", "format": "binary", "minLength": 1},
                "description": "a DICOM Part 10 file as the whole body; heatmap in the query",
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
    return v2_prediction(record, runtime.links, runtime.settings.low_confidence_margin)


def requested_version(
    request: Request,
    runtime: Runtime,
    version: int | None,
    label: str | None,
    also: frozenset[str] = frozenset(),
) -> int | None:
    """The version a request names by ``?version=`` or ``?label=``; None: the default.

    Both at once pin a label: it must name that version (a label moved since is a 404). As
    with form fields, an unknown query parameter (``?verison=2``) is an error rather than a
    prediction silently made by another version. ``also`` names the route's other parameters.
    """
    unknown = sorted(set(request.query_params) - VERSION_QUERY_PARAMETERS - also)
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
    version: VersionQuery = None,
    label: LabelQuery = None,
    heatmap_query: HeatmapQuery = None,
) -> Prediction:
    """Classify one image (JSON ``image_b64``, multipart ``file`` or a raw DICOM body) and
    store the result.

    ``?version=N`` or ``?label=L`` chooses the model version (both: the label must name N);
    one that is not served is a 404.
    """
    # 404 or 503 before reading a body we could not serve
    chosen = requested_version(request, runtime, version, label, frozenset({HEATMAP_QUERY}))
    service = runtime.service_for(chosen)
    service.refuse_if_full()  # overload is refused before the upload is read
    data, heatmap = await v2_image(request)
    client = caller.client
    record = await predict_in_thread(service, data, heatmap, "v2", client)
    response.headers["Location"] = public_url(runtime, f"/api/v2/xray/predictions/{record.id}")
    tell_backend(response, record)
    return to_response(runtime, record)


@router.get(
    "/predictions/{prediction_id}",
    operation_id="get_prediction",
    response_model=Prediction,
    responses=error_responses(*AUTH_ERRORS, 404, 422),
)
async def get_prediction(
    prediction_id: str = Path(pattern=RECORD_ID, description="32 hex digits"),
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_read),
) -> Prediction:
    """One stored prediction, with freshly signed image URLs."""
    record = await run_in_threadpool(runtime.store.get, prediction_id)
    if not caller.can_read(record):
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
