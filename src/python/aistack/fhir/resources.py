"""One entry point: a stored prediction in, its checked and validated FHIR R4 resources out.

Both runtimes and the FHIR facade call :func:`build_prediction_resources`. Resources have
stable ids (``obs-<prediction id>``...) and refer to each other as ``Type/id``, so a store can
serve them by id; :attr:`PredictionResources.bundle` holds them as a transaction for a FHIR
server.

Validation happens once, when building: the builders' JSON passes the project's checks
(:mod:`aistack.fhir.checks`), then fhir.resources validates the whole transaction Bundle, which
validates every resource in it. Serialising a validated model back to JSON costs more than
building and validating it (benchmarks/fhir_build.py), so the checked JSON is kept and handed
out as is; the R4B model of a single resource is validated again only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.media import Media
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.resource import Resource

from aistack.fhir.bundle import transaction_json
from aistack.fhir.checks import check_bundle, check_resource
from aistack.fhir.context import PredictionContext, PredictionLike
from aistack.fhir.device import ModelDescription, device_json
from aistack.fhir.media import MediaLinks, heatmap_media_json, source_media_json
from aistack.fhir.observation import observation_json
from aistack.fhir.provenance import provenance_json
from aistack.fhir.report import report_json

Json = dict[str, Any]


@dataclass(frozen=True)
class PredictionResources:
    """The resources of one prediction, as checked FHIR JSON (read-only by convention)."""

    device_json: Json
    source_media_json: Json
    observation_json: Json
    report_json: Json
    provenance_json: Json
    heatmap_media_json: Json | None

    def all_json(self) -> list[Json]:
        """Every resource, those referred to before those referring (the Bundle's order)."""
        heatmap = [self.heatmap_media_json] if self.heatmap_media_json is not None else []
        return [
            self.device_json,
            self.source_media_json,
            *heatmap,
            self.observation_json,
            self.report_json,
            self.provenance_json,
        ]

    @cached_property
    def bundle_json(self) -> Json:
        """The transaction of conditional creates, as JSON (what :attr:`bundle` validates)."""
        return transaction_json(self.all_json())

    @cached_property
    def bundle(self) -> Bundle:
        """The transaction, validated by fhir.resources as a whole (every resource in it)."""
        return Bundle.model_validate(self.bundle_json)

    @cached_property
    def device(self) -> Device:
        return Device.model_validate(self.device_json)

    @cached_property
    def source_media(self) -> Media:
        return Media.model_validate(self.source_media_json)

    @cached_property
    def observation(self) -> Observation:
        return Observation.model_validate(self.observation_json)

    @cached_property
    def report(self) -> DiagnosticReport:
        return DiagnosticReport.model_validate(self.report_json)

    @cached_property
    def provenance(self) -> Provenance:
        return Provenance.model_validate(self.provenance_json)

    @cached_property
    def heatmap_media(self) -> Media | None:
        data = self.heatmap_media_json
        return None if data is None else Media.model_validate(data)


def build_prediction_resources(
    record: PredictionLike,
    model: ModelDescription,
    links: MediaLinks | None = None,
    *,
    patient_system: str | None = None,
    validate_transaction: bool = True,
) -> PredictionResources:
    """The FHIR resources of one prediction; ValueError (FhirCheckError, pydantic's
    ValidationError) when something would not be valid FHIR R4.

    ``links`` says where the images are; ``patient_system`` is the issuer of the site's DICOM
    Patient IDs, when known. ``validate_transaction=False`` runs only the project's R4 checks
    on each resource, not the transaction Bundle's checks and fhir.resources (two thirds of
    the cost): for the standalone prediction hook, which stores the resources in this
    service's own store, never as a Bundle; the tests have fhir.resources validate what the
    builders make for every kind of input.
    """
    ctx = PredictionContext.of(record, patient_system)
    links = links or MediaLinks()
    heatmap = heatmap_media_json(ctx, model, links)
    with_heatmap = heatmap is not None
    resources = PredictionResources(
        device_json=device_json(model),
        source_media_json=source_media_json(ctx, links),
        observation_json=observation_json(ctx, model),
        report_json=report_json(ctx, model, with_heatmap),
        provenance_json=provenance_json(ctx, model, with_heatmap),
        heatmap_media_json=heatmap,
    )
    for data in resources.all_json():
        check_resource(data)
    if validate_transaction:
        check_bundle(resources.bundle_json)
        resources.bundle  # noqa: B018 - validate now: bad content fails here, not when published
    return resources


def as_json(resource: Resource) -> Json:
    """FHIR JSON of an R4B model (aliases, no empty elements), ready for ``json.dumps``."""
    return resource.model_dump(mode="json")
