"""What both runtimes' HTTP fronts must agree on: header names, id patterns, query parameters.

The standalone runtime's FastAPI adapter (:mod:`aistack.api`) and the IRIS runtime's REST
entry (:mod:`aistack.interop.rest`) answer the same requests with the same JSON and headers.
The facts they share live here, free of any web framework, so the IRIS runtime never has to
import one.
"""

from __future__ import annotations

import re

REQUEST_ID_HEADER = "X-Request-ID"
"""Taken from the request when sane, else made up; logged and sent back either way."""
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
"""An incoming request id worth keeping: short, and safe in a log line or a header."""
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # signed file URLs must not leak to other sites
}
"""Headers every response carries (unless the route set them already)."""

BACKEND_HEADER = "X-Model-Backend"
"""Names the inference backend that served a prediction (v1 keeps its 2020 JSON)."""

RECORD_ID = r"^[0-9a-f]{32}$"
"""A prediction's or a job's id (a uuid4 in hex), as a path parameter must read."""
VERSION_QUERY_PARAMETERS = frozenset({"version", "label"})
"""The only query parameters of a v2 prediction or job: they choose the model version."""

UNAVAILABLE_TEXT = "loaded, but no inference backend can take calls (all down or circuits open)"
"""Why a loaded model version cannot serve: in readiness errors and TF Serving's status."""
