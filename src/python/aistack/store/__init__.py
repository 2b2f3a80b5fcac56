"""Prediction persistence: SQLite by default, InterSystems IRIS via sqlalchemy-iris."""

from aistack.store.repository import PredictionRecord, PredictionStore

__all__ = ["PredictionRecord", "PredictionStore"]
