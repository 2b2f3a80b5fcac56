"""Publish a stored prediction's FHIR resources to a FHIR R4 server, as one transaction.

Both runtimes publish through :class:`PredictionPublisher`: the standalone runtime from its
outbox (:mod:`aistack.fhir.outbox`), the IRIS runtime from the ``FhirPublisher`` business
operation. Each builds the Bundle from the stored record with the core builders
(:func:`~aistack.fhir.build_prediction_resources`) and POSTs it to the server's base URL.

Publishing is idempotent: every entry of the Bundle is a conditional create on the
resource's identifier (``ifNoneExist``), and the Bundle of a prediction is the same every
time it is built. A publish that is retried after a lost answer, by this client, by the
outbox or by IRIS, finds what the first one created and duplicates nothing.

Failures come in two kinds, which decide what the callers do next:

* :class:`PublishError`: not published this time (server down, overloaded, a timeout,
  credentials refused, an answer that is not a transaction-response): try again later.
* :class:`PublishRejected`: the server refused the Bundle itself, or the prediction cannot
  become one (gone from the store, its model version no longer on disk). Sending the same
  Bundle again cannot succeed: a person has to look.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from aistack.config import Settings
from aistack.fhir.device import ModelDescription
from aistack.fhir.media import MediaLinks
from aistack.fhir.resources import build_prediction_resources
from aistack.store import PredictionRecord, PredictionStore
from aistack.xray.files import RESULT, FileStore

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
TRANSIENT_STATUSES = frozenset({408, 429})
"""4xx answers worth retrying (with 5xx): a timeout on the server's side, too many requests."""
NOT_THE_BUNDLE_STATUSES = frozenset({401, 403, 404, 405, 407})
"""4xx answers about the address or the credentials, not the Bundle: once the operator
fixes the configuration, the same Bundle goes through, so these are retried later."""
ERROR_TEXT_CHARS = 300
"""How much of an error answer a failure quotes."""


class PublishError(Exception):
    """Not published this time; publishing the same Bundle later may succeed.

    ``status`` is the server's HTTP status (None: no answer); ``retry_after_s`` is what
    the server asked callers to wait (``Retry-After``), when it did.
    """

    def __init__(
        self, message: str, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def transient(self) -> bool:
        """Worth retrying within one publish: no answer, 5xx, 408 or 429."""
        return self.status is None or self.status >= 500 or self.status in TRANSIENT_STATUSES


class PublishRejected(PublishError):
    """The Bundle is refused, or cannot be built: retrying it cannot succeed."""

    @property
    def transient(self) -> bool:
        return False


@dataclass(frozen=True)
class EntryOutcome:
    """One entry of the transaction-response: ``201 Created`` or ``200 OK`` (it existed)."""

    status: str
    location: str | None = None

    @property
    def created(self) -> bool:
        return self.status.startswith("201")


@dataclass(frozen=True)
class PublishResult:
    status_code: int
    entries: tuple[EntryOutcome, ...]
    attempts: int

    @property
    def created(self) -> int:
        return sum(entry.created for entry in self.entries)

    @property
    def existing(self) -> int:
        """Entries the server already had (an earlier publish of the same prediction)."""
        return len(self.entries) - self.created

    @property
    def locations(self) -> list[str]:
        return [entry.location for entry in self.entries if entry.location]


class FhirPublisher:
    """POSTs transaction Bundles to one FHIR server, retrying what is worth retrying.

    Connection errors, timeouts, 5xx, 408 and 429 are retried up to ``attempts`` times in
    all, waiting ``backoff_s``, then twice that, and so on, or what ``Retry-After`` asks. A
    wait longer than ``max_wait_s`` is not waited here: the :class:`PublishError` carries
    it, and the caller (outbox, IRIS) tries again later without holding a thread.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        max_wait_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"the FHIR base URL must be http(s)://..., got {base_url!r}")
        if token and user:
            raise ValueError("give a bearer token or a user and password, not both")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.url = base_url.rstrip("/")
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        headers = {"Accept": FHIR_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # trust_env=False: the configured server is contacted directly, never via a proxy
        # picked up from the environment (as for TF Serving).
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            auth=httpx.BasicAuth(user, password or "") if user else None,
            headers=headers,
            trust_env=False,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        url: str | None = None,
        *,
        timeout_s: float | None = None,
        attempts: int = 3,
    ) -> FhirPublisher:
        """The publisher ``AISTACK_FHIR_PUBLISH_*`` describe; ``url`` and ``timeout_s``
        override the URL and the timeout."""
        base_url = url or settings.fhir_publish_url
        if not base_url:
            raise ValueError("no FHIR server to publish to: set AISTACK_FHIR_PUBLISH_URL")
        token, password = settings.fhir_publish_token, settings.fhir_publish_password
        return cls(
            base_url,
            token=token.get_secret_value() if token else None,
            user=settings.fhir_publish_user,
            password=password.get_secret_value() if password else None,
            timeout_s=timeout_s or settings.fhir_publish_timeout_s,
            attempts=attempts,
        )

    def publish(self, bundle: dict[str, Any]) -> PublishResult:
        """POST ``bundle`` (a transaction); the checked transaction-response.

        Raises :class:`PublishError` (try later) or :class:`PublishRejected` (never).
        """
        body = json.dumps(bundle, separators=(",", ":")).encode()
        for attempt in range(1, self.attempts + 1):
            try:
                return self._post(bundle, body, attempt)
            except PublishError as error:
                if not error.transient or attempt == self.attempts:
                    raise
                wait = self._wait(attempt, error.retry_after_s)
                if wait > self.max_wait_s:
                    raise
                log.warning(
                    "FHIR publish attempt %d failed (%s); retrying in %.1f s", attempt, error, wait
                )
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _wait(self, attempt: int, retry_after_s: float | None) -> float:
        backoff = self.backoff_s * 2 ** (attempt - 1)
        return backoff if retry_after_s is None else max(retry_after_s, 0.0)

    def _post(self, bundle: dict[str, Any], body: bytes, attempt: int) -> PublishResult:
        try:
            answer = self._client.post(self.url, content=body, headers={"Content-Type": FHIR_JSON})
        except httpx.TransportError as error:
            raise PublishError(f"{self.url} cannot be reached: {_describe(error)}") from error
        if answer.is_success:
            entries = transaction_outcomes(bundle, answer)
            return PublishResult(answer.status_code, entries, attempt)
        raise _failure(self.url, answer)

    def close(self) -> None:
        self._client.close()


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _failure(url: str, answer: httpx.Response) -> PublishError:
    status = answer.status_code
    message = f"{url} answered {status}: {_error_text(answer)}"
    refused = 400 <= status < 500 and status not in TRANSIENT_STATUSES | NOT_THE_BUNDLE_STATUSES
    if refused:
        return PublishRejected(message, status)
    # 5xx, 408, 429; the address or credentials; a redirect (the URL should name the
    # server's base as it is now): later, or once the configuration is fixed.
    return PublishError(message, status, retry_after(answer))


def _error_text(answer: httpx.Response) -> str:
    """The OperationOutcome's diagnostics when there is one, else the start of the body."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        outcome = answer.json()
        issues = outcome.get("issue") if isinstance(outcome, dict) else None
        if issues:
            texts = [
                str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code"))
                for i in issues
                if isinstance(i, dict)
            ]
            return "; ".join(texts)[:ERROR_TEXT_CHARS]
    return answer.text[:ERROR_TEXT_CHARS] or answer.reason_phrase


def retry_after(answer: httpx.Response, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (given as seconds or as an HTTP date); None if absent."""
    value = answer.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def transaction_outcomes(
    bundle: dict[str, Any], answer: httpx.Response
) -> tuple[EntryOutcome, ...]:
    """The outcome of each entry; :class:`PublishError` when the answer is not the
    transaction-response of ``bundle`` (a proxy's page, another endpoint), since then it
    is unknown what the server did."""
    try:
        reply = answer.json()
    except ValueError:
        reply = None
    sent = len(bundle.get("entry", []))
    if not (
        isinstance(reply, dict)
        and reply.get("resourceType") == "Bundle"
        and reply.get("type") == "transaction-response"
        and isinstance(reply.get("entry"), list)
        and len(reply["entry"]) == sent
    ):
        raise PublishError(
            f"the answer of {answer.url} is not a transaction-response with {sent} entries",
            answer.status_code,
        )
    outcomes = []
    for position, entry in enumerate(reply["entry"]):
        response = entry.get("response") if isinstance(entry, dict) else None
        status = str(response.get("status", "")) if isinstance(response, dict) else ""
        if not status.startswith(("200", "201")):
            raise PublishError(
                f"entry {position} of the transaction-response says {status or 'nothing'}",
                answer.status_code,
            )
        outcomes.append(EntryOutcome(status, response.get("location")))
    return tuple(outcomes)


class PredictionPublisher:
    """A stored prediction, by id, published as its FHIR resources.

    The heatmap blended over the image is embedded in its Media (``content.data``): a
    stored-file link would expire, the FHIR server keeps the result for good. The analysed
    image is identified (SHA-256, DICOM UIDs), not copied.
    """

    def __init__(
        self,
        store: PredictionStore,
        files: FileStore,
        model_dir: Path,
        publisher: FhirPublisher,
        patient_system: str | None = None,
    ) -> None:
        self.store = store
        self.files = files
        self.model_dir = model_dir
        self.publisher = publisher
        self.patient_system = patient_system

    def bundle(self, prediction_id: str) -> dict[str, Any]:
        """The prediction's transaction Bundle; :class:`PublishRejected` if it has none."""
        record = self.store.get(prediction_id)
        if record is None:
            raise PublishRejected(f"prediction {prediction_id} is not in the store")
        model = ModelDescription.from_model_dir(
            self.model_dir, record.model_version, record.model_name
        )
        try:
            resources = build_prediction_resources(
                record, model, self._links(record), patient_system=self.patient_system
            )
        except (OSError, ValueError) as error:  # model folder gone; not valid FHIR
            raise PublishRejected(
                f"prediction {prediction_id} cannot be published: {_describe(error)}"
            ) from error
        return resources.bundle_json

    def _links(self, record: PredictionRecord) -> MediaLinks:
        if not record.overlay_file:
            return MediaLinks()
        try:  # past retention the file is gone; the Media then says what it was
            overlay = self.files.path(RESULT, record.overlay_file).read_bytes()
        except FileNotFoundError:
            return MediaLinks()
        return MediaLinks(overlay_jpeg=overlay)

    def publish(self, prediction_id: str) -> PublishResult:
        return self.publisher.publish(self.bundle(prediction_id))

    def close(self) -> None:
        self.publisher.close()
