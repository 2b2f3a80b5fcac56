"""The business operation ``FhirPublisher``: predictions' FHIR resources to a FHIR server.

Two messages, one path to the server (the core's :class:`~aistack.fhir.publish.FhirPublisher`,
a transaction Bundle of conditional creates, so a retried message never duplicates a
resource):

* :class:`FhirPublishRequest` (from ``XRayRouter``): a stored X-ray prediction, by id. The
  core's :class:`~aistack.fhir.publish.PredictionPublisher` reads the record from the store
  (IRIS SQL) and builds its resources with the core builders, as the standalone runtime's
  outbox does.
* :class:`FhirResourcePublishRequest` (from ``IntegratedML``): an ICU prediction's
  RiskAssessment as it was answered, published as a transaction of that one resource
  (:func:`~aistack.fhir.bundle.transaction_json`), conditional on its identifier.

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

from typing import Any

from iop import BusinessOperation, setting

from aistack.fhir.bundle import transaction_json
from aistack.fhir.publish import FhirPublisher, PredictionPublisher, PublishError, PublishRejected
from aistack.interop import wiring
from aistack.interop.messages import (
    FhirPublishReply,
    FhirPublishRequest,
    FhirResourcePublishReply,
    FhirResourcePublishRequest,
)
from aistack.logs import request_id


class FhirOperation(BusinessOperation):
    """Publishes one prediction's resources per message; raises when it could not."""

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
        self.fhir: FhirPublisher | None = None
        self.publisher: PredictionPublisher | None = None

    def on_tear_down(self) -> None:
        if self.fhir is not None:
            self.fhir.close()  # the prediction publisher's too: they share it

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

    def publish_resource(self, request: FhirResourcePublishRequest) -> FhirResourcePublishReply:
        """One resource the production answered with, as a transaction of one conditional
        create; a resource that cannot be one (no id, no identifier) fails at once."""
        resource = request.resource
        kind = str(resource.get("resourceType", "resource"))
        token = request_id.set(request.request_id)
        try:
            identifier = _identifier(resource)
            try:
                bundle = transaction_json([resource])
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise PublishRejected(
                    f"{kind} {identifier} cannot become a transaction Bundle: "
                    f"{type(error).__name__}: {error}"
                ) from error
            result = self._fhir().publish(bundle)
        except PublishError as error:
            self.log_warning(
                f"{kind} {resource.get('id')} not published: {type(error).__name__}: {error}"
            )
            raise
        finally:
            request_id.reset(token)
        self.log_info(
            f"{kind} {identifier} published: {result.created} created, "
            f"{result.existing} already there"
        )
        return FhirResourcePublishReply(
            resource_type=kind,
            identifier=identifier,
            created=result.created,
            existing=result.existing,
            locations=result.locations,
        )

    def _fhir(self) -> FhirPublisher:
        """Built at the first message: an item with no server configured still starts (the
        senders send it nothing then), and says why at its first message."""
        if self.fhir is None:
            settings = wiring.runtime().settings
            url = str(self.url or "").strip() or settings.fhir_publish_url
            if not url:
                raise PublishError(
                    "no FHIR server: set AISTACK_FHIR_PUBLISH_URL or the item's url setting"
                )
            self.fhir = FhirPublisher.from_settings(
                settings, url, timeout_s=float(self.timeout_s), attempts=max(1, int(self.attempts))
            )
        return self.fhir

    def _publisher(self) -> PredictionPublisher:
        """The stored-prediction publisher over :meth:`_fhir` (and the job's store)."""
        if self.publisher is None:
            fhir = self._fhir()
            runtime = wiring.runtime()
            self.publisher = PredictionPublisher(
                runtime.store, runtime.files, runtime.settings.model_dir, fhir
            )
        return self.publisher


def _identifier(resource: dict[str, Any]) -> str:
    """``system|value`` of the resource's first identifier: what the conditional create and
    a search of the server use; :class:`PublishRejected` when it has none."""
    identifiers = resource.get("identifier")
    first = identifiers[0] if isinstance(identifiers, list) and identifiers else None
    if not (isinstance(first, dict) and first.get("system") and first.get("value")):
        kind = resource.get("resourceType", "resource")
        raise PublishRejected(
            f"{kind} {resource.get('id')} has no identifier (system and value): publishing it "
            "again could not find it, so it is not published"
        )
    return f"{first['system']}|{first['value']}"
