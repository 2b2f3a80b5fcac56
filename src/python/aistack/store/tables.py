"""ORM tables (predictions, API keys, jobs) in types that behave alike on SQLite and IRIS."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Dialect, Float, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes stored as naive UTC.

    Neither SQLite nor IRIS has a ``TIMESTAMP WITH TIME ZONE``; sqlalchemy-iris formats
    timestamps without an offset. So we normalise to UTC on the way in (refusing naive
    values, whose zone is unknowable) and re-attach UTC on the way out.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class JSONText(TypeDecorator[dict[str, Any]]):
    """JSON serialised into a bounded ``VARCHAR``.

    IRIS has no native JSON column and sqlalchemy-iris' ``JSON`` support depends on the
    version; ``Text`` would become an IRIS ``LONGVARCHAR`` stream. Three probabilities fit
    comfortably in 1024 characters, so a plain ``VARCHAR`` with ``json.dumps`` is the
    portable choice.
    """

    impl = String(1024)
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def process_result_value(self, value: str | None, dialect: Dialect) -> dict[str, Any] | None:
        return None if value is None else json.loads(value)


class Base(DeclarativeBase):
    pass


class PredictionRow(Base):
    """One served prediction; file columns name files the service wrote, never client names."""

    __tablename__ = "predictions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[int] = mapped_column(Integer)
    input_sha256: Mapped[str] = mapped_column(String(64), index=True)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSONText())
    label: Mapped[str] = mapped_column(String(32))
    covid_positive: Mapped[bool] = mapped_column(Boolean)
    threshold: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    endpoint: Mapped[str] = mapped_column(String(32))
    image_file: Mapped[str | None] = mapped_column(String(255), nullable=True)
    heatmap_file: Mapped[str | None] = mapped_column(String(255), nullable=True)
    overlay_file: Mapped[str | None] = mapped_column(String(255), nullable=True)
    client: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    """Name of the API key that asked for it (None when auth is off or v1 is open)."""
    backend: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # A DICOM input's identifiers, at most 64 characters as DICOM allows; NULL otherwise.
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    series_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    accession_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Its resources in the FHIR store (aistack.fhir.resource_store); NULL when not stored there.
    fhir_observation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fhir_report_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ApiKeyRow(Base):
    """An API key: only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    key_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class JobRow(Base):
    """An asynchronous prediction: its state, then the prediction it made or why it failed."""

    __tablename__ = "prediction_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), index=True)
    client: Mapped[str | None] = mapped_column(String(64), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The model version the request named; None: the default when the job runs."""
    heatmap: Mapped[bool] = mapped_column(Boolean)
    prediction_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(1024), nullable=True)
