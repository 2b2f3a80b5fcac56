"""Structured log lines: one JSON object per event, tagged with the current request id.

The request id is set per request by the web layer (or the IRIS service) and read here, so
the core logs what happened without knowing who called it.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str | None] = ContextVar("aistack_request_id", default=None)
EVENTS = logging.getLogger("aistack.events")


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Write ``{"ts", "event", "request_id", **fields}`` as one JSON line (no image data)."""
    if not EVENTS.isEnabledFor(level):
        return
    line = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
        "request_id": request_id.get(),
        **fields,
    }
    EVENTS.log(level, json.dumps(line, default=str, separators=(",", ":")))


SIGNED_TOKEN = re.compile(r"(?<=[?&]token=)[^&\s]+")


class RedactTokens(logging.Filter):
    """Keeps signed file-URL tokens out of access lines: a logged token is a usable link."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                SIGNED_TOKEN.sub("…", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def logging_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's own config plus ours: plain lines for ``aistack``, bare JSON for events."""
    from uvicorn.config import LOGGING_CONFIG  # noqa: PLC0415 - only servers need it

    config = json.loads(json.dumps(LOGGING_CONFIG))
    config["formatters"]["aistack"] = {
        "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
    }
    config["formatters"]["json_line"] = {"format": "%(message)s"}
    config.setdefault("filters", {})["redact_tokens"] = {"()": RedactTokens}
    config["handlers"]["access"]["filters"] = ["redact_tokens"]
    config["handlers"]["aistack"] = {
        "class": "logging.StreamHandler",
        "formatter": "aistack",
        "stream": "ext://sys.stderr",
    }
    config["handlers"]["events"] = {
        "class": "logging.StreamHandler",
        "formatter": "json_line",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["aistack"] = {
        "handlers": ["aistack"],
        "level": level.upper(),
        "propagate": False,
    }
    config["loggers"]["aistack.events"] = {
        "handlers": ["events"],
        "level": level.upper(),
        "propagate": False,
    }
    return config
