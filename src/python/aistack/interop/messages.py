"""The messages the IRIS production passes between its components.

Each is a ``PydanticMessage``: IoP stores it as JSON in an ``IOP.Message`` (so IRIS queues
persist it and the Message Viewer shows it) and validates it on the way back in. Bytes travel
as base64. Failures travel as data (an :class:`ErrorReply` in the response), never as an
exception: an exception escaping a component becomes an Ens error status, a 500 and an alert
for what is often a client's bad image.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import numpy as np
from iop import PydanticMessage
from pydantic import BaseModel, ConfigDict, Field

from aistack.errors import AistackError, all_error_classes
from aistack.inference.engine import EngineOutput
from aistack.store import PredictionRecord

Endpoint = Literal["v1-predict", "v1-heatmap", "v2", "v2-job"]
BYTES_AS_BASE64 = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
ERROR_CLASSES = {cls.code: cls for cls in reversed(all_error_classes())}
"""Each code's most general class (several share one code; their status is the same)."""


class ErrorReply(BaseModel):
    """An :class:`~aistack.errors.AistackError` as data: what the HTTP answer will say."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_error(cls, error: AistackError) -> ErrorReply:
        return cls(
            status=error.status, code=error.code, message=error.message, headers=error.headers
        )

    def to_error(self) -> AistackError:
        """The core's error again, so the router can tell retryable failures apart."""
        error_class = ERROR_CLASSES.get(self.code, AistackError)
        error = error_class(self.message, self.headers)
        if error.status != self.status:  # a code unknown here keeps the status it came with
            error.status = self.status
        return error


INTERNAL = ErrorReply(
    status=500, code="internal_error", message="internal error; see the server log"
)


class StoredPrediction(BaseModel):
    """The stored prediction record, field for field (:class:`PredictionRecord`)."""

    model_config = ConfigDict(protected_namespaces=())

    id: str
    created_at: datetime
    model_name: str
    model_version: int
    input_sha256: str
    probabilities: dict[str, float]
    label: str
    covid_positive: bool
    threshold: float
    latency_ms: float
    endpoint: str
    image_file: str | None = None
    heatmap_file: str | None = None
    overlay_file: str | None = None
    client: str | None = None
    backend: str | None = None
    patient_id: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    accession_number: str | None = None
    fhir_observation_id: str | None = None
    fhir_report_id: str | None = None

    @classmethod
    def from_record(cls, record: PredictionRecord) -> StoredPrediction:
        return cls.model_validate(record, from_attributes=True)

    def to_record(self) -> PredictionRecord:
        return PredictionRecord(**self.model_dump())


# -- X-ray predictions: REST entry -> business service -> business process -------------------


class XrayPredictionRequest(PydanticMessage):
    """One image to classify (and render, when ``heatmap``), as a route received it."""

    model_config = BYTES_AS_BASE64

    image: bytes
    heatmap: bool
    endpoint: Endpoint
    client: str | None = None
    """The caller allowed to read the prediction back (None: anonymous or auth off)."""
    version: int | None = None
    """The model version asked for; None: the served default."""
    request_id: str | None = None
    """The HTTP request's id, so the process's log lines carry it too."""


class XrayPredictionResponse(PydanticMessage):
    """The stored prediction, or why there is none."""

    prediction: StoredPrediction | None = None
    error: ErrorReply | None = None


class ReadinessQuery(PydanticMessage):
    """Can the production serve a prediction now? (Open Inference Protocol readiness.)"""


class ReadinessReply(PydanticMessage):
    ready: bool
    detail: str = ""


# -- inference: business process -> TF Serving business operation ---------------------------


class InferenceRequest(PydanticMessage):
    """Model inputs as TF Serving takes them: one lossless PNG per image (tfserving.codec)."""

    model_config = BYTES_AS_BASE64

    images: list[bytes]
    heatmap: bool
    timeout_s: float
    """What is left of the request's deadline for this call."""


class InferenceResponse(PydanticMessage):
    """One model pass: probabilities (N, classes) and Grad-CAM maps (N, h, w) when asked."""

    probabilities: list[list[float]] = Field(default_factory=list)
    heatmaps: list[list[list[float]]] | None = None
    backend: str = ""
    """The operation's backend name (``gpu``, ``cpu``)."""
    error: ErrorReply | None = None

    @classmethod
    def from_output(cls, output: EngineOutput, backend: str) -> InferenceResponse:
        heatmaps = None if output.heatmaps is None else output.heatmaps.tolist()
        return cls(probabilities=output.probabilities.tolist(), heatmaps=heatmaps, backend=backend)

    def to_output(self) -> EngineOutput:
        heatmaps = None if self.heatmaps is None else np.asarray(self.heatmaps, np.float32)
        return EngineOutput(np.asarray(self.probabilities, np.float32), heatmaps)


class StatusProbe(PydanticMessage):
    """Is the backend's model version AVAILABLE? (TF Serving's model status.)"""

    timeout_s: float = 1.0


class StatusReply(PydanticMessage):
    available: bool
    backend: str = ""


# -- asynchronous jobs ------------------------------------------------------------------------


class JobSubmission(PydanticMessage):
    """A prediction to run later: REST entry -> job service."""

    model_config = BYTES_AS_BASE64

    image: bytes
    heatmap: bool
    client: str | None = None
    version: int | None = None
    request_id: str | None = None


class JobRequest(PydanticMessage):
    """An accepted job: job service -> business process, through IRIS's persistent queue."""

    model_config = BYTES_AS_BASE64

    job_id: str
    image: bytes
    heatmap: bool
    client: str | None = None
    version: int | None = None
    request_id: str | None = None


class JobStatusReply(PydanticMessage):
    """Where a job stands (the job row has the details), or why it was not accepted."""

    job_id: str = ""
    status: str = ""
    error: ErrorReply | None = None


# -- FHIR publishing: business process -> FHIR business operation, through IRIS's queue ------


class FhirPublishRequest(PydanticMessage):
    """Publish a stored prediction's FHIR resources (built by the operation from the record).

    Only the id travels: the queue entry stays small (the Bundle, heatmap embedded, is
    hundreds of kB) and the Bundle is built from the record as stored when it is sent, the
    same Bundle at every retry.
    """

    prediction_id: str
    request_id: str | None = None
    """The request that made the prediction, so the operation's log lines carry it."""


class FhirPublishReply(PydanticMessage):
    """What the FHIR server did: entries created, and entries it already had."""

    prediction_id: str
    created: int = 0
    existing: int = 0
    locations: list[str] = Field(default_factory=list)


# -- ICU admission: REST entry -> IcuPredictService -> IntegratedMLOperation -----------------

IcuCall = Literal["model", "predict", "predict_batch"]
"""The ICU routes, by what they ask of ``aistack.icu.service.IcuService``."""


class IcuRequest(PydanticMessage):
    """One ICU call as its route received it: the raw body and its Content-Type.

    The body is parsed where it is answered, by the core's ``IcuService`` inside the
    operation, so that every bad input is refused with the standalone runtime's words.
    """

    model_config = BYTES_AS_BASE64

    call: IcuCall
    body: bytes = b""
    content_type: str | None = None
    client: str | None = None
    """Who asked (the IRIS user), for the operation's log line."""
    request_id: str | None = None
    """The HTTP request's id, so the operation's log lines carry it too."""


class IcuReply(PydanticMessage):
    """The route's JSON answer (what ``IcuService`` returned), or why there is none."""

    answer: dict[str, Any] | None = None
    error: ErrorReply | None = None


# -- FHIR publishing of a resource the production built: IntegratedML -> FhirPublisher --------


class FhirResourcePublishRequest(PydanticMessage):
    """Publish one resource as it was answered (an ICU prediction's RiskAssessment).

    The resource itself travels, unlike :class:`FhirPublishRequest`: nothing stores an ICU
    prediction in IRIS to rebuild it from, and the RiskAssessment is self-contained (its
    Device and basis Observations contained): a few kB, some 130 kB with every column
    given (IOP.Message keeps that as a stream). Its identifier makes the transaction a
    conditional create, so a message delivered again duplicates nothing.
    """

    resource: dict[str, Any]
    request_id: str | None = None
    """The request that made the prediction, so the operation's log lines carry it."""


class FhirResourcePublishReply(PydanticMessage):
    """What the FHIR server did with the resource: created it, or had it already."""

    resource_type: str
    identifier: str
    """``system|value`` of the resource's identifier: how to search the server for it."""
    created: int = 0
    existing: int = 0
    locations: list[str] = Field(default_factory=list)
