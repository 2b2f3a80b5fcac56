"""Stored uploads, heatmaps and overlays: served to callers allowed to read them, only.

Allowed are the holder of a signed URL from a response (until it expires), a key that may
read every prediction, and the key that asked for the prediction.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from aistack.api.deps import get_runtime
from aistack.api.openapi import error_responses
from aistack.api.security import client_address, identify, missing_key, spend_budget
from aistack.auth.keys import Permission, Principal
from aistack.errors import Forbidden, NotFound
from aistack.runtime import Runtime
from aistack.xray.files import FILE_HEADERS, FILE_NAME, MEDIA_TYPES, FileKind

router = APIRouter(tags=["files"])


@router.get(
    "/static/{kind}/{name}",
    operation_id="get_stored_file",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"image/jpeg": {}, "image/png": {}, "application/dicom": {}},
            "description": "the file",
        }
    }
    | error_responses(401, 403, 404, 422, 429),
)
async def get_stored_file(
    request: Request,
    kind: FileKind,
    name: str = Path(pattern=FILE_NAME, description="<prediction id>.<jpg|png|dcm>"),
    token: str | None = Query(None, description="signature from a signed URL"),
    runtime: Runtime = Depends(get_runtime),
    caller: Principal | None = Security(identify),
) -> FileResponse:
    """An upload (``source``), overlay (``result``) or heatmap; signed URL or key."""
    path = runtime.files.path(kind.value, name)
    if not runtime.signer.valid(f"{kind.value}/{name}", token):
        if caller is None:
            raise await missing_key(runtime, request)
        if not caller.can(Permission.READ_OWN):
            raise Forbidden(f"the key {caller.name!r} may not read stored files")
        await spend_budget(runtime, caller.key_id or client_address(request))
        record = await run_in_threadpool(runtime.store.get, name.split(".")[0])
        if not caller.can_read(record):
            raise NotFound(f"no stored file {kind.value}/{name}")
    if not path.is_file():
        raise NotFound(f"no stored file {kind.value}/{name} (it may have been swept)")
    extension = name.rsplit(".", 1)[1]
    return FileResponse(path, media_type=MEDIA_TYPES[extension], headers=FILE_HEADERS)
