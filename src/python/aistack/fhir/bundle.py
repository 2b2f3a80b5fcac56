"""A transaction Bundle that can be published again and again without duplicates.

Inside the Bundle, resources point at each other by ``urn:uuid`` full URLs (derived from type
and id, so a retry sends the same Bundle). Each entry is a conditional create: the server makes
the resource only when no resource matches ``ifNoneExist`` (the prediction's identifier, the
model artifact's digest, the input image's digest), and otherwise resolves the entry, and the
references to it, to the resource it already has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aistack.fhir.codes import PREDICTION_SYSTEM
from aistack.fhir.context import full_url

TRANSACTION = "transaction"


def conditional_query(resource: dict[str, Any]) -> str:
    """The ``ifNoneExist`` search that finds this resource if an earlier publish made it.

    Provenance has no identifier in R4: its prediction tag is searched instead.
    """
    if resource["resourceType"] == "Provenance":
        tag = next(t for t in resource["meta"]["tag"] if t["system"] == PREDICTION_SYSTEM)
        return f"_tag={_token(tag['system'], tag['code'])}"
    identifier = resource["identifier"][0]
    return f"identifier={_token(identifier['system'], identifier['value'])}"


def _token(system: str, value: str) -> str:
    return quote(f"{system}|{value}", safe=":|/")


def transaction_json(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction of conditional creates, from resources that refer by ``Type/id``."""
    urls = {_key(r): full_url(r["resourceType"], r["id"]) for r in resources}
    entries = []
    for resource in resources:
        body = rewrite_references(resource, urls)
        body.pop("id")  # a create gets its id from the server, which ignores ours
        entries.append(
            {
                "fullUrl": urls[_key(resource)],
                "resource": body,
                "request": {
                    "method": "POST",
                    "url": resource["resourceType"],
                    "ifNoneExist": conditional_query(resource),
                },
            }
        )
    return {"resourceType": "Bundle", "type": TRANSACTION, "entry": entries}


def _key(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def rewrite_references(value: Any, targets: Mapping[str, str]) -> Any:
    """A copy of ``value`` whose literal references found in ``targets`` name their targets'
    values instead: Bundle members by full URL here, transaction entries by stored id in
    :mod:`aistack.fhir.transaction`."""
    if isinstance(value, dict):
        copy = {key: rewrite_references(item, targets) for key, item in value.items()}
        literal = copy.get("reference")
        if isinstance(literal, str) and literal in targets:
            copy["reference"] = targets[literal]
        return copy
    if isinstance(value, list):
        return [rewrite_references(item, targets) for item in value]
    return value
