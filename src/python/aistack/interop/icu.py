"""The ICU-admission predictor in the production: IntegratedML answers, in SQL.

    REST (AIStack.REST.ICU) ─► IcuPredictService ─► IntegratedML (IntegratedMLOperation)
                                                      IcuService over IntegratedMLPredictor
                                                      ─► PREDICT / PROBABILITY in this namespace
                                                      ┄► FhirPublisher (queued RiskAssessment)

``IntegratedMLOperation`` runs the core's :class:`~aistack.icu.service.IcuService`, the use
case the standalone ICU routes run (read the body, check the rows, predict, explain, shape the
JSON and its FHIR RiskAssessment), over :class:`~aistack.icu.integratedml.IntegratedMLPredictor`:
each probability is IRIS's ``PROBABILITY(IcuAdmission USE <trained model> FOR 1)`` on the
model the installer trained (``aistack.interop.icu_setup``). The two runtimes therefore
answer the same body with the same JSON, errors included; only the backend differs.

The predictor speaks DB-API. Inside IRIS it gets an **embedded** connection: no network, no
password, the SQL of the job's own namespace. IRIS's built-in ``iris`` module offers SQL as
``iris.sql.exec`` / ``iris.sql.prepare`` but no DB-API; ``iris-embedded-python-wrapper``
(which IoP and sqlalchemy-iris depend on) adds ``iris.dbapi.connect(mode="embedded")``, a
DB-API 2.0 connection over ``%SQL.Statement`` (``qmark`` parameters, ``iris.tstart`` /
``iris.tcommit`` transactions). It is the driver the prediction store already uses through
``AISTACK_DATABASE_URL=iris+emb:///AISTACK``. ``iris_ep.install()`` puts the wrapper on the
built-in module first, in case its start-up hook did not run (packages installed with
``pip --target``, as the image does).

Failures travel as data (an :class:`~aistack.interop.messages.ErrorReply`), never as an
exception: a bad body is the client's 4xx, a model not trained yet a 503, a failing SQL
statement a 502 and a line in the Event Log.

When ``AISTACK_FHIR_PUBLISH_URL`` is set (the rule ``XRayRouter`` follows for X-ray
results), each single prediction's RiskAssessment, exactly as answered, is queued for the
``FhirPublisher`` operation (``send_request_async``; IRIS's queue keeps it until it is
published, and its identifier makes every retry a no-op). The answer never waits for the
FHIR server, and a failure to queue is a line in the Event Log, not the request's failure.
Batch rows are not published: a batch answer has no RiskAssessment.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

from iop import BusinessOperation, BusinessService, setting, target

from aistack.errors import (
    AistackError,
    BackendFailed,
    BackendUnavailable,
    DeadlineExceeded,
    NotReady,
)
from aistack.icu.integratedml import DbApiConnection, IntegratedMLPredictor
from aistack.icu.service import IcuService
from aistack.interop import wiring
from aistack.interop.messages import (
    ErrorReply,
    FhirResourcePublishRequest,
    IcuCall,
    IcuReply,
    IcuRequest,
)
from aistack.logs import request_id

ICU_SERVICE = "IcuPredictService"
ICU_OPERATION = "IntegratedML"
FHIR_PUBLISHER = "FhirPublisher"
NOT_TRAINED = (
    "the ICU model is not trained in IRIS yet: mount the workbook (AISTACK_ICU_WORKBOOK) and "
    "run AIStack.Installer's EnsureIcuModel (docs/IRIS.md, ICU admission)"
)

CALLS: dict[IcuCall, Callable[[IcuService, IcuRequest], dict[str, Any]]] = {
    "model": lambda service, _request: service.model_json(),
    "predict": lambda service, request: service.predict_json(
        request.body, request.content_type, request.client
    ),
    "predict_batch": lambda service, request: service.batch_json(
        request.body, request.content_type, request.client
    ),
}


def embedded_connection() -> DbApiConnection:
    """A DB-API connection to the SQL of this IRIS job's namespace, in process.

    Only inside IRIS (a business host, ``iris session``, ``irispython``); elsewhere the
    wrapper raises ``InterfaceError`` at once.
    """
    import iris_ep  # noqa: PLC0415 - iris-embedded-python-wrapper, only inside IRIS

    return iris_ep.install().dbapi.connect(mode="embedded")


class IcuPredictService(BusinessService):
    """Where an ICU route enters the production: ask the operation, wait, answer.

    Adapterless, like ``XRayPredictService``: the REST class creates it for each request.
    """

    IntegratedML = target(ICU_OPERATION)
    timeout_s = setting(
        55.0,
        description="longest wait for the operation's answer; below the Web Gateway's "
        "Server_Response_Timeout (60 s, iris/webgateway/CSP.ini), so that a slow batch gets "
        "the project's 504 rather than the gateway's",
    )

    def on_process_input(self, request: IcuRequest) -> IcuReply:
        try:
            reply = self.send_request_sync(
                self.IntegratedML, request, timeout=math.ceil(float(self.timeout_s))
            )
        except Exception as error:  # noqa: BLE001 - IRIS could not deliver: say so as data
            failure: AistackError = BackendUnavailable(
                f"the production did not take the request: {error}"
            )
            return IcuReply(error=ErrorReply.from_error(failure))
        if isinstance(reply, IcuReply):
            return reply
        failure = DeadlineExceeded(f"no answer from the production within {self.timeout_s} s")
        return IcuReply(error=ErrorReply.from_error(failure))


class IntegratedMLOperation(BusinessOperation):
    """Answers ICU requests with the core's ``IcuService`` over IntegratedML in SQL.

    The predictor is opened at the first message, not at start: the installer may still be
    training the model while the production starts. Until a model is recorded, requests get
    a 503 and the next one looks again. When a statement fails, the predictor and its
    connection are dropped; on a predictor opened for an earlier message (the model may
    have been trained again since) the request is tried once more on a fresh one.
    """

    FhirPublisher = target(FHIR_PUBLISHER)
    trained_model = setting(
        "",
        description="IntegratedML trained model to score with "
        "(INFORMATION_SCHEMA.ML_TRAINED_MODELS.TRAINED_MODEL_NAME, e.g. "
        "IcuAdmissionT20261126120000); empty: the latest one the installer recorded",
    )

    def on_init(self) -> None:
        self.service: IcuService | None = None
        self.connection: DbApiConnection | None = None

    def on_tear_down(self) -> None:
        self._forget()

    def answer(self, request: IcuRequest) -> IcuReply:
        token = request_id.set(request.request_id)
        try:
            return IcuReply(answer=self._answer(request))
        except AistackError as error:
            if error.status >= 500:
                self.log_warning(f"ICU {request.call}: {error.code}: {error.message}")
            return IcuReply(error=ErrorReply.from_error(error))
        except Exception as error:  # noqa: BLE001 - errors travel as data (messages.py)
            self.log_error(f"ICU {request.call} failed: {type(error).__name__}: {error}")
            self._forget()
            failure = BackendFailed("IntegratedML could not answer; see the production's Event Log")
            return IcuReply(error=ErrorReply.from_error(failure))
        finally:
            request_id.reset(token)

    def _answer(self, request: IcuRequest) -> dict[str, Any]:
        call = CALLS[request.call]
        opened_before = self.service is not None
        try:
            return call(self._service(), request)
        except BackendFailed as error:  # a statement failed (IcuService says so)
            self._forget()
            if not opened_before:
                raise
            # Opened for an earlier message: the model may have been trained again since
            # (its former trained model dropped). Open the latest one and try once more.
            self.log_warning(f"reopening the ICU model after: {error.message}")
            return call(self._service(), request)

    def _service(self) -> IcuService:
        if self.service is None:
            connection = embedded_connection()
            trained = str(self.trained_model or "").strip() or None
            try:
                predictor = IntegratedMLPredictor.open(connection, trained_model=trained)
            except Exception as error:  # not trained (yet): a 503 that says why
                _close(connection)
                reason = f"{type(error).__name__}: {error}"
                if trained:
                    raise NotReady(
                        f"the ICU model {trained} (the IntegratedML operation's trained_model "
                        f"setting) cannot be opened ({reason})"
                    ) from error
                raise NotReady(f"{NOT_TRAINED} ({reason})") from error
            settings = wiring.runtime().settings
            self.connection = connection
            self.service = IcuService(
                predictor,
                max_batch_rows=settings.icu_max_batch_rows,
                record_risk=self._queue_fhir_publish,
            )
            self.log_info(
                f"ICU model {predictor.metadata.version} opened "
                f"({len(predictor.metadata.features)} features)"
            )
        return self.service

    def _queue_fhir_publish(self, resource: dict[str, Any]) -> None:
        """Hand a prediction's RiskAssessment to ``FhirPublisher`` through IRIS's queue,
        expecting no reply; a failure to queue is logged, never the request's failure."""
        if not wiring.runtime().settings.fhir_publish_url:
            return
        message = FhirResourcePublishRequest(resource=resource, request_id=request_id.get())
        try:
            self.send_request_async(self.FhirPublisher, message)
        except Exception as error:  # noqa: BLE001 - the prediction is answered all the same
            self.log_error(
                f"RiskAssessment {resource.get('id')} not queued for FHIR publishing: {error}"
            )

    def _forget(self) -> None:
        """Drop the predictor and its connection: the next message opens them again."""
        connection, self.connection, self.service = self.connection, None, None
        if connection is not None:
            _close(connection)


def _close(connection: DbApiConnection) -> None:
    close = getattr(connection, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):  # closing a connection that already failed
            close()
