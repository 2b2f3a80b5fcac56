"""The business operation ``FhirPublisher``: stored predictions to a FHIR server.

It runs the core's :class:`~aistack.fhir.publish.PredictionPublisher`, as the standalone
runtime's outbox does: the record is read from the store (IRIS SQL), its resources are
built and checked by the core builders, and the transaction Bundle of conditional creates
is POSTed to the server. A retried message therefore never duplicates a resource.

Unlike the TF Serving operations, a failure here is **not** an answer but an exception,
which IRIS turns into an error status. The item's host settings (``settings.py``) then
decide what happens:

* ``ReplyCodeActions`` ``E*PublishRejected=F,E=R``: a Bundle the server refused (or a
  prediction that cannot become one) fails the message at once, with an alert; any other
  error (server down, 5xx, 429, credentials refused) is retried every ``RetryInterval``
  seconds until ``FailureTimeout`` (-1: never give up).
* The status text of a Python exception names its class (IoP's ``DisplayTraceback``:
  ``Exception in Python class: ... - PublishRejected - ...``), which is what ``E*``
  matches.

The server's URL is the ``url`` setting, else ``AISTACK_FHIR_PUBLISH_URL``; credentials
come from the environment only (``AISTACK_FHIR_PUBLISH_USER``/``_PASSWORD`` or ``_TOKEN``),
never from the production's configuration, which the Management Portal shows.
"""

from __future__ import annotations

from iop import BusinessOperation, setting

from aistack.fhir.publish import FhirPublisher, PredictionPublisher, PublishError
from aistack.interop import wiring
from aistack.interop.messages import FhirPublishReply, FhirPublishRequest
from aistack.logs import request_id


class FhirOperation(BusinessOperation):
    """Publishes one stored prediction per message; raises when it could not."""

    url = setting(
        "",
        description="FHIR R4 base URL; empty: AISTACK_FHIR_PUBLISH_URL (in docker compose "
        "http://webgateway/fhir/r4, IRIS for Health's FHIR server through the Web Gateway)",
    )
    timeout_s = setting(30.0, description="longest wait for the FHIR server's answer")
    attempts = setting(
        2,
        description="tries within one message (connection errors, 5xx, 429) before IRIS's "
        "own retry (RetryInterval) takes over",
    )

    def on_init(self) -> None:
        self.publisher: PredictionPublisher | None = None

    def on_tear_down(self) -> None:
        if self.publisher is not None:
            self.publisher.close()

    def publish(self, request: FhirPublishRequest) -> FhirPublishReply:
        token = request_id.set(request.request_id)
        try:
            result = self._publisher().publish(request.prediction_id)
        except PublishError as error:
            self.log_warning(
                f"prediction {request.prediction_id} not published: {type(error).__name__}: {error}"
            )
            raise
        finally:
            request_id.reset(token)
        self.log_info(
            f"prediction {request.prediction_id} published: {result.created} created, "
            f"{result.existing} already there"
        )
        return FhirPublishReply(
            prediction_id=request.prediction_id,
            created=result.created,
            existing=result.existing,
            locations=result.locations,
        )

    def _publisher(self) -> PredictionPublisher:
        """Built at the first message: an item with no server configured still starts (the
        router sends it nothing then), and says why at its first message."""
        if self.publisher is None:
            runtime = wiring.runtime()
            settings = runtime.settings
            url = str(self.url or "").strip() or settings.fhir_publish_url
            if not url:
                raise PublishError(
                    "no FHIR server: set AISTACK_FHIR_PUBLISH_URL or the item's url setting"
                )
            publisher = FhirPublisher.from_settings(
                settings, url, timeout_s=float(self.timeout_s), attempts=max(1, int(self.attempts))
            )
            self.publisher = PredictionPublisher(
                runtime.store, runtime.files, settings.model_dir, publisher
            )
        return self.publisher
