"""FHIR transactions on the resource store: all or nothing, conditional creates, references
between entries resolved to the stored ids.

A publisher retries: the same transaction Bundle may arrive twice, or twice at once. Each entry
is a conditional create (``ifNoneExist``); the whole transaction runs in one database
transaction, alone among the store's writers, so the second arrival finds what the first made
and creates nothing (``200 OK`` with the existing resource's location, instead of ``201``).

The standalone service's prediction hook (:class:`PredictionRecorder`) stores each new
prediction's resources through the same code, keeping the builders' stable ids.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from aistack.errors import BadRequest, InvalidRequest
from aistack.fhir.bundle import conditional_query, rewrite_references
from aistack.fhir.checks import bundle_problems
from aistack.fhir.context import instant
from aistack.fhir.device import ModelDescription
from aistack.fhir.media import MediaLinks
from aistack.fhir.resource_store import FHIR_BASE_PATH, ResourceStore, StoredResource
from aistack.fhir.resources import build_prediction_resources
from aistack.fhir.search import SUPPORTED_TYPES, SearchQuery, parse_search
from aistack.store import PredictionRecord
from aistack.xray.files import RESULT, SOURCE
from aistack.xray.links import FileLinks

log = logging.getLogger(__name__)

MAX_PROBLEMS_SHOWN = 8


class PreconditionFailed(Exception):
    """A conditional create's query matched several resources: the client must be more
    specific (FHIR's 412 Precondition Failed)."""

    status = 412
    issue = "multiple-matches"


@dataclass(frozen=True)
class Entry:
    """One create of a transaction."""

    resource: dict[str, Any]
    full_url: str | None
    condition: SearchQuery | None
    """``ifNoneExist``: create only when nothing matches; else resolve to the match."""
    keep_id: bool = False
    """Keep the resource's own id (the prediction hook); FHIR's create assigns a new one."""


@dataclass(frozen=True)
class EntryResult:
    created: bool
    stored: StoredResource


# --- HTTP: a transaction Bundle in, a transaction-response Bundle out -----------------------


def parse_transaction(body: Any, base_url: str = "") -> list[Entry]:
    """The creates of a transaction Bundle (FHIR JSON, parsed); 400 when it is not one,
    422 when an entry asks for what the store does not do or a resource is not valid R4."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise BadRequest("the body must be a FHIR Bundle (resourceType Bundle)")
    if body.get("type") != "transaction":
        raise BadRequest(f"only transaction Bundles are taken, not {str(body.get('type'))[:30]!r}")
    raw_entries = body.get("entry", [])
    if not isinstance(raw_entries, list) or not all(isinstance(e, dict) for e in raw_entries):
        raise BadRequest("Bundle.entry must be a list of objects")
    entries = [_entry(index, entry, base_url) for index, entry in enumerate(raw_entries)]
    if problems := bundle_problems(body):
        raise InvalidRequest(_listed("the Bundle is not valid", problems))
    try:
        Bundle.model_validate(body)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()
        ]
        raise InvalidRequest(_listed("the Bundle is not valid FHIR", problems)) from None
    return entries


def _entry(index: int, entry: dict[str, Any], base_url: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    request = entry.get("request")
    resource = entry.get("resource")
    if not isinstance(request, dict) or not isinstance(resource, dict):
        raise BadRequest(f"{where} needs a request and a resource")
    if request.get("method") != "POST":
        raise InvalidRequest(
            f"{where}: only POST (create, conditional create) is supported in a transaction, "
            f"not {str(request.get('method'))[:10]!r}"
        )
    resource_type = resource.get("resourceType")
    if resource_type not in SUPPORTED_TYPES:
        raise InvalidRequest(
            f"{where}: resource type {str(resource_type)[:40]!r} is not stored here "
            f"(supported: {', '.join(SUPPORTED_TYPES)})"
        )
    if request.get("url") != resource_type:
        raise InvalidRequest(f"{where}: request.url must be {resource_type!r} for a create")
    condition = None
    if "ifNoneExist" in request:
        if not isinstance(request["ifNoneExist"], str):
            raise BadRequest(f"{where}: request.ifNoneExist must be a search query string")
        condition = conditional(resource_type, request["ifNoneExist"], base_url)
    full_url = entry.get("fullUrl")
    return Entry(resource, full_url if isinstance(full_url, str) else None, condition)


def conditional(resource_type: str, query: str, base_url: str = "") -> SearchQuery:
    """An ``ifNoneExist`` query (``identifier=system|value``...) as a search; it must name
    at least one criterion (an empty one would match everything)."""
    pairs = parse_qsl(query.removeprefix("?"), keep_blank_values=True)
    parsed = parse_search(resource_type, pairs, base_url, paging=False)
    if not parsed.criteria:
        raise BadRequest(f"ifNoneExist {query[:60]!r} names no search criterion")
    return parsed


def _listed(summary: str, problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
    more = len(problems) - MAX_PROBLEMS_SHOWN
    return f"{summary}: {shown}" + (f" (and {more} more)" if more > 0 else "")


def transaction_response(results: list[EntryResult], base_url: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {
                "response": {
                    "status": "201 Created" if result.created else "200 OK",
                    "location": location(base_url, result.stored),
                    "etag": etag(result.stored),
                    "lastModified": instant(result.stored.last_updated),
                }
            }
            for result in results
        ],
    }


def location(base_url: str, stored: StoredResource) -> str:
    return f"{base_url}/{stored.reference}/_history/{stored.version_id}"


def etag(stored: StoredResource) -> str:
    return f'W/"{stored.version_id}"'


# --- Running a transaction ------------------------------------------------------------------


def run_transaction(
    store: ResourceStore, entries: list[Entry], now: datetime | None = None
) -> list[EntryResult]:
    """Resolve the conditional creates, create the rest: one database transaction.

    Conditions are tested against the store as it was before the transaction (FHIR's rule).
    References to an entry's ``fullUrl`` become ``Type/id`` of what it resolved to.
    """
    now = now or datetime.now(UTC)
    results: list[EntryResult | None] = [None] * len(entries)
    with store.writing() as writer:
        for index, entry in enumerate(entries):
            if entry.condition is None:
                continue
            found = writer.matches(entry.condition)
            if len(found) > 1:
                raise PreconditionFailed(
                    f"Bundle.entry[{index}]: ifNoneExist matches several "
                    f"{entry.condition.resource_type} resources"
                )
            if found:
                results[index] = EntryResult(False, found[0])
        ids = {
            index: entry.resource["id"] if entry.keep_id else str(uuid.uuid4())
            for index, entry in enumerate(entries)
            if results[index] is None
        }
        located: dict[str, str] = {}
        for index, entry in enumerate(entries):
            if entry.full_url is None:
                continue
            done = results[index]
            resource_type = entry.resource["resourceType"]
            target = done.stored.reference if done else f"{resource_type}/{ids[index]}"
            if target != entry.full_url:  # the prediction hook's entries mostly stay as named
                located[entry.full_url] = target
        created = writer.create_all(
            [
                _with_references({**entries[index].resource, "id": new_id}, located)
                for index, new_id in ids.items()
            ],
            now,
        )
        for index, stored in zip(ids, created, strict=True):
            results[index] = EntryResult(True, stored)
    return [result for result in results if result is not None]


def _with_references(resource: dict[str, Any], located: dict[str, str]) -> dict[str, Any]:
    """``resource`` pointing at what its entries resolved to; as it is when nothing moved
    (the store copies what it changes, so sharing the unchanged elements is safe)."""
    return rewrite_references(resource, located) if located else resource


# --- The standalone service's prediction hook -----------------------------------------------


class PredictionRecorder:
    """Stores each new prediction's FHIR resources, and returns its record naming them.

    Runs where the service stores a prediction, after the model has run: it never fails a
    prediction (a failure is logged, and the record names no resources). Resources keep the
    builders' ids (``obs-<prediction id>``...); the shared Device, and a source image seen
    before, resolve to the stored ones by their identifiers, as a publish would. Resources
    named after the prediction are created without that search: the prediction is new, and
    a second attempt would fail on the taken id, not duplicate it.
    """

    def __init__(self, store: ResourceStore, links: FileLinks, model_dir: Path) -> None:
        self.store = store
        self.links = links
        self.model_dir = model_dir
        self._models: dict[tuple[int, str], ModelDescription] = {}
        """Each served version's description, its artifact digested: what a prediction's
        Device names. Digested when the version is loaded (:meth:`warm`), so it describes
        the artifact that serves it, and a prediction costs no stat of the artifact's files."""

    def warm(self, version: int) -> None:
        """Digest the model's artifact now (its Device's identifier), not on a prediction;
        a version loaded again is digested again."""
        for key in list(self._models):  # a copy: predictions may add to it meanwhile
            if key[0] == version:
                self._models.pop(key, None)
        try:
            self.model(version)
        except OSError as error:
            log.warning("model version %d: no artifact to digest for FHIR (%s)", version, error)

    def model(self, version: int, name: str | None = None) -> ModelDescription:
        """The description of ``version`` (named ``name``, by default the folder's), its
        artifact digested; OSError when it has no artifact (then nothing is kept)."""
        key = (version, name or self.model_dir.name)
        model = self._models.get(key)
        if model is None:
            model = ModelDescription.from_model_dir(self.model_dir, version, name)
            model.artifact_sha256  # noqa: B018 - digest now: a described model is a digested one
            self._models[key] = model  # threads racing here store equal values
        return model

    def __call__(self, record: PredictionRecord) -> PredictionRecord:
        try:
            results = run_transaction(self.store, self.entries(record))
        except Exception:
            log.exception("the FHIR resources of prediction %s were not stored", record.id)
            return record
        stored = {result.stored.resource_type: result.stored.id for result in results}
        return replace(
            record,
            fhir_observation_id=stored["Observation"],
            fhir_report_id=stored["DiagnosticReport"],
        )

    def entries(self, record: PredictionRecord) -> list[Entry]:
        model = self.model(record.model_version, record.model_name)
        resources = build_prediction_resources(
            record, model, self.media_links(record), validate_transaction=False
        )
        device, source = resources.device_json, resources.source_media_json
        conditions = {  # by identity: the shared resources, not equal ones
            id(device): _shared_condition(device["resourceType"], conditional_query(device)),
            id(source): conditional(source["resourceType"], conditional_query(source)),
        }
        return [
            Entry(
                resource,
                f"{resource['resourceType']}/{resource['id']}",
                conditions.get(id(resource)),
                keep_id=True,
            )
            for resource in resources.all_json()
        ]

    def media_links(self, record: PredictionRecord) -> MediaLinks:
        """Unsigned URLs: signed ones expire, stored resources do not (a key reads them)."""
        return MediaLinks(
            image_url=self._file_url(SOURCE, record.image_file),
            overlay_url=self._file_url(RESULT, record.overlay_file),
        )

    def _file_url(self, kind: str, name: str | None) -> str | None:
        return None if name is None else self.links.url(f"/static/{kind}/{quote(name)}")


_shared_condition = lru_cache(maxsize=32)(conditional)
""":func:`conditional` of a query every prediction of a model version repeats (its Device's
identifier): parsed once. Keyed by the query itself, so a new version is a new entry."""


def fhir_url(links: FileLinks, resource_type: str, resource_id: str) -> str:
    """The absolute URL of a stored resource on the standalone service."""
    return links.url(f"{FHIR_BASE_PATH}/{resource_type}/{resource_id}")
