"""ICU request bodies: one row as JSON, many as a JSON list or CSV, and the schema they follow.

:func:`row_schema` is the OpenAPI request schema of a row and :func:`check_values` enforces it
in Python, so the published schema and the service agree on every value: numbers, numeric
text or null; JSON's ``true``/``false``, lists and objects are refused (422).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aistack.errors import (
    AistackError,
    BadRequest,
    InvalidJson,
    InvalidRequest,
    MissingInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from aistack.icu.columns import WORKBOOK_FEATURES
from aistack.icu.dataset import AGE_PERCENTILE, NOT_FEATURES, PATIENT
from aistack.icu.predictor import Row
from aistack.icu.rows import MAX_NAMES_IN_MESSAGE
from aistack.xray.request_body import JSON, MULTIPART

CSV = "text/csv"
BATCH_MEDIA_TYPES = (JSON, CSV, MULTIPART)
CSV_PART = "file"

NUMERIC_TEXT = r"[-+]?([0-9]{1,30}([.][0-9]{0,30})?|[.][0-9]{1,30})([eE][-+]?[0-9]{1,2})?"
"""A plain decimal number; no NaN, no infinity, nothing a float could overflow on."""
AGE_TEXT = r"(Above )?[0-9]{1,2}th"
"""``AGE_PERCENTIL`` as the workbook spells it: "60th", "Above 90th"."""
IDENTIFIER_TEXT = r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}"
"""``PATIENT_VISIT_IDENTIFIER`` as text (it becomes a FHIR identifier's value)."""
NUMBER_LIMIT = 1e300
MAX_INTEGER_ID = 2**53 - 1


def value_pattern(text: str) -> str:
    """The schema's pattern for a text value: ``text`` or empty (a missing value).

    The service applies it as JSON Schema validators in Python do (``re.search``), so the
    published schema and the service agree on every string, a trailing newline included.
    """
    return f"^({text})?$"


_TEXT_VALUES = {
    False: re.compile(value_pattern(NUMERIC_TEXT)),
    True: re.compile(value_pattern(f"{AGE_TEXT}|{NUMERIC_TEXT}")),
}
"""By "is it AGE_PERCENTIL"."""
_IDENTIFIER = re.compile(value_pattern(IDENTIFIER_TEXT))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = sorted({key for key in keys if keys.count(key) > 1})
        raise InvalidRequest(f"column {twice[0][:60]!r} is given twice")
    return dict(pairs)


def parse_json(body: bytes) -> Any:
    """Strict JSON (no NaN or Infinity; a key once per object): bad syntax or encoding → 400."""
    if not body.strip():
        raise MissingInput("empty body: send a JSON object keyed by the workbook's column names")
    try:
        return json.loads(body, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError is a ValueError
        raise InvalidJson(f"the body is not valid JSON: {error}") from error
    except RecursionError as error:
        raise InvalidJson("the body is not valid JSON here: nested too deeply") from error


def parse_csv(data: bytes, max_rows: int) -> list[dict[str, str | None]]:
    """Rows of a CSV with a header row of column names; an empty cell is missing (None)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the CSV is not UTF-8 text: {error}") from error
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [name.strip() for name in next(reader, [])]
        if not any(header):
            raise InvalidRequest("the CSV is empty: send a header row of column names, then rows")
        if "" in header:
            raise InvalidRequest(
                f"the CSV header has an empty name (column {header.index('') + 1})"
            )
        if len(set(header)) != len(header):
            twice = sorted({name for name in header if header.count(name) > 1})
            raise InvalidRequest(f"the CSV header names {twice[0][:60]!r} twice")
        rows: list[dict[str, str | None]] = []
        for cells in reader:
            if not cells:
                continue  # a blank line
            if len(rows) == max_rows:
                raise too_many_rows(max_rows, f"more than {max_rows}")
            if len(cells) != len(header):
                raise InvalidRequest(
                    f"CSV row {len(rows) + 1} has {len(cells)} cells; the header has "
                    f"{len(header)} (cells are separated by commas)"
                )
            rows.append({n: (c.strip() or None) for n, c in zip(header, cells, strict=True)})
    except csv.Error as error:
        raise BadRequest(f"the CSV cannot be read: {error}") from error
    return rows


def wrong_media_type(kind: str, body: bytes, expected: str) -> AistackError:
    """An empty request without a type is a 400 saying what to send; any other type a 415."""
    if not kind and not body:
        return MissingInput(f"empty request: send {expected}")
    return UnsupportedMediaType(
        f"content type {kind or 'missing'!r} is not accepted here; send {expected}"
    )


def too_many_rows(limit: int, got: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"a batch takes at most {limit} rows (setting icu_max_batch_rows); got {got}: split it"
    )


def check_values(rows: Sequence[Mapping[str, object]], features: Sequence[str]) -> None:
    """Each value as :func:`row_schema` allows, or a 422 naming the cells.

    Stricter than ``rows.py`` on purpose, so that the published schema and the service agree
    exactly: no booleans, lists or objects anywhere; a feature's text must be a plain decimal
    number (``AGE_PERCENTIL`` also "60th", "Above 90th"); numbers within +-1e300.
    Unknown columns are left to ``rows.py``, which names them.
    """
    known = frozenset(features)
    problems = []
    for i, row in enumerate(rows):
        for column, value in row.items():
            if column in known:
                wrong = _feature_problem(column, value)
            elif column == PATIENT:
                wrong = _identifier_problem(value)
            elif column in NOT_FEATURES:
                wrong = None if _is_scalar(value) else "not a number or a text"
            else:
                continue
            if wrong:
                problems.append(f"row {i + 1} {column}={_shown(value)} ({wrong})")
    if problems:
        more = f" and {len(problems) - MAX_NAMES_IN_MESSAGE} more" if len(problems) > 5 else ""
        raise InvalidRequest(
            "values must be numbers, numeric text or empty: "
            + "; ".join(problems[:MAX_NAMES_IN_MESSAGE])
            + more
        )


def _is_scalar(value: object) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _feature_problem(column: str, value: object) -> str | None:
    if not _is_scalar(value):
        return f"{type(value).__name__} is not a number"
    if isinstance(value, str):
        return None if _TEXT_VALUES[column == AGE_PERCENTILE].search(value) else "not a number"
    if isinstance(value, int | float) and not abs(value) <= NUMBER_LIMIT:
        return f"beyond +-{NUMBER_LIMIT:g}"
    return None


def _identifier_problem(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return None if _IDENTIFIER.search(value) else f"not like {IDENTIFIER_TEXT}"
    if _is_scalar(value) and float(value).is_integer() and abs(value) <= MAX_INTEGER_ID:
        return None
    return f"an integer within +-{MAX_INTEGER_ID} or a text like {IDENTIFIER_TEXT}"


def subject_identifier(row: Row) -> str | None:
    """``PATIENT_VISIT_IDENTIFIER`` as text (checked by :func:`check_values`); None if absent."""
    value = row.get(PATIENT)
    if isinstance(value, float):
        return str(int(value))
    return None if value is None or str(value).strip() == "" else str(value).strip()


# --- the request bodies' JSON Schema (OpenAPI), which :func:`check_values` enforces


def _text_pattern(column: str) -> str:
    return _TEXT_VALUES[column == AGE_PERCENTILE].pattern


def row_schema(features: Sequence[str] = WORKBOOK_FEATURES) -> dict[str, Any]:
    """One row: the workbook's columns, each optional; at least one feature with a value."""
    properties: dict[str, Any] = {
        column: {  # pattern: strings only; minimum and maximum: numbers only
            "type": ["number", "string", "null"],
            "minimum": -NUMBER_LIMIT,
            "maximum": NUMBER_LIMIT,
            "pattern": _text_pattern(column),
        }
        for column in features
    }
    properties[PATIENT] = {
        "anyOf": [
            {"type": "integer", "minimum": -MAX_INTEGER_ID, "maximum": MAX_INTEGER_ID},
            {"type": "string", "pattern": _IDENTIFIER.pattern},
            {"type": "null"},
        ],
        "description": "the patient's visit; becomes the RiskAssessment's subject",
    }
    for column in NOT_FEATURES:
        properties.setdefault(
            column, {"type": ["string", "number", "null"], "description": "ignored"}
        )
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "minProperties": 1,
        "description": "one patient's first-window values by the workbook's column names; an "
        'absent key, null or "" is a missing value',
    }
