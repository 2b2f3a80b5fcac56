"""A sample stored prediction for the FHIR store's tests: one builder, one set of values."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from aistack.store import PredictionRecord


def prediction_record(n: int = 0, patient: str = "P-1", image: int | None = None):
    """Prediction ``n`` (made ``n`` minutes after a fixed time) of image ``image`` (default its
    own: predictions of one image share its Media), for ``patient``."""
    return PredictionRecord.create(
        created_at=datetime(2024, 5, 1, 12, tzinfo=UTC) + timedelta(minutes=n),
        model_name="covid19",
        model_version=1,
        input_sha256=hashlib.sha256(f"image {n if image is None else image}".encode()).hexdigest(),
        probabilities={"covid": 0.7, "normal": 0.2, "pneumonia_bac": 0.1},
        label="covid",
        covid_positive=True,
        threshold=0.65,
        latency_ms=10.0,
        endpoint="v2",
        image_file=f"{n}.png",
        overlay_file=f"{n}.jpg",
        patient_id=patient,
    )
