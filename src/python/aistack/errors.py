"""One home for the errors the core raises; each carries the HTTP status the APIs answer with.

Every ``code`` here is listed in docs/API.md's error table (a test keeps the two in step).
"""

from __future__ import annotations


class AistackError(Exception):
    """Base error: a stable machine-readable ``code``, a human message and an HTTP status.

    ``headers`` travel with the response (``Retry-After``, ``WWW-Authenticate``, ``Allow``).
    """

    status: int = 500
    code: str = "internal_error"
    retry_after_s: int | None = None
    """Set on errors worth retrying: the response then says when (``Retry-After``)."""

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        if self.retry_after_s is not None:
            self.headers.setdefault("Retry-After", str(self.retry_after_s))


class BadRequest(AistackError):
    status = 400
    code = "bad_request"


class MissingInput(BadRequest):
    code = "missing_input"


class InvalidBase64(BadRequest):
    code = "invalid_base64"


class EmptyInput(BadRequest):
    code = "empty_input"


class InvalidJson(BadRequest):
    code = "invalid_json"


class Unauthorized(AistackError):
    status = 401
    code = "unauthorized"


class Forbidden(AistackError):
    status = 403
    code = "forbidden"


class NotFound(AistackError):
    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    """A model name, version or version label that is not served."""

    code = "model_not_found"


class MethodNotAllowed(AistackError):
    status = 405
    code = "method_not_allowed"


class RequestTimeout(AistackError):
    status = 408
    code = "request_timeout"


class PayloadTooLarge(AistackError):
    status = 413
    code = "payload_too_large"


class ImageTooLarge(PayloadTooLarge):
    code = "image_too_large"


class NotAnImage(BadRequest):
    status = 415
    code = "not_an_image"


class UnsupportedFormat(BadRequest):
    status = 415
    code = "unsupported_format"


class UnsupportedMediaType(BadRequest):
    status = 415
    code = "unsupported_media_type"


class InvalidRequest(AistackError):
    status = 422
    code = "invalid_request"


class CorruptImage(BadRequest):
    status = 422
    code = "corrupt_image"


class NotAChestXray(BadRequest):
    status = 422
    code = "not_a_chest_xray"


class RateLimited(AistackError):
    status = 429
    code = "rate_limited"
    retry_after_s = 1


class NotReady(AistackError):
    status = 503
    code = "not_ready"
    retry_after_s = 5


BUSY_MESSAGE = "the service is at capacity: every prediction slot and queue place is taken"
"""One wording for every refusal at capacity: the service's, its shedding layer's, HAProxy's."""


class ServiceBusy(AistackError):
    status = 503
    code = "service_busy"
    retry_after_s = 1


class BackendFailed(AistackError):
    """An inference backend (TF Serving) answered with an error we cannot pass on as is."""

    status = 502
    code = "backend_error"


class BackendUnavailable(AistackError):
    """No inference backend can take the request now: down, open circuit, or still loading."""

    status = 503
    code = "backend_unavailable"
    retry_after_s = 1


class DeadlineExceeded(AistackError):
    """The request's inference deadline passed before any backend answered."""

    status = 504
    code = "deadline_exceeded"


def all_error_classes() -> list[type[AistackError]]:
    """Every error class, base included: what docs/API.md must list."""
    found: list[type[AistackError]] = [AistackError]
    pending = [AistackError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found
