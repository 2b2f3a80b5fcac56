"""Open Inference Protocol (KServe v2) health and metadata, for platforms that probe with it.

Health answers by status code as the protocol asks: 200 true, 503 (our error body) false. The
probes are open, like ``/healthz`` and ``/readyz``; server and model metadata describe
internals and need a key that may read everything. Inference stays on ``/api/v2/xray``.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from aistack import __version__
from aistack.api.deps import get_runtime
from aistack.api.models import (
    ModelName,
    check_model_name,
    may_read_models,
    metadata_version,
    read_signature_defs,
    slot_for,
)
from aistack.api.openapi import AUTH_ERRORS, error_responses
from aistack.errors import ModelNotFound, NotReady
from aistack.http_contract import UNAVAILABLE_TEXT
from aistack.inference.signatures import TensorSpec, tensors
from aistack.inference.tfserving.codec import signature_for
from aistack.runtime import Runtime

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol"])

PLATFORM = "tensorflow_savedmodel"
SIGNATURES = (signature_for(heatmap=False), signature_for(heatmap=True))
"""serving_default gives the inputs; its outputs, then gradcam's extra ``heatmap``."""
DATATYPES = {
    "DT_BOOL": "BOOL",
    "DT_UINT8": "UINT8",
    "DT_UINT16": "UINT16",
    "DT_UINT32": "UINT32",
    "DT_UINT64": "UINT64",
    "DT_INT8": "INT8",
    "DT_INT16": "INT16",
    "DT_INT32": "INT32",
    "DT_INT64": "INT64",
    "DT_HALF": "FP16",
    "DT_FLOAT": "FP32",
    "DT_DOUBLE": "FP64",
    "DT_STRING": "BYTES",
}
"""TensorFlow dtypes in the protocol's tensor data types."""
DIGITS = re.compile(r"[0-9]{1,18}")

VersionText = Annotated[str, Path(description="a served version number, e.g. 1")]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class OipTensor(BaseModel):
    name: str
    datatype: str = Field(description="BYTES, FP32, ...")
    shape: list[int] = Field(description="-1: any size")


class OipModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="the versions this server serves")
    platform: str
    inputs: list[OipTensor]
    outputs: list[OipTensor] = Field(description="heatmap is computed only when asked for")


def oip_tensor(spec: TensorSpec) -> OipTensor:
    return OipTensor(
        name=spec.name,
        datatype=DATATYPES.get(spec.dtype, spec.dtype.removeprefix("DT_")),
        shape=list(spec.shape) if spec.shape is not None else [-1],
    )


def parse_version(text: str) -> int:
    """The protocol carries versions as text; anything but a number is no served version."""
    if not DIGITS.fullmatch(text):
        raise ModelNotFound(f"model version {text[:32]!r} is not served")
    return int(text)


def require_ready(runtime: Runtime, version: int | None) -> None:
    """404 unknown, 503 loading or failed, 503 when no backend of it can take calls."""
    runtime.service_for(version)
    slot = slot_for(runtime, runtime.default_version if version is None else version)
    if not slot.available:
        raise NotReady(f"model version {slot.version} is {UNAVAILABLE_TEXT}")


async def model_metadata(runtime: Runtime, name: str, version: int | None) -> OipModelMetadata:
    check_model_name(runtime, name)
    defs = await read_signature_defs(runtime, metadata_version(runtime, version))
    inputs = tensors(defs[SIGNATURES[0]], "inputs")
    outputs: dict[str, TensorSpec] = {}
    for signature in SIGNATURES:
        for spec in tensors(defs[signature], "outputs"):
            outputs.setdefault(spec.name, spec)
    return OipModelMetadata(
        name=name,
        versions=[str(s.version) for s in runtime.versions() if s.service is not None],
        platform=PLATFORM,
        inputs=[oip_tensor(s) for s in inputs],
        outputs=[oip_tensor(s) for s in outputs.values()],
    )


@router.get("/health/live", operation_id="oip_server_live", response_model=Live)
async def oip_server_live() -> Live:
    """The process answers (open)."""
    return Live(live=True)


@router.get(
    "/health/ready",
    operation_id="oip_server_ready",
    response_model=Ready,
    responses=error_responses(503),
)
async def oip_server_ready(runtime: Runtime = Depends(get_runtime)) -> Ready:
    """The default version is loaded and some backend can serve it (open)."""
    require_ready(runtime, None)
    return Ready(ready=True)


@router.get(
    "/models/{model_name}/ready",
    operation_id="oip_model_ready",
    response_model=ModelReady,
    responses=error_responses(404, 422, 503),
)
async def oip_model_ready(
    model_name: ModelName, runtime: Runtime = Depends(get_runtime)
) -> ModelReady:
    """The model's default version is ready (open)."""
    check_model_name(runtime, model_name)
    require_ready(runtime, None)
    return ModelReady(name=model_name, ready=True)


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    operation_id="oip_model_version_ready",
    response_model=ModelReady,
    responses=error_responses(404, 422, 503),
)
async def oip_model_version_ready(
    model_name: ModelName, model_version: VersionText, runtime: Runtime = Depends(get_runtime)
) -> ModelReady:
    """That version is ready (open)."""
    check_model_name(runtime, model_name)
    require_ready(runtime, parse_version(model_version))
    return ModelReady(name=model_name, ready=True)


METADATA_ERRORS = error_responses(*AUTH_ERRORS, 404, 422, 503)


@router.get(
    "",
    operation_id="oip_server_metadata",
    response_model=ServerMetadata,
    responses=error_responses(*AUTH_ERRORS),
    dependencies=[Depends(may_read_models)],
)
async def oip_server_metadata() -> ServerMetadata:
    """The server's name and version; no protocol extensions."""
    return ServerMetadata(name="aistack", version=__version__, extensions=[])


@router.get(
    "/models/{model_name}",
    operation_id="oip_model_metadata",
    response_model=OipModelMetadata,
    responses=METADATA_ERRORS,
    dependencies=[Depends(may_read_models)],
)
async def oip_model_metadata(
    model_name: ModelName, runtime: Runtime = Depends(get_runtime)
) -> OipModelMetadata:
    """The default version's inputs and outputs, in the protocol's terms."""
    return await model_metadata(runtime, model_name, None)


@router.get(
    "/models/{model_name}/versions/{model_version}",
    operation_id="oip_model_version_metadata",
    response_model=OipModelMetadata,
    responses=METADATA_ERRORS,
    dependencies=[Depends(may_read_models)],
)
async def oip_model_version_metadata(
    model_name: ModelName, model_version: VersionText, runtime: Runtime = Depends(get_runtime)
) -> OipModelMetadata:
    """That version's inputs and outputs."""
    return await model_metadata(runtime, model_name, parse_version(model_version))
