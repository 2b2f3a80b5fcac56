"""The CapabilityStatement of the resource store's FHIR facade: exactly what it supports.

Built from the search module's parameter table, so that what it lists is what the store
searches. R4 elements only (it validates as an R4B model too); behaviour R4 has no element for
(strict search, paging, JSON only, the key) is said in ``rest.documentation``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aistack.fhir.context import instant
from aistack.fhir.search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    PARAMETERS,
    SUPPORTED_TYPES,
)

FHIR_VERSION = "4.0.1"
FORMATS = ["json", "application/fhir+json"]

REST_DOCUMENTATION = (
    "The FHIR resources of aistack's AI results (chest X-ray classification, ICU-admission "
    "risk): read, search and transactions of conditional creates. Search is strict: an "
    "unknown or unsupported parameter, modifier or prefix is refused with 400 and an "
    "OperationOutcome, never ignored. Date prefixes: eq (default), gt, ge, lt, le; partial "
    "dates stand for their whole range; a time without zone is UTC. Paging: _count (default "
    f"{DEFAULT_COUNT}, larger values give {MAX_COUNT}) and _offset; results come in the order "
    "they were stored, oldest first, so an offset keeps its entries while new ones arrive. "
    "Resources are immutable once stored (no update, delete or history). Transactions (POST "
    "to the base) take POST entries only, of the types marked conditionalCreate, each with a "
    "fullUrl and optionally ifNoneExist: all or nothing, references between entries rewritten "
    "to the stored ids, a repeated transaction creates nothing new. JSON only "
    "(application/fhir+json or application/json)."
)
SECURITY_DESCRIPTION = (
    "An aistack API key, as 'Authorization: Bearer <key>' or 'X-API-Key: <key>': reads and "
    "searches need the read or admin role, transactions the admin role. This statement is "
    "open. With AISTACK_AUTH=off every route is open."
)
TYPE_DOCUMENTATION = (
    "Created only by transactions (POST [base] with a transaction Bundle), or by the service "
    "itself for each prediction it stores."
)
TYPE_DOCUMENTATION_BY_TYPE = {
    "RiskAssessment": "Created by the service for each single ICU-admission prediction (POST "
    "/icu/api/v1/predict; batch rows are not stored), as the prediction's answer carries it, "
    "or by a transaction. Its model Device and the values it was given are contained "
    "resources: part of it, not searchable on their own.",
}
"""Where a type's resources come from, when more than :data:`TYPE_DOCUMENTATION` says."""


def capability_statement(
    base_url: str, software_version: str, published: datetime
) -> dict[str, Any]:
    """The statement for the facade at ``base_url`` (absolute); ``published``: its date."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(published),
        "publisher": "aistack",
        "kind": "instance",
        "software": {"name": "aistack", "version": software_version},
        "implementation": {
            "description": "aistack FHIR facade (the standalone service's resource store)",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": FORMATS,
        "rest": [
            {
                "mode": "server",
                "documentation": REST_DOCUMENTATION,
                "security": {"cors": False, "description": SECURITY_DESCRIPTION},
                "resource": [_resource(resource_type) for resource_type in SUPPORTED_TYPES],
                "interaction": [{"code": "transaction"}],
            }
        ],
    }


def _resource(resource_type: str) -> dict[str, Any]:
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "documentation": TYPE_DOCUMENTATION_BY_TYPE.get(resource_type, TYPE_DOCUMENTATION),
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "versioned",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": [
            {
                "name": parameter.name,
                "definition": parameter.definition,
                "type": "token" if parameter.kind == "id" else str(parameter.kind),
                "documentation": parameter.documentation,
            }
            for parameter in PARAMETERS[resource_type].values()
            if ":" not in parameter.name  # a modifier is documented with its parameter
        ],
    }
