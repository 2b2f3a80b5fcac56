"""The business operation ``TfServingOperation``: one TF Serving model address.

The production configures it twice (``TfServingGpu``, ``TfServingCpu``). It wraps the core's
TF Serving REST client, so addressing, timeouts, input checks and the mapping of TF
Serving's failures to typed errors are the standalone runtime's. The PNGs the business
process encoded go to TF Serving as they came, never decoded here. Errors go back as data:
the business process's router decides what to try next.
"""

from __future__ import annotations

from iop import BusinessOperation, setting

from aistack.errors import AistackError
from aistack.inference.tfserving.rest import TfServingRestEngine
from aistack.interop import wiring
from aistack.interop.messages import (
    INTERNAL,
    ErrorReply,
    InferenceRequest,
    InferenceResponse,
    StatusProbe,
    StatusReply,
)

PROTOCOLS = ("http",)


class TfServingOperation(BusinessOperation):
    """Runs the model on a TF Serving instance over REST; answers status probes."""

    backend = setting("cpu", description="backend name recorded with predictions (gpu, cpu)")
    url = setting("http://tfserving-cpu:8501", description="TF Serving REST base URL")
    model = setting("covid19", description="model name in TF Serving's model config")
    version = setting("", description="model version to address; empty: label or latest")
    label = setting("", description="version label to address (instead of a version)")
    timeout_s = setting(10.0, description="longest wait for one TF Serving call")
    protocol = setting("http", description="http (REST, port 8501)")
    max_connections = setting(8, description="pooled connections to TF Serving")

    def on_init(self) -> None:
        if str(self.protocol) not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} is not supported; use http")
        version = str(self.version or "").strip()
        label = str(self.label or "").strip()
        self.engine = TfServingRestEngine(
            str(self.backend),
            str(self.url),
            str(self.model),
            wiring.runtime().model,
            version=int(version) if version else None,
            label=label or None,
            timeout_s=float(self.timeout_s),
            max_connections=int(self.max_connections),
        )

    def on_tear_down(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()

    def infer(self, request: InferenceRequest) -> InferenceResponse:
        try:
            output = self.engine.infer_encoded(
                request.images, request.heatmap, timeout_s=request.timeout_s
            )
        except AistackError as error:
            return InferenceResponse(backend=str(self.backend), error=ErrorReply.from_error(error))
        except Exception as error:  # noqa: BLE001 - errors travel as data (messages.py)
            self.log_error(f"inference failed: {type(error).__name__}: {error}")
            return InferenceResponse(backend=str(self.backend), error=INTERNAL)
        return InferenceResponse.from_output(output, str(self.backend))

    def status(self, request: StatusProbe) -> StatusReply:
        return StatusReply(
            available=self.engine.probe(request.timeout_s), backend=str(self.backend)
        )
