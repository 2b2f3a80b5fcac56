"""The business process ``XRayRouter``: the core's X-ray service, its engine a message.

It runs the same ``XrayService`` as the standalone runtime (decode with limits, plausibility
check, one model pass, heatmap rendering, storage) behind the same ``Router`` (policy,
circuit breakers, deadline, failover). Only the engines differ: each is an
:class:`OperationEngine` whose ``infer`` sends the model input to a TF Serving business
operation with ``send_request_sync``. So routing behaves exactly as in the standalone
runtime with ``AISTACK_BACKENDS=gpu=...,cpu=...``.

When ``AISTACK_FHIR_PUBLISH_URL`` is set, each stored prediction is then queued for the
``FhirPublisher`` operation (``send_request_async``): the answer never waits for the FHIR
server, and IRIS's queue keeps the request until it is published.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
from iop import BusinessProcess, setting, target

from aistack.errors import AistackError, BackendUnavailable, DeadlineExceeded
from aistack.inference.engine import EngineOutput, ModelInfo
from aistack.inference.tfserving.codec import encode_pixels
from aistack.interop import wiring
from aistack.interop.messages import (
    INTERNAL,
    ErrorReply,
    FhirPublishRequest,
    InferenceRequest,
    InferenceResponse,
    JobRequest,
    JobStatusReply,
    ReadinessQuery,
    ReadinessReply,
    StatusProbe,
    StatusReply,
    StoredPrediction,
    XrayPredictionRequest,
    XrayPredictionResponse,
)
from aistack.logs import request_id
from aistack.store.jobs import JobStatus
from aistack.xray.jobs import JOB_ENDPOINT
from aistack.xray.service import XrayService

Sender = Callable[[str, Any, float], Any]
"""(target item, message, timeout in seconds) → the target's response message."""

_sender: ContextVar[Sender | None] = ContextVar("aistack_interop_sender", default=None)
IRIS_TIMEOUT_MARGIN_S = 1
"""IRIS's own wait outlasts the operation's HTTP timeout, so the operation's answer (a
deadline error as data) arrives rather than IRIS's bare timeout."""


@contextmanager
def sending_with(send: Sender) -> Iterator[None]:
    """Operation engines used inside send through ``send`` (the component now handling a
    message: IRIS calls must come from it, on its thread)."""
    token = _sender.set(send)
    try:
        yield
    finally:
        _sender.reset(token)


class OperationEngine:
    """An inference engine that is a production item: ``infer`` is a synchronous message.

    Failures come back as typed errors (unavailable, deadline, failed), which the core's
    router turns into retries on another backend, breaker counts and HTTP statuses.
    """

    def __init__(self, name: str, target_item: str, info: ModelInfo, timeout_s: float) -> None:
        self.backend = name
        self.target = target_item
        self.info = info
        self.timeout_s = timeout_s
        self.address = f"production item {target_item}"

    def infer(
        self, pixels: np.ndarray, heatmap: bool, timeout_s: float | None = None
    ) -> EngineOutput:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        request = InferenceRequest(
            images=encode_pixels(pixels, self.info.image_size), heatmap=heatmap, timeout_s=timeout
        )
        reply = self._send(request, timeout)
        if not isinstance(reply, InferenceResponse):
            raise BackendUnavailable(f"{self.address} gave no inference answer: {reply!r:.80}")
        if reply.error is not None:
            raise reply.error.to_error()
        return reply.to_output()

    def probe(self, timeout_s: float = 1.0) -> bool:
        reply = self._send(StatusProbe(timeout_s=timeout_s), timeout_s)
        return isinstance(reply, StatusReply) and reply.available

    def close(self) -> None:
        """Nothing to release: the operation owns the connection to TF Serving."""

    def _send(self, message: Any, timeout_s: float) -> Any:
        send = _sender.get()
        if send is None:
            raise RuntimeError("an operation engine is used outside a production message")
        started = time.monotonic()
        try:
            reply = send(self.target, message, timeout_s)
        except Exception as error:
            raise BackendUnavailable(f"{self.address} cannot be reached: {error}") from error
        if reply is None or reply == "":  # IRIS waited its timeout without an answer
            waited = time.monotonic() - started
            raise DeadlineExceeded(f"{self.address} did not answer within {waited:.1f} s")
        return reply


def error_reply(error: Exception) -> ErrorReply:
    """Client and backend errors as the HTTP answer will give them; anything else a 500."""
    if isinstance(error, AistackError):
        return ErrorReply.from_error(error)
    return INTERNAL


class XRayRouter(BusinessProcess):
    """Classify X-rays with the core's service; inference on TF Serving operations."""

    TfServingGpu = target("TfServingGpu")
    TfServingCpu = target("TfServingCpu")
    FhirPublisher = target("FhirPublisher")
    routing = setting(
        "gpu-first",
        description="gpu-first (CPU as fallback), round-robin or least-outstanding",
    )
    backend_timeout_s = setting(
        10.0, description="longest wait for one TF Serving call, within the request deadline"
    )
    probe_interval_s = setting(
        2.0, description="seconds between status probes of the backends; 0: breakers only"
    )

    def on_init(self) -> None:
        # IRIS calls this for every message a business process instance takes; the heavy
        # pieces are built once per job (wiring) and only looked up here.
        self.runtime = wiring.runtime()

    # -- handlers (IoP dispatches by the annotated message type) ----------------------------

    def predict(self, request: XrayPredictionRequest) -> XrayPredictionResponse:
        token = request_id.set(request.request_id)
        try:
            with self._sending():
                record = self._service(request.version).predict(
                    request.image, request.heatmap, request.endpoint, request.client
                )
        except Exception as error:  # noqa: BLE001 - errors travel as data (messages.py)
            self._log_failure(error)
            return XrayPredictionResponse(error=error_reply(error))
        finally:
            request_id.reset(token)
        self._queue_fhir_publish(record.id, request.request_id)
        return XrayPredictionResponse(prediction=StoredPrediction.from_record(record))

    def run_job(self, request: JobRequest) -> JobStatusReply:
        """A queued job: mark it running, predict, record the outcome on the job row.

        A job that is already finished (delivered again after a restart) is left alone.
        """
        jobs = self.runtime.jobs
        job = jobs.get(request.job_id)
        if job is None or job.finished:
            status = job.status if job else "unknown"
            self.log_warning(f"job {request.job_id} is {status}; not run again")
            return JobStatusReply(job_id=request.job_id, status=str(status))
        jobs.mark_running(request.job_id)
        answer = self.predict(
            XrayPredictionRequest(
                image=request.image,
                heatmap=request.heatmap,
                endpoint=JOB_ENDPOINT,
                client=request.client,
                version=request.version,
                request_id=request.request_id,
            )
        )
        if answer.error is not None:
            jobs.mark_failed(request.job_id, answer.error.code, answer.error.message)
            return JobStatusReply(
                job_id=request.job_id, status=JobStatus.FAILED, error=answer.error
            )
        jobs.mark_succeeded(request.job_id, answer.prediction.id)
        return JobStatusReply(job_id=request.job_id, status=JobStatus.SUCCEEDED)

    def readiness(self, request: ReadinessQuery) -> ReadinessReply:
        """Ready when some backend answers its status probe with the model AVAILABLE."""
        try:
            service = self._service(None)
            with self._sending():
                service.engine.probe_once()
        except Exception as error:  # noqa: BLE001 - not ready, and why
            return ReadinessReply(ready=False, detail=error_reply(error).message)
        if service.engine.available:
            return ReadinessReply(ready=True)
        return ReadinessReply(ready=False, detail="no inference backend is available")

    def on_message(self, request: Any) -> Any:
        self.log_warning(f"{type(request).__name__} is not a message XRayRouter handles")
        return XrayPredictionResponse(
            error=ErrorReply(status=500, code="internal_error", message="unexpected message")
        )

    # -- helpers ----------------------------------------------------------------------------

    def _queue_fhir_publish(self, prediction_id: str, from_request: str | None) -> None:
        """Hand the stored prediction to ``FhirPublisher`` through IRIS's queue, expecting
        no reply; a failure to queue is logged, never the request's failure."""
        if not self.runtime.settings.fhir_publish_url:
            return
        message = FhirPublishRequest(prediction_id=prediction_id, request_id=from_request)
        try:
            self.send_request_async(self.FhirPublisher, message, response_required=False)
        except Exception as error:  # noqa: BLE001 - the prediction is stored and answered
            self.log_error(f"prediction {prediction_id} not queued for FHIR publishing: {error}")

    def _service(self, version: int | None) -> XrayService:
        self.runtime.check_version(version)
        info = self.runtime.model
        timeout_s = float(self.backend_timeout_s)
        engines = {
            "gpu": OperationEngine("gpu", self.TfServingGpu, info, timeout_s),
            "cpu": OperationEngine("cpu", self.TfServingCpu, info, timeout_s),
        }
        service = self.runtime.xray_service(engines, str(self.routing))
        self._maybe_probe(service)
        return service

    def _maybe_probe(self, service: XrayService) -> None:
        """Refresh backend health when it is older than ``probe_interval_s``."""
        interval = float(self.probe_interval_s)
        router = service.engine
        last = self.runtime.probed_at.get(id(router))
        if interval <= 0 or (last is not None and time.monotonic() - last < interval):
            return
        self.runtime.probed_at[id(router)] = time.monotonic()
        with self._sending():
            router.probe_once()

    @contextmanager
    def _sending(self) -> Iterator[None]:
        with sending_with(self._send):
            yield

    def _send(self, target_item: str, message: Any, timeout_s: float) -> Any:
        timeout = math.ceil(timeout_s) + IRIS_TIMEOUT_MARGIN_S
        return self.send_request_sync(target_item, message, timeout=timeout)

    def _log_failure(self, error: Exception) -> None:
        if isinstance(error, AistackError):
            if error.status >= 500:
                self.log_warning(f"prediction failed: {error.code}: {error.message}")
        else:
            self.log_error(f"prediction failed: {type(error).__name__}: {error}")
