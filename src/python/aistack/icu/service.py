"""The ICU service both runtimes call: request bodies in, the answers' JSON out.

The standalone routes (``aistack.api.icu``) and the IRIS REST twin hand over the raw body and
its Content-Type and send back the dict with status 200, so both answer the same JSON, errors
included: every bad input raises an ``aistack.errors`` type (400, 413, 415, 422), never a bare
exception. Bodies:

- ``predict_json``: ``application/json``, ONE object keyed by the workbook's column names;
- ``batch_json``: ``application/json`` (a list of such objects), ``text/csv`` (a header row of
  column names, an empty cell is a missing value), or ``multipart/form-data`` with the CSV as
  the file part ``file``; at most ``max_batch_rows`` rows (413 beyond).

Values are numbers, numeric text or null, exactly as :func:`row_schema` (the OpenAPI request
schema) says and :func:`check_values` enforces: JSON's ``true``/``false`` are refused (422),
the workbook's 0/1 columns are numbers. Missing values are allowed, all of a row's included:
the answer is then the model's estimate for a patient of whom nothing is known. Only an
empty JSON object is refused (422): it sent nothing at all.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from aistack.errors import (
    AistackError,
    BackendFailed,
    BadRequest,
    InvalidJson,
    InvalidRequest,
    MissingInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from aistack.fhir.risk import risk_assessment_json
from aistack.icu.dataset import AGE_PERCENTILE, NOT_FEATURES, PATIENT
from aistack.icu.local import LocalPredictor, load_local
from aistack.icu.predictor import IcuPrediction, IcuPredictor, Row, predict
from aistack.icu.rows import MAX_NAMES_IN_MESSAGE, row_values
from aistack.xray.request_body import JSON, MULTIPART, media_type, parse_multipart

if TYPE_CHECKING:
    from aistack.config import Settings

CSV = "text/csv"
BATCH_MEDIA_TYPES = (JSON, CSV, MULTIPART)
CSV_PART = "file"
FORM_FIELD_COUNT = 8
PREDICTED = {1: "ICU admission predicted", 0: "ICU admission not predicted"}

# --- column names → what people read

STATISTICS = {
    "_DIFF_REL": "relative range",
    "_MEDIAN": "median",
    "_MEAN": "mean",
    "_MIN": "min",
    "_MAX": "max",
    "_DIFF": "range",
}
"""The workbook's per-window statistics (``DIFF`` is max - min; ``DIFF_REL`` relative to the
median), longest suffix first so that ``_DIFF_REL`` is not read as ``_DIFF``."""
VITAL_SIGNS = {
    "BLOODPRESSURE_DIASTOLIC": "Diastolic blood pressure",
    "BLOODPRESSURE_SISTOLIC": "Systolic blood pressure",
    "HEART_RATE": "Heart rate",
    "RESPIRATORY_RATE": "Respiratory rate",
    "TEMPERATURE": "Temperature",
    "OXYGEN_SATURATION": "Oxygen saturation",
}
LABS = {
    "ALBUMIN": "Albumin",
    "BE_ARTERIAL": "Arterial base excess",
    "BE_VENOUS": "Venous base excess",
    "BIC_ARTERIAL": "Arterial bicarbonate",
    "BIC_VENOUS": "Venous bicarbonate",
    "BILLIRUBIN": "Bilirubin",
    "BLAST": "Blasts",
    "CALCIUM": "Calcium",
    "CREATININ": "Creatinine",
    "FFA": "Free fatty acids",
    "GGT": "Gamma-GT",
    "GLUCOSE": "Glucose",
    "HEMATOCRITE": "Hematocrit",
    "HEMOGLOBIN": "Hemoglobin",
    "INR": "INR",
    "LACTATE": "Lactate",
    "LEUKOCYTES": "Leukocytes",
    "LINFOCITOS": "Lymphocytes",
    "NEUTROPHILES": "Neutrophils",
    "P02_ARTERIAL": "Arterial pO2",
    "P02_VENOUS": "Venous pO2",
    "PC02_ARTERIAL": "Arterial pCO2",
    "PC02_VENOUS": "Venous pCO2",
    "PCR": "C-reactive protein",
    "PH_ARTERIAL": "Arterial pH",
    "PH_VENOUS": "Venous pH",
    "PLATELETS": "Platelets",
    "POTASSIUM": "Potassium",
    "SAT02_ARTERIAL": "Arterial O2 saturation",
    "SAT02_VENOUS": "Venous O2 saturation",
    "SODIUM": "Sodium",
    "TGO": "AST (TGO)",
    "TGP": "ALT (TGP)",
    "TTPA": "aPTT (TTPA)",
    "UREA": "Urea",
    "DIMER": "D-dimer",
}
"""The workbook's lab names (Portuguese spellings, abbreviations) as a reader knows them, in
the workbook's order."""
OTHER_COLUMNS = {
    "AGE_ABOVE65": "Age above 65",
    "AGE_PERCENTIL": "Age percentile",
    "HTN": "Hypertension",
    "OTHER": "Other diseases",
}

LAB_STATISTICS = ("_MEDIAN", "_MEAN", "_MIN", "_MAX", "_DIFF")
VITAL_STATISTICS = ("_MEAN", "_MEDIAN", "_MIN", "_MAX", "_DIFF", "_DIFF_REL")
WORKBOOK_FEATURES: tuple[str, ...] = (
    "AGE_ABOVE65",
    AGE_PERCENTILE,
    "GENDER",
    *(f"DISEASE GROUPING {n}" for n in range(1, 7)),
    "HTN",
    "IMMUNOCOMPROMISED",
    "OTHER",
    *(lab + statistic for lab in LABS for statistic in LAB_STATISTICS),
    *(vital + statistic for statistic in VITAL_STATISTICS for vital in VITAL_SIGNS),
)
"""The workbook's 228 features in its order (labs by lab, vitals by statistic): what the
published request schema names; a test keeps it equal to the committed model's features."""

# What a value may be, as text (ECMA 262 and Python read these patterns alike)
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

FALLBACK_FORM_FIELDS = (
    "AGE_PERCENTIL",
    "LINFOCITOS_MEDIAN",
    "HEART_RATE_DIFF_REL",
    "PCR_MEDIAN",
    "UREA_MEDIAN",
    "RESPIRATORY_RATE_MIN",
    "CREATININ_MEDIAN",
    "NEUTROPHILES_MEDIAN",
)
"""The form's fields for a predictor that reports no importances (IntegratedML): what
``form_fields`` gives for the committed local model, version 1 (its gain ranking, one field
per measurement), so the web form looks the same whichever backend answers."""


def measurement(column: str) -> tuple[str, str] | None:
    """``"RESPIRATORY_RATE_MAX"`` → ``("RESPIRATORY_RATE", "max")``; None for other columns."""
    for suffix, statistic in STATISTICS.items():
        base = column.removesuffix(suffix)
        if base != column and (base in LABS or base in VITAL_SIGNS):
            return base, statistic
    return None


def is_lab_or_vital(column: str) -> bool:
    """Measured in the window (a lab or a vital sign), not a demographic or a disease group."""
    return measurement(column) is not None


def column_label(column: str) -> str:
    """A human label: ``"RESPIRATORY_RATE_MAX"`` → ``"Respiratory rate (max)"``."""
    if (found := measurement(column)) is not None:
        base, statistic = found
        return f"{LABS.get(base) or VITAL_SIGNS[base]} ({statistic})"
    if column in OTHER_COLUMNS:
        return OTHER_COLUMNS[column]
    words = column.replace("_", " ").strip().lower()
    return words[:1].upper() + words[1:]


def gain_importance(predictor: IcuPredictor) -> dict[str, float] | None:
    """Total gain per feature of a local tree model; None when the predictor has none."""
    if not isinstance(predictor, LocalPredictor):
        return None
    features = predictor.metadata.features
    booster: Any = predictor.model.booster
    if predictor.model.format == "lightgbm":
        gains = booster.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(features, gains, strict=True)}
    scores = booster.get_score(importance_type="total_gain")  # keys f0, f1, ... or names
    by_index = {f"f{i}": name for i, name in enumerate(features)}
    return {by_index.get(key, key): float(value) for key, value in scores.items()}


def most_informative(predictor: IcuPredictor, count: int = FORM_FIELD_COUNT) -> list[str]:
    """The ``count`` most informative features, one per measurement, most informative first.

    By gain importance when the model has it (a form needs one C-reactive protein field, not
    its median, min and mean), else :data:`FALLBACK_FORM_FIELDS`.
    """
    features = predictor.metadata.features
    gains = gain_importance(predictor)
    if gains is None:
        ranked = [f for f in FALLBACK_FORM_FIELDS if f in features]
    else:
        ranked = sorted((f for f in features if gains.get(f, 0.0) > 0.0), key=lambda f: -gains[f])
    chosen: list[str] = []
    seen: set[str] = set()
    for column in ranked:
        kind = (measurement(column) or (column, ""))[0]
        if kind not in seen:
            seen.add(kind)
            chosen.append(column)
    return chosen[:count]


# --- request bodies


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


class IcuService:
    """Parses ICU requests, asks the predictor, and shapes the answers (see the module doc)."""

    def __init__(self, predictor: IcuPredictor, *, max_batch_rows: int = 10_000, top: int = 5):
        self.predictor = predictor
        self.max_batch_rows = max_batch_rows
        self.top = top
        self.form_fields = [
            {"name": name, "label": column_label(name)} for name in most_informative(predictor)
        ]
        # An IntegratedML predictor holds one DB-API connection: one call at a time.
        local = predictor.metadata.backend == "local"
        self._one_at_a_time: AbstractContextManager = nullcontext() if local else threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> IcuService:
        """The service of ``settings.icu_backend``: the local model version folder, or the
        latest IntegratedML model in the IRIS that ``settings.iris_dsn`` names."""
        if settings.icu_backend == "integratedml":
            from aistack.icu.integratedml import IntegratedMLPredictor, connect  # noqa: PLC0415

            if not settings.iris_dsn:
                raise ValueError("icu_backend is integratedml but AISTACK_IRIS_DSN is not set")
            predictor: IcuPredictor = IntegratedMLPredictor.open(connect(settings.iris_dsn))
        else:
            predictor = load_local(settings.icu_model_dir, settings.icu_model_version)
        return cls(predictor, max_batch_rows=settings.icu_max_batch_rows)

    # --- the three answers

    def model_json(self) -> dict[str, Any]:
        meta = self.predictor.metadata
        return {
            "backend": meta.backend,
            "version": meta.version,
            "training_data_hash": meta.training_data_hash,
            "threshold": meta.threshold,
            "metrics": dict(meta.metrics),
            "evaluation": meta.evaluation,
            "explanation_method": meta.explanation_method,
            "contribution_unit": meta.contribution_unit,
            "features": list(meta.features),
            "form_fields": [dict(field) for field in self.form_fields],
        }

    def predict_json(self, body: bytes, content_type: str | None) -> dict[str, Any]:
        kind = media_type(content_type or "")
        if kind != JSON:
            raise wrong_media_type(kind, body, "application/json (one object)")
        row = parse_json(body)
        if not isinstance(row, dict):
            raise InvalidRequest(
                "the body must be ONE JSON object keyed by the workbook's column names; "
                "send a list to /icu/api/v1/predict/batch"
            )
        rows = self._checked([row])
        subject = subject_identifier(row)
        answer = self._predict(rows)[0]
        values = row_values(row, self.predictor.metadata.features)
        measured = {
            f: v
            for f, v in zip(self.predictor.metadata.features, values, strict=True)
            if v is not None and is_lab_or_vital(f)
        }
        meta = self.predictor.metadata
        resource = risk_assessment_json(
            answer, meta, measured, subject_id=subject, label_of=column_label
        )
        return {
            **self._answer(answer),
            "threshold": answer.threshold,
            "model": self._model_ref(),
            "contribution_unit": meta.contribution_unit,
            "top_features": _contributions(answer),
            "fhir": resource,
        }

    def batch_json(self, body: bytes, content_type: str | None) -> dict[str, Any]:
        rows = self._checked(self._batch_rows(body, content_type or ""))
        answers = self._predict(rows)
        return {
            "model": {**self._model_ref(), "threshold": self.predictor.metadata.threshold},
            "count": len(answers),
            "contribution_unit": self.predictor.metadata.contribution_unit,
            "predictions": [
                {"row": i + 1, **self._answer(a), "top_features": _contributions(a)}
                for i, a in enumerate(answers)
            ],
        }

    # --- helpers

    def _batch_rows(self, body: bytes, content_type: str) -> list[dict[str, Any]]:
        kind = media_type(content_type)
        if kind == JSON:
            rows = parse_json(body)
            if not isinstance(rows, list):
                raise InvalidRequest(
                    "the body must be a JSON LIST of objects keyed by the workbook's column "
                    "names; send one object to /icu/api/v1/predict"
                )
            if len(rows) > self.max_batch_rows:
                raise too_many_rows(self.max_batch_rows, str(len(rows)))
            not_objects = [i + 1 for i, row in enumerate(rows) if not isinstance(row, dict)]
            if not_objects:
                raise InvalidRequest(f"row {not_objects[0]} of the list is not a JSON object")
            return rows
        if kind == CSV:
            return parse_csv(body, self.max_batch_rows)
        if kind == MULTIPART:
            fields, files = parse_multipart(body, content_type)
            unexpected = sorted((set(fields) | set(files)) - {CSV_PART})
            if CSV_PART not in files:
                got = (
                    f" (got {', '.join(repr(u[:40]) for u in unexpected[:5])})"
                    if unexpected
                    else ""
                )
                raise MissingInput(f"missing CSV: send it as the file part 'file'{got}")
            if unexpected:
                raise BadRequest(f"unexpected form field {unexpected[0][:40]!r}; expected file")
            return parse_csv(files[CSV_PART], self.max_batch_rows)
        raise wrong_media_type(kind, body, "application/json (a list), text/csv or a form")

    def _checked(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Values as the schema says, and no empty object; unknown columns are left to
        ``rows.py``, which names them."""
        if not rows:
            raise InvalidRequest("no rows: send at least one")
        empty = [i + 1 for i, row in enumerate(rows) if not row]
        if empty:
            where = ", ".join(map(str, empty[:MAX_NAMES_IN_MESSAGE]))
            more = f" and {len(empty) - MAX_NAMES_IN_MESSAGE} more" if len(empty) > 5 else ""
            raise InvalidRequest(
                f"{'rows' if len(empty) > 1 else 'row'} {where}{more} "
                f"{'are empty objects' if len(empty) > 1 else 'is an empty object'}: send the "
                "patient's values by column name (GET /icu/api/v1/model lists them); a "
                "missing value may be left out or sent as null"
            )
        check_values(rows, self.predictor.metadata.features)
        return rows

    def _predict(self, rows: Sequence[Row]) -> list[IcuPrediction]:
        with self._one_at_a_time:
            try:
                return predict(self.predictor, rows, self.top)
            except AistackError:
                raise
            except Exception as error:
                if self.predictor.metadata.backend == "local":
                    raise  # a bug here, not a backend's failure: the server logs it
                raise BackendFailed(f"the IntegratedML backend failed: {error}") from error

    def _model_ref(self) -> dict[str, str]:
        meta = self.predictor.metadata
        return {
            "backend": meta.backend,
            "version": meta.version,
            "training_data_hash": meta.training_data_hash,
        }

    @staticmethod
    def _answer(answer: IcuPrediction) -> dict[str, Any]:
        return {
            "probability": answer.probability,
            "label": answer.label,
            "prediction": PREDICTED[answer.label],
        }


def _contributions(answer: IcuPrediction) -> list[dict[str, Any]]:
    return [
        {
            "feature": c.feature,
            "label": column_label(c.feature),
            "value": None if c.value is None or math.isnan(c.value) else c.value,
            "contribution": c.contribution,
        }
        for c in answer.top_features
    ]
