"""FHIR R4 resources for AI results: builders, code systems and the checks they pass."""

from aistack.fhir.checks import FhirCheckError
from aistack.fhir.device import ModelDescription
from aistack.fhir.media import MediaLinks
from aistack.fhir.resources import PredictionResources, as_json, build_prediction_resources

__all__ = [
    "FhirCheckError",
    "MediaLinks",
    "ModelDescription",
    "PredictionResources",
    "as_json",
    "build_prediction_resources",
]
