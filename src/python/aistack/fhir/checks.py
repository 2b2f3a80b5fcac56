"""Checks fhir.resources does not make: R4-only content, required value sets, our codes.

pydantic validates the structure and datatypes; it accepts ``status: "nonsense"``, a SNOMED
code with a typo or an R4B-only element. These checks refuse them, on the FHIR JSON itself
(what a server receives). Builders run them on every resource they make.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from aistack.fhir import codes
from aistack.fhir.r4 import FHIR_ID, r4_problems


class FhirCheckError(ValueError):
    """A resource breaks R4 or the project's FHIR rules; ``problems`` lists each breach."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


RESOURCE_ID = re.compile(FHIR_ID)
AI_OUTPUT_STATUS = "preliminary"
"""What an AI result's Observation and DiagnosticReport say until a person confirms them."""


def check_resource(resource: dict[str, Any]) -> None:
    if problems := resource_problems(resource):
        raise FhirCheckError(problems)


def check_bundle(bundle: dict[str, Any]) -> None:
    if problems := bundle_problems(bundle):
        raise FhirCheckError(problems)


def resource_problems(
    resource: dict[str, Any], targets: Mapping[str, str] | None = None
) -> list[str]:
    """Everything wrong with one resource (FHIR JSON); empty when nothing is."""
    return r4_problems(resource, targets) + _content_problems(resource)


def _content_problems(resource: dict[str, Any]) -> list[str]:
    """Value sets, the project's rules and codes (everything but the R4 element check)."""
    problems = []
    if "id" in resource and not RESOURCE_ID.fullmatch(str(resource["id"])):
        problems.append(f"id {resource['id']!r} is not a FHIR id")
    if (rule := _RULES.get(resource.get("resourceType", ""))) is not None:
        problems += rule(resource)
    return problems + coding_problems(resource)


def bundle_problems(bundle: dict[str, Any]) -> list[str]:
    """A transaction's problems: its resources', references that leave the Bundle, and
    creates that a retried publish would repeat."""
    entries = bundle.get("entry") or []
    targets = {
        e["fullUrl"]: e["resource"].get("resourceType", "")
        for e in entries
        if isinstance(e.get("resource"), dict) and "fullUrl" in e
    }
    problems = r4_problems(bundle, targets)
    problems += _in("Bundle.type", bundle.get("type"), codes.BUNDLE_TYPE)
    if len(targets) != len(entries):
        problems.append("Bundle: every entry needs a resource and a distinct fullUrl")
    for index, entry in enumerate(entries):
        resource = entry.get("resource") or {}
        where = f"Bundle.entry[{index}]"
        problems += [f"{where}: {p}" for p in _content_problems(resource)]
        request = entry.get("request") or {}
        problems += _in(f"{where}.request.method", request.get("method"), codes.HTTP_VERB)
        if bundle.get("type") == "transaction" and not request.get("url"):
            problems.append(f"{where}: a transaction entry needs request.url")
        if request.get("method") == "POST" and not request.get("ifNoneExist"):
            problems.append(f"{where}: a POST without ifNoneExist duplicates on every retry")
        for literal in _references(resource):
            if literal.startswith("urn:uuid:") and literal not in targets:
                problems.append(f"{where}: reference {literal} resolves to no entry")
    return problems


def coding_problems(resource: dict[str, Any]) -> list[str]:
    """Codings in the project's code systems must be registered ones, display and all."""
    problems = []
    for coding in _codings(resource):
        system, code = coding.get("system"), coding.get("code")
        if system == codes.SNOMED and not codes.snomed_id_is_valid(str(code)):
            problems.append(f"{code!r} is not a valid SNOMED CT concept id")
        elif system == codes.LOINC and not codes.loinc_code_is_valid(str(code)):
            problems.append(f"{code!r} is not a valid LOINC code")
        if system not in codes.REGISTERED_SYSTEMS:
            continue
        known = codes.REGISTERED.get((system, code))
        if known is None:
            problems.append(f"{system}|{code} is not a code aistack uses")
        elif coding.get("display", known.display) != known.display:
            problems.append(
                f"{system}|{code} has display {coding['display']!r}, not {known.display!r}"
            )
    return problems


def _observation(resource: dict[str, Any]) -> list[str]:
    return [
        *_in("Observation.status", resource.get("status"), codes.OBSERVATION_STATUS),
        *_ai_result("Observation", resource),
        *_has_coding("Observation.category", resource.get("category"), codes.IMAGING),
        *_finding("Observation.valueCodeableConcept", resource.get("valueCodeableConcept")),
    ]


def _report(resource: dict[str, Any]) -> list[str]:
    problems = [
        *_in("DiagnosticReport.status", resource.get("status"), codes.REPORT_STATUS),
        *_ai_result("DiagnosticReport", resource),
        *_has_coding("DiagnosticReport.category", resource.get("category"), codes.RADIOLOGY),
    ]
    if not resource.get("conclusion"):
        problems.append("DiagnosticReport: an AI report needs a readable conclusion")
    return problems


def _media(resource: dict[str, Any]) -> list[str]:
    problems = [
        *_in("Media.status", resource.get("status"), codes.EVENT_STATUS),
        *_has_coding("Media.type", [resource.get("type") or {}], codes.IMAGE),
    ]
    if "device" in resource:  # made by the model
        problems += _security("Media", resource)
    return problems


def _device(resource: dict[str, Any]) -> list[str]:
    problems = _in("Device.status", resource.get("status"), codes.DEVICE_STATUS)
    for name in resource.get("deviceName") or []:
        problems += _in("Device.deviceName.type", name.get("type"), codes.DEVICE_NAME_TYPE)
    problems += _has_coding("Device.type", [resource.get("type") or {}], codes.AI_DEVICE)
    return problems


def _provenance(resource: dict[str, Any]) -> list[str]:
    problems = []
    for entity in resource.get("entity") or []:
        problems += _in("Provenance.entity.role", entity.get("role"), codes.PROVENANCE_ENTITY_ROLE)
    problems += _has_coding("Provenance.reason", resource.get("reason"), codes.AI_ASSERTED)
    if not resource.get("agent"):
        problems.append("Provenance: needs the model as agent")
    return problems


def _risk_assessment(resource: dict[str, Any]) -> list[str]:
    """The ICU predictor's: R4 binds its status to the Observation statuses; the subject is
    required; its contained model Device follows the Device rules (its basis Observations
    are the caller's values, not AI results)."""
    problems = _in("RiskAssessment.status", resource.get("status"), codes.OBSERVATION_STATUS)
    if "subject" not in resource:
        problems.append("RiskAssessment.subject is required")
    for inner in resource.get("contained") or []:
        if isinstance(inner, dict) and inner.get("resourceType") == "Device":
            problems += [f"contained #{inner.get('id')}: {p}" for p in _device(inner)]
    return problems


_RULES = {
    "Observation": _observation,
    "DiagnosticReport": _report,
    "Media": _media,
    "Device": _device,
    "Provenance": _provenance,
    "RiskAssessment": _risk_assessment,
}


def _in(where: str, value: Any, allowed: frozenset[str]) -> list[str]:
    if value in allowed:
        return []
    return [f"{where} {value!r} is not one of R4's codes ({', '.join(sorted(allowed))})"]


def _ai_result(kind: str, resource: dict[str, Any]) -> list[str]:
    problems = _security(kind, resource)
    if resource.get("status") != AI_OUTPUT_STATUS:
        problems.append(
            f"{kind}.status {resource.get('status')!r}: an AI result stays {AI_OUTPUT_STATUS!r}"
        )
    return problems


def _security(kind: str, resource: dict[str, Any]) -> list[str]:
    labels = (resource.get("meta") or {}).get("security") or []
    if any(_same(label, codes.AI_ASSERTED) for label in labels):
        return []
    return [f"{kind}: AI-made data needs meta.security {codes.AI_ASSERTED.code}"]


def _has_coding(where: str, concepts: Any, code: codes.Code) -> list[str]:
    for concept in concepts or []:
        if any(_same(coding, code) for coding in concept.get("coding") or []):
            return []
    return [f"{where} lacks {code.system}|{code.code} ({code.display})"]


def _finding(where: str, concept: Any) -> list[str]:
    for coding in (concept or {}).get("coding") or []:
        if any(_same(coding, finding) for finding in codes.FINDINGS.values()):
            return []
    return [f"{where} is none of the SNOMED CT findings the model reports"]


def _same(coding: dict[str, Any], code: codes.Code) -> bool:
    return coding.get("system") == code.system and coding.get("code") == code.code


def _codings(value: Any) -> Iterator[dict[str, Any]]:
    """Every Coding (and coded Quantity) in a JSON tree: objects with a system and a code."""
    if isinstance(value, dict):
        if "system" in value and "code" in value:
            yield value
        for item in value.values():
            if isinstance(item, (dict, list)):
                yield from _codings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _codings(item)


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        literal = value.get("reference")
        if isinstance(literal, str):
            yield literal
        for item in value.values():
            if isinstance(item, (dict, list)):
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)
