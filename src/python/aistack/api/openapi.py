"""What the OpenAPI document says about errors, so that it matches what the service sends."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable; listed in docs/API.md")
    message: str = Field(description="for people: what was wrong and what to do")


class ErrorBody(BaseModel):
    """Every 4xx/5xx response of the service has this body."""

    error: ErrorDetail


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


STATUS_TEXT: dict[int, str] = {
    400: "the request is malformed (missing field, invalid base64 or JSON, empty input)",
    401: "no API key, or an unknown or revoked one",
    403: "the key's role does not allow this",
    404: "no such resource (or not one this key may read)",
    408: "the request body did not arrive in time",
    413: "the body or the image is too large",
    415: "not a supported image or content type",
    422: "the request is well-formed but unusable (corrupt image, not a chest X-ray, "
    "invalid parameters)",
    429: "this key (or address) has spent its request budget",
    503: "the model is loading, or the service is saturated",
}
STATUS_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": _header("Bearer challenge")},
    429: {"Retry-After": _header("seconds to wait")},
    503: {"Retry-After": _header("seconds to wait")},
}

AUTH_ERRORS = (401, 403, 429)
BODY_ERRORS = (400, 408, 413, 415, 422, 503)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting ``statuses`` with the real error body."""
    return {
        status: {
            "model": ErrorBody,
            "description": STATUS_TEXT[status],
            **({"headers": STATUS_HEADERS[status]} if status in STATUS_HEADERS else {}),
        }
        for status in statuses
    }
