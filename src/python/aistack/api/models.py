"""Which model versions are served, and how they fare: TF Serving's REST paths and aistack's own.

``/v1/models/<name>[/versions/N|/labels/L]`` answers as TF Serving's model status API does, so
tools written for TF Serving (compose health checks, dashboards) can watch this service; it is
open, like ``/readyz``. ``.../metadata`` answers as TF Serving's GetModelMetadata (the exported
signatures) and ``/api/v2/models`` lists versions, labels and inference backends: both
describe internals, so they need a key that may read everything.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from aistack.api.deps import get_runtime
from aistack.api.openapi import AUTH_ERRORS, error_responses
from aistack.api.security import authorize
from aistack.auth.keys import Permission
from aistack.errors import ModelNotFound, NotReady
from aistack.http_contract import BACKEND_HEADER, UNAVAILABLE_TEXT
from aistack.inference.signatures import signature_defs
from aistack.inference.versions import available_versions, read_labels
from aistack.runtime import Runtime, VersionSlot, VersionState
from aistack.store import PredictionRecord

tf_serving = APIRouter(prefix="/v1/models", tags=["model status (TF Serving REST)"])
router = APIRouter(prefix="/api/v2/models", tags=["v2"])
may_read_models = authorize(Permission.READ_ALL, action="read model details")

BACKEND_HEADER_DOC = {
    BACKEND_HEADER: {
        "description": "the inference backend that ran the model (inprocess, or a TF Serving one)",
        "schema": {"type": "string"},
    }
}
ModelName = Annotated[str, Path(description="the served model's name (AISTACK_MODEL_NAME)")]
VersionNumber = Annotated[int, Path(ge=0, description="a version: the folder models/<name>/<N>")]
Label = Annotated[str, Path(description="a label of version_labels.json, e.g. stable")]


def tell_backend(response: Response, record: PredictionRecord) -> None:
    """Name the backend that served a prediction in a header (v1 keeps its 2020 JSON)."""
    if record.backend:
        response.headers[BACKEND_HEADER] = record.backend


# -- shared by both conventions --------------------------------------------------------------


def check_model_name(runtime: Runtime, name: str) -> None:
    if name != runtime.settings.model_name:
        raise ModelNotFound(
            f"no model named {name[:64]!r} is served (this server serves "
            f"{runtime.settings.model_name!r})"
        )


def served_slots(runtime: Runtime) -> list[VersionSlot]:
    """Every served version, ascending; 404 while none is known yet (or none could be)."""
    slots = runtime.versions()
    if not slots:
        reason = f": {runtime.load_error}" if runtime.load_error else " yet"
        raise ModelNotFound(
            f"no version of model {runtime.settings.model_name!r} is served{reason}"
        )
    return slots


def slot_for(runtime: Runtime, version: int) -> VersionSlot:
    for slot in runtime.versions():
        if slot.version == version:
            return slot
    served = ", ".join(str(s.version) for s in runtime.versions()) or "none yet"
    raise ModelNotFound(f"model version {version} is not served (served: {served})")


def labels_by_version(runtime: Runtime) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for label, version in sorted(read_labels(runtime.settings.model_dir).items()):
        found.setdefault(version, []).append(label)
    return found


def metadata_version(runtime: Runtime, version: int | None) -> int:
    """The version whose metadata to give: loaded (404 unknown, 503 loading or failed).

    Without a version, the default one (what an unnamed prediction gets), not the newest:
    this service never serves a version merely because it is the latest.
    """
    runtime.service_for(version)
    resolved = runtime.default_version if version is None else version
    if resolved is None:  # service_for has raised NotReady in this case already
        raise NotReady("the model is still loading; retry shortly")
    return resolved


async def read_signature_defs(runtime: Runtime, version: int) -> dict[str, dict[str, Any]]:
    return await run_in_threadpool(signature_defs, runtime.settings.model_dir / str(version))


# -- TF Serving: model status ----------------------------------------------------------------


class TfStatus(BaseModel):
    error_code: str = Field(description="TensorFlow's error code name: OK, UNKNOWN, UNAVAILABLE")
    error_message: str


class TfVersionStatus(BaseModel):
    version: str = Field(description="int64 as TF Serving's JSON writes it: a string")
    state: VersionState
    status: TfStatus


class TfModelStatus(BaseModel):
    """TF Serving's GetModelStatusResponse."""

    model_config = ConfigDict(protected_namespaces=())

    model_version_status: list[TfVersionStatus] = Field(description="newest version first")


def tf_version_status(slot: VersionSlot) -> TfVersionStatus:
    """A failed load is END with UNKNOWN and the reason; a loaded version that no backend
    can serve says UNAVAILABLE, so that a probe reading the status sees it."""
    code, message = "OK", ""
    if slot.state is VersionState.END:
        code, message = "UNKNOWN", slot.error or "failed to load"
    elif slot.state is VersionState.AVAILABLE and not slot.available:
        code, message = "UNAVAILABLE", UNAVAILABLE_TEXT
    return TfVersionStatus(
        version=str(slot.version),
        state=slot.state,
        status=TfStatus(error_code=code, error_message=message),
    )


def tf_status(slots: list[VersionSlot]) -> TfModelStatus:
    ordered = sorted(slots, key=lambda s: s.version, reverse=True)  # as TF Serving lists them
    return TfModelStatus(model_version_status=[tf_version_status(s) for s in ordered])


STATUS_ERRORS = error_responses(404, 422)


@tf_serving.get(
    "/{model_name}",
    operation_id="tfs_model_status",
    response_model=TfModelStatus,
    responses=STATUS_ERRORS,
)
async def tfs_model_status(
    model_name: ModelName, runtime: Runtime = Depends(get_runtime)
) -> TfModelStatus:
    """Every served version's state, as TF Serving's model status API (open)."""
    check_model_name(runtime, model_name)
    return tf_status(served_slots(runtime))


@tf_serving.get(
    "/{model_name}/versions/{version}",
    operation_id="tfs_version_status",
    response_model=TfModelStatus,
    responses=STATUS_ERRORS,
)
async def tfs_version_status(
    model_name: ModelName, version: VersionNumber, runtime: Runtime = Depends(get_runtime)
) -> TfModelStatus:
    """One version's state (open)."""
    check_model_name(runtime, model_name)
    return tf_status([slot_for(runtime, version)])


@tf_serving.get(
    "/{model_name}/labels/{label}",
    operation_id="tfs_label_status",
    response_model=TfModelStatus,
    responses=STATUS_ERRORS,
)
async def tfs_label_status(
    model_name: ModelName, label: Label, runtime: Runtime = Depends(get_runtime)
) -> TfModelStatus:
    """The state of the version a label names (open)."""
    check_model_name(runtime, model_name)
    return tf_status([slot_for(runtime, runtime.version_for_label(label))])


# -- TF Serving: model metadata --------------------------------------------------------------


class TfModelSpec(BaseModel):
    name: str
    signature_name: str = ""
    version: str


class TfModelMetadata(BaseModel):
    """TF Serving's GetModelMetadataResponse: every signature of the version's SavedModel."""

    model_config = ConfigDict(protected_namespaces=())

    model_spec: TfModelSpec
    metadata: dict[str, Any] = Field(
        description='{"signature_def": {"signature_def": {<name>: SignatureDef}}}, as in '
        "saved_model.pb (serving_default, gradcam, ...)"
    )


METADATA_ERRORS = error_responses(*AUTH_ERRORS, 404, 422, 503)


async def tf_metadata(runtime: Runtime, model_name: str, version: int | None) -> TfModelMetadata:
    check_model_name(runtime, model_name)
    resolved = metadata_version(runtime, version)
    defs = await read_signature_defs(runtime, resolved)
    return TfModelMetadata(
        model_spec=TfModelSpec(name=model_name, version=str(resolved)),
        metadata={"signature_def": {"signature_def": defs}},
    )


@tf_serving.get(
    "/{model_name}/metadata",
    operation_id="tfs_model_metadata",
    response_model=TfModelMetadata,
    responses=METADATA_ERRORS,
    dependencies=[Depends(may_read_models)],
)
async def tfs_model_metadata(
    model_name: ModelName, runtime: Runtime = Depends(get_runtime)
) -> TfModelMetadata:
    """The default version's signatures, as TF Serving's model metadata API."""
    return await tf_metadata(runtime, model_name, None)


@tf_serving.get(
    "/{model_name}/versions/{version}/metadata",
    operation_id="tfs_version_metadata",
    response_model=TfModelMetadata,
    responses=METADATA_ERRORS,
    dependencies=[Depends(may_read_models)],
)
async def tfs_version_metadata(
    model_name: ModelName, version: VersionNumber, runtime: Runtime = Depends(get_runtime)
) -> TfModelMetadata:
    """One version's signatures."""
    return await tf_metadata(runtime, model_name, version)


@tf_serving.get(
    "/{model_name}/labels/{label}/metadata",
    operation_id="tfs_label_metadata",
    response_model=TfModelMetadata,
    responses=METADATA_ERRORS,
    dependencies=[Depends(may_read_models)],
)
async def tfs_label_metadata(
    model_name: ModelName, label: Label, runtime: Runtime = Depends(get_runtime)
) -> TfModelMetadata:
    """The signatures of the version a label names."""
    check_model_name(runtime, model_name)
    return await tf_metadata(runtime, model_name, runtime.version_for_label(label))


# -- aistack v2: versions, labels and backends -----------------------------------------------


class BackendStatus(BaseModel):
    name: str
    address: str
    healthy: bool = Field(description="the last health probe succeeded (always, in process)")
    circuit: str = Field(description="closed | open | half-open")
    outstanding: int = Field(description="calls running or queued on it now")


class ModelVersionInfo(BaseModel):
    version: int
    served: bool = Field(description="false: on disk, not loaded by this process (restart)")
    state: VersionState | None = Field(description="START | LOADING | AVAILABLE | END (failed)")
    available: bool = Field(description="loaded and some backend can take calls")
    error: str | None = Field(description="why it failed to load")
    default: bool = Field(description="what a prediction naming no version gets")
    labels: list[str]
    ready_after_s: float | None = Field(description="process start to loaded")
    backends: list[BackendStatus]


class ModelVersions(BaseModel):
    name: str
    default_version: int | None
    versions: list[ModelVersionInfo] = Field(description="ascending")


def version_info(
    runtime: Runtime, version: int, slot: VersionSlot | None, labels: list[str]
) -> ModelVersionInfo:
    engine = slot.service.engine if slot and slot.service else None
    status = getattr(engine, "status", None)
    return ModelVersionInfo(
        version=version,
        served=slot is not None,
        state=slot.state if slot else None,
        available=bool(slot and slot.available),
        error=slot.error if slot else None,
        default=version == runtime.default_version,
        labels=labels,
        ready_after_s=slot.ready_after_s if slot else None,
        backends=[BackendStatus(**b) for b in status()] if callable(status) else [],
    )


@router.get(
    "",
    operation_id="list_models",
    response_model=ModelVersions,
    responses=error_responses(*AUTH_ERRORS),
    dependencies=[Depends(may_read_models)],
)
async def list_models(runtime: Runtime = Depends(get_runtime)) -> ModelVersions:
    """The versions on disk: state, labels, the default one, and each one's backends."""
    slots = {slot.version: slot for slot in runtime.versions()}
    on_disk = await run_in_threadpool(available_versions, runtime.settings.model_dir)
    labels = await run_in_threadpool(labels_by_version, runtime)
    return ModelVersions(
        name=runtime.settings.model_name,
        default_version=runtime.default_version,
        versions=[
            version_info(runtime, v, slots.get(v), labels.get(v, []))
            for v in sorted(set(slots) | set(on_disk))
        ],
    )
