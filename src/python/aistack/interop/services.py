"""The business services: where a REST request enters the production.

``XRayPredictService`` waits for the business process's answer (``send_request_sync``);
``XRayJobService`` records the job, queues the work (``send_request_async``) and answers at
once. IRIS keeps queued messages in its database, so a production restarted before the job
ran still runs it. Both are adapterless: the ``%CSP.REST`` class creates them per request
through ``Ens.Director.CreateBusinessService`` (rest.py).
"""

from __future__ import annotations

import math
from typing import Any

from iop import BusinessService, setting, target

from aistack.errors import BackendUnavailable, DeadlineExceeded
from aistack.interop import wiring
from aistack.interop.messages import (
    ErrorReply,
    JobRequest,
    JobStatusReply,
    JobSubmission,
    ReadinessQuery,
    ReadinessReply,
    XrayPredictionRequest,
    XrayPredictionResponse,
)
from aistack.store.jobs import JobStatus

PREDICT_SERVICE = "XRayPredictService"
JOB_SERVICE = "XRayJobService"


class XRayPredictService(BusinessService):
    """Synchronous predictions (v1, v2) and readiness: ask the router, wait, answer."""

    Router = target("XRayRouter")
    timeout_s = setting(
        30.0, description="longest wait for the router's answer (decode, inference, storage)"
    )

    def on_process_input(self, request: Any) -> Any:
        if isinstance(request, ReadinessQuery):
            reply = self._ask(request)
            if isinstance(reply, ReadinessReply):
                return reply
            return ReadinessReply(ready=False, detail=self._no_answer(reply).message)
        reply = self._ask(request)
        if isinstance(reply, XrayPredictionResponse):
            return reply
        return XrayPredictionResponse(error=self._no_answer(reply))

    def _ask(self, request: XrayPredictionRequest | ReadinessQuery) -> Any:
        try:
            return self.send_request_sync(
                self.Router, request, timeout=math.ceil(float(self.timeout_s))
            )
        except Exception as error:  # noqa: BLE001 - IRIS could not deliver: say so as data
            return error

    def _no_answer(self, reply: Any) -> ErrorReply:
        if isinstance(reply, Exception):
            error = BackendUnavailable(f"the production did not take the request: {reply}")
        else:
            error = DeadlineExceeded(f"no answer from the production within {self.timeout_s} s")
        return ErrorReply.from_error(error)


class XRayJobService(BusinessService):
    """Asynchronous predictions: a job row, a queued message, the job's id at once."""

    Router = target("XRayRouter")

    def on_process_input(self, request: JobSubmission) -> JobStatusReply:
        job = wiring.runtime().jobs.create(request.client, request.version, request.heatmap)
        work = JobRequest(
            job_id=job.id,
            image=request.image,
            heatmap=request.heatmap,
            client=request.client,
            version=request.version,
            request_id=request.request_id,
        )
        try:
            self.send_request_async(self.Router, work)
        except Exception as error:  # noqa: BLE001 - not queued: the job fails visibly
            failure = BackendUnavailable(f"the job could not be queued: {error}")
            wiring.runtime().jobs.mark_failed(job.id, failure.code, failure.message)
            return JobStatusReply(
                job_id=job.id, status=JobStatus.FAILED, error=ErrorReply.from_error(failure)
            )
        return JobStatusReply(job_id=job.id, status=JobStatus.QUEUED)
