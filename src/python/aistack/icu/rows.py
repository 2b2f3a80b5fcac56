"""Rows sent to a predictor → the feature matrix, with clear errors for what cannot be used.

Accepted keys are the workbook's column names: the model's features, plus the identifying
columns (``PATIENT_VISIT_IDENTIFIER``, ``WINDOW``, ``ICU``), which are ignored when scoring.
Values are numbers, numeric strings, or missing (``None``, ``""``, NaN, or an absent key);
``AGE_PERCENTIL`` may also be given as in the workbook ("60th", "Above 90th"). Anything else
raises ``InvalidRequest`` (HTTP 422) naming the columns, so no bad input becomes a 500.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

import numpy as np

from aistack.errors import InvalidRequest
from aistack.icu.dataset import AGE_PERCENTILE, NOT_FEATURES, encode_age_percentile
from aistack.icu.predictor import Row

MAX_NAMES_IN_MESSAGE = 5


def _number(column: str, value: object) -> float:
    if value is None or value == "":
        return math.nan
    if column == AGE_PERCENTILE:
        return encode_age_percentile(value)
    if isinstance(value, bool | int | float):
        number = float(value)
    elif isinstance(value, str):
        number = float(value.strip())
    else:
        raise ValueError(f"{type(value).__name__} is not a number")
    if math.isinf(number):
        raise ValueError("infinite")
    return number


def unknown_columns(rows: Sequence[Row], features: Sequence[str]) -> list[str]:
    known = set(features) | set(NOT_FEATURES)
    unknown: set[str] = set()
    for row in rows:
        unknown |= row.keys() - known
    return sorted(map(str, unknown))


def _unknown_message(unknown: list[str], features: Sequence[str]) -> str:
    hints = []
    for name in unknown[:MAX_NAMES_IN_MESSAGE]:
        close = difflib.get_close_matches(name, features, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    more = f" and {len(unknown) - MAX_NAMES_IN_MESSAGE} more" if len(unknown) > 5 else ""
    return (
        f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(hints)}{more}: rows are "
        "keyed by the Sirio-Libanes workbook's column names (docs/ICU.md)"
    )


def feature_matrix(rows: Sequence[Row], features: Sequence[str]) -> np.ndarray:
    """``len(rows) x len(features)`` floats, NaN where missing; ``InvalidRequest`` otherwise."""
    if not rows:
        return np.empty((0, len(features)))
    unknown = unknown_columns(rows, features)
    if unknown:
        raise InvalidRequest(_unknown_message(unknown, features))
    try:  # the common case in one numpy call: numbers, numeric text and None (→ NaN)
        matrix = np.array([[row.get(f) for f in features] for row in rows], dtype=float)
        if np.isfinite(matrix[~np.isnan(matrix)]).all():
            return matrix
    except (TypeError, ValueError):
        pass
    return _checked_matrix(rows, features)


def _checked_matrix(rows: Sequence[Row], features: Sequence[str]) -> np.ndarray:
    """Cell by cell: workbook spellings (``AGE_PERCENTIL``), blanks, and what is wrong where."""
    matrix = np.full((len(rows), len(features)), np.nan)
    problems: list[str] = []
    for i, row in enumerate(rows):
        for j, column in enumerate(features):
            value = row.get(column)
            if value is None:
                continue
            try:
                matrix[i, j] = _number(column, value)
            except ValueError as error:
                problems.append(f"row {i + 1} {column}={value!r} ({error})")
    if problems:
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise InvalidRequest(
            "values must be numbers or empty: " + "; ".join(problems[:MAX_NAMES_IN_MESSAGE]) + more
        )
    return matrix


def row_values(row: Row, features: Sequence[str]) -> list[float | None]:
    """One row's feature values in ``features`` order, ``None`` where missing."""
    values = feature_matrix([row], features)[0]
    return [None if math.isnan(v) else float(v) for v in values]
