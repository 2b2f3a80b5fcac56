"""One home for the errors the core raises; each carries the HTTP status the APIs answer with."""

from __future__ import annotations


class AistackError(Exception):
    """Base error: a stable machine-readable ``code``, a human message and an HTTP status."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AistackError):
    status = 400
    code = "bad_request"


class MissingInput(BadRequest):
    code = "missing_input"


class InvalidBase64(BadRequest):
    code = "invalid_base64"


class EmptyInput(BadRequest):
    code = "empty_input"


class NotAnImage(BadRequest):
    status = 415
    code = "not_an_image"


class UnsupportedFormat(BadRequest):
    status = 415
    code = "unsupported_format"


class UnsupportedMediaType(BadRequest):
    status = 415
    code = "unsupported_media_type"


class CorruptImage(BadRequest):
    status = 422
    code = "corrupt_image"


class PayloadTooLarge(AistackError):
    status = 413
    code = "payload_too_large"


class ImageTooLarge(PayloadTooLarge):
    code = "image_too_large"


class NotFound(AistackError):
    status = 404
    code = "not_found"


class NotReady(AistackError):
    status = 503
    code = "not_ready"


class ServiceBusy(AistackError):
    status = 503
    code = "service_busy"
