"""The ICU service both runtimes call: request bodies in, the answers' JSON out.

The standalone routes (``aistack.api.icu``) and the IRIS REST twin hand over the raw body and
its Content-Type and send back the dict with status 200, so both answer the same JSON, errors
included: every bad input raises an ``aistack.errors`` type (400, 413, 415, 422), never a bare
exception. Bodies:

- ``predict_json``: ``application/json``, ONE object keyed by the workbook's column names;
- ``batch_json``: ``application/json`` (a list of such objects), ``text/csv`` (a header row of
  column names, an empty cell is a missing value), or ``multipart/form-data`` with the CSV as
  the file part ``file``; at most ``max_batch_rows`` rows (413 beyond).

Values are numbers, numeric text or null, exactly as ``bodies.row_schema`` (the OpenAPI
request schema) says and ``bodies.check_values`` enforces: JSON's ``true``/``false`` are
refused (422), the workbook's 0/1 columns are numbers. Missing values are allowed, all of a
row's included: the answer is then the model's estimate for a patient of whom nothing is
known. Only an empty JSON object is refused (422): it sent nothing at all.

Each runtime keeps a single prediction's RiskAssessment in its FHIR server through the
``record_risk`` hook it passes (the standalone facade's store, IRIS's FHIR publisher). The
hook runs before the answer is returned; its failure is logged, never the answer's: the
prediction was made and is answered. Batch rows carry no FHIR and are not recorded.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from aistack.errors import AistackError, BackendFailed, BadRequest, InvalidRequest, MissingInput
from aistack.fhir.risk import risk_assessment_json
from aistack.icu.bodies import (
    CSV,
    CSV_PART,
    check_values,
    parse_csv,
    parse_json,
    subject_identifier,
    too_many_rows,
    wrong_media_type,
)
from aistack.icu.columns import column_label, is_lab_or_vital, most_informative
from aistack.icu.local import load_local
from aistack.icu.predictor import IcuPrediction, IcuPredictor, Row, predict
from aistack.icu.rows import MAX_NAMES_IN_MESSAGE, row_values
from aistack.logs import log_event
from aistack.metrics import ICU_PREDICTIONS, ICU_SCORING_DURATION
from aistack.xray.request_body import JSON, MULTIPART, media_type, parse_multipart

if TYPE_CHECKING:
    from aistack.config import Settings

PREDICTED = {1: "ICU admission predicted", 0: "ICU admission not predicted"}
RecordRisk = Callable[[dict[str, Any]], None]
"""Keeps a single prediction's RiskAssessment (FHIR JSON) in the runtime's FHIR server."""


class IcuService:
    """Parses ICU requests, asks the predictor, and shapes the answers (see the module doc)."""

    def __init__(
        self,
        predictor: IcuPredictor,
        *,
        max_batch_rows: int = 10_000,
        top: int = 5,
        record_risk: RecordRisk | None = None,
    ):
        self.predictor = predictor
        self.max_batch_rows = max_batch_rows
        self.top = top
        self.record_risk = record_risk
        self.form_fields = [
            {"name": name, "label": column_label(name)} for name in most_informative(predictor)
        ]
        # An IntegratedML predictor holds one DB-API connection: one call at a time.
        local = predictor.metadata.backend == "local"
        self._one_at_a_time: AbstractContextManager = nullcontext() if local else threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, record_risk: RecordRisk | None = None
    ) -> IcuService:
        """The service of ``settings.icu_backend``: the local model version folder, or the
        latest IntegratedML model in the IRIS that ``settings.iris_dsn`` names."""
        if settings.icu_backend == "integratedml":
            from aistack.icu.integratedml import IntegratedMLPredictor, connect  # noqa: PLC0415

            if not settings.iris_dsn:
                raise ValueError("icu_backend is integratedml but AISTACK_IRIS_DSN is not set")
            predictor: IcuPredictor = IntegratedMLPredictor.open(connect(settings.iris_dsn))
        else:
            predictor = load_local(settings.icu_model_dir, settings.icu_model_version)
        return cls(predictor, max_batch_rows=settings.icu_max_batch_rows, record_risk=record_risk)

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

    def predict_json(
        self, body: bytes, content_type: str | None, client: str | None = None
    ) -> dict[str, Any]:
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
        answer = self._predict(rows, "predict", client)[0]
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
        self._record(resource)
        return {
            **self._answer(answer),
            "threshold": answer.threshold,
            "model": self._model_ref(),
            "contribution_unit": meta.contribution_unit,
            "top_features": _contributions(answer),
            "fhir": resource,
        }

    def batch_json(
        self, body: bytes, content_type: str | None, client: str | None = None
    ) -> dict[str, Any]:
        rows = self._checked(self._batch_rows(body, content_type or ""))
        answers = self._predict(rows, "batch", client)
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

    def _record(self, resource: dict[str, Any]) -> None:
        """Hand the RiskAssessment to the runtime's hook; a failure there is logged by its
        type only (a message may quote the resource, and so patient values)."""
        if self.record_risk is None:
            return
        try:
            self.record_risk(resource)
        except Exception as error:  # noqa: BLE001 - the prediction stands and is answered
            log_event(
                "icu_risk_not_recorded",
                logging.WARNING,
                risk_id=resource["id"],
                error=type(error).__name__,
            )

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

    def _predict(self, rows: Sequence[Row], route: str, client: str | None) -> list[IcuPrediction]:
        """Score and explain; each request is counted, timed and logged (never its values)."""
        meta = self.predictor.metadata
        started = time.perf_counter()
        with self._one_at_a_time:
            try:
                answers = predict(self.predictor, rows, self.top)
            except AistackError:
                raise
            except Exception as error:
                if meta.backend == "local":
                    raise  # a bug here, not a backend's failure: the server logs it
                raise BackendFailed(f"the IntegratedML backend failed: {error}") from error
        elapsed = time.perf_counter() - started
        ICU_SCORING_DURATION.labels(meta.backend, route).observe(elapsed)
        admitted = sum(a.label for a in answers)
        ICU_PREDICTIONS.labels(meta.backend, "1").inc(admitted)
        ICU_PREDICTIONS.labels(meta.backend, "0").inc(len(answers) - admitted)
        log_event(
            "icu_prediction",
            route=route,
            client=client,
            backend=meta.backend,
            model_version=meta.version,
            rows=len(answers),
            admission_predicted=admitted,
            latency_ms=round(elapsed * 1000, 2),
        )
        return answers

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
