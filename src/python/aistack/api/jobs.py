"""Asynchronous predictions: POST answers 202 with a job at once, GET tells how it went.

The body, ``?version=``/``?label=`` and key rules are those of ``POST /predictions``; an
unreadable body is refused at once, while what only decoding or the model finds (not an
image, not a chest X-ray...) ends the job as ``failed`` with that error's code.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from aistack.api.deps import get_runtime, public_url
from aistack.api.inputs import v2_image
from aistack.api.openapi import AUTH_ERRORS, BODY_ERRORS, error_responses
from aistack.api.v2 import (
    REQUEST_BODY,
    HeatmapQuery,
    LabelQuery,
    VersionQuery,
    may_predict,
    may_read,
    requested_version,
    to_response,
)
from aistack.auth.keys import Principal
from aistack.errors import NotFound
from aistack.http_contract import RECORD_ID
from aistack.runtime import Runtime
from aistack.store.jobs import JobRecord, JobStatus
from aistack.xray.request_body import HEATMAP_QUERY
from aistack.xray.schemas import Job, job_view

router = APIRouter(prefix="/api/v2/xray", tags=["v2"])
JOB_LOCATION = {"Location": {"description": "URL of the job", "schema": {"type": "string"}}}
POLL = {
    "GetJob": {
        "operationId": "get_job",
        "parameters": {"job_id": "$response.body#/id"},
        "description": "the job's status, then its prediction or error",
    }
}


def job_url(job_id: str) -> str:
    return f"{router.prefix}/jobs/{job_id}"


def view(runtime: Runtime, job: JobRecord) -> Job:
    """The job with its prediction (freshly signed URLs) once it succeeded."""
    prediction = None
    if job.status == JobStatus.SUCCEEDED and job.prediction_id is not None:
        record = runtime.store.get(job.prediction_id)
        prediction = None if record is None else to_response(runtime, record)
    return job_view(job, prediction)


@router.post(
    "/jobs",
    operation_id="create_job",
    response_model=Job,
    status_code=202,
    openapi_extra=REQUEST_BODY,
    responses={202: {"description": "accepted", "headers": JOB_LOCATION, "links": POLL}}
    | error_responses(*AUTH_ERRORS, *BODY_ERRORS, 404),
)
async def create_job(
    request: Request,
    response: Response,
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_predict),
    version: VersionQuery = None,
    label: LabelQuery = None,
    heatmap_query: HeatmapQuery = None,
) -> Job:
    """Accept one image for classification later; poll the job for the prediction.

    The body and ``?version=``/``?label=`` are those of ``create_prediction``. 503
    ``service_busy`` when too many jobs wait already.
    """
    chosen = requested_version(request, runtime, version, label, frozenset({HEATMAP_QUERY}))
    runtime.service_for(chosen)  # 404 or 503 before reading a body we could not serve
    runtime.job_runner.refuse_if_full()
    data, heatmap = await v2_image(request)
    client = caller.client
    job = await run_in_threadpool(runtime.job_runner.submit, data, heatmap, chosen, client)
    response.headers["Location"] = public_url(runtime, job_url(job.id))
    return job_view(job, None)


@router.get(
    "/jobs/{job_id}",
    operation_id="get_job",
    response_model=Job,
    responses=error_responses(*AUTH_ERRORS, 404, 422),
)
async def get_job(
    job_id: str = Path(pattern=RECORD_ID, description="32 hex digits"),
    runtime: Runtime = Depends(get_runtime),
    caller: Principal = Depends(may_read),
) -> Job:
    """A job: ``queued``, ``running``, then ``succeeded`` with its prediction or ``failed``
    with the error."""
    job = await run_in_threadpool(runtime.jobs.get, job_id)
    if not caller.can_read(job):
        raise NotFound(f"no job with id {job_id!r}")
    return await run_in_threadpool(view, runtime, job)
