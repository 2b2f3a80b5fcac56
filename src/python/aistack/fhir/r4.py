"""R4-only check: a resource's JSON may use only resource types, elements and reference
targets that exist in FHIR R4 (4.0.1), though it is built and validated with R4B models.

The table is :mod:`aistack.fhir.r4_table`; here it is parsed once and walked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aistack.fhir.r4_table import ELEMENT_TABLE, RESOURCE_TYPE_NAMES

ANY_RESOURCE = "Resource"
PRIMITIVE_EXTRAS = frozenset({"id", "extension"})
"""What ``_x`` (the element sibling of a primitive ``x``) may hold."""
FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"
LITERAL_REFERENCE = re.compile(rf"(?:^|/)([A-Z][A-Za-z]+)/{FHIR_ID}(?:/_history/[^/]+)?$")
"""``[base/]Type/id[/_history/v]``: FHIR's literal reference."""


@dataclass(frozen=True)
class ElementDef:
    type: str
    targets: frozenset[str]
    """Allowed reference target types, for Reference elements (``Resource`` = any)."""

    @property
    def is_complex(self) -> bool:
        return self.type[0].isupper()


def _parse(table: str) -> dict[str, dict[str, ElementDef]]:
    types: dict[str, dict[str, ElementDef]] = {}
    elements: dict[str, ElementDef] = {}
    last = ""
    for line in table.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            elements = types.setdefault(line.strip(), {})
        elif line.startswith("    "):  # more reference targets of the element above
            previous = elements[last]
            elements[last] = ElementDef(previous.type, previous.targets | set(line.split()))
        else:
            last, type_, *targets = line.split()
            elements[last] = ElementDef(type_, frozenset(targets))
    return types


R4_TYPES: dict[str, dict[str, ElementDef]] = _parse(ELEMENT_TABLE)
R4_RESOURCE_TYPES: frozenset[str] = frozenset(RESOURCE_TYPE_NAMES.split())


def r4_problems(
    resource: dict[str, Any], targets: Mapping[str, str] | None = None, where: str = ""
) -> list[str]:
    """What in ``resource`` (FHIR JSON) does not exist in R4; empty when all of it does.

    ``targets`` maps ``urn:uuid:`` full URLs to resource types, so that references inside a
    Bundle are checked against the types R4 allows there too.
    """
    walk = _Walk(targets or {})
    walk.resource(resource, where or str(resource.get("resourceType")))
    return walk.problems


class _Walk:
    def __init__(self, targets: Mapping[str, str]) -> None:
        self.targets = targets
        self.problems: list[str] = []

    def resource(self, resource: Any, where: str) -> None:
        if not isinstance(resource, dict):
            self.problems.append(f"{where}: a resource must be a JSON object")
            return
        resource_type = resource.get("resourceType")
        if resource_type not in R4_RESOURCE_TYPES:
            self.problems.append(f"{where}: resource type {resource_type!r} does not exist in R4")
            return
        contained = self.contained(resource, where)
        outer, self.targets = self.targets, {**self.targets, **contained}
        try:
            self.object(resource, str(resource_type), where)
        finally:
            self.targets = outer

    def contained(self, resource: dict[str, Any], where: str) -> dict[str, str]:
        """``#id`` → type of each contained resource, checked against R4's rules for them:
        referred to from the rest of the resource (dom-3), no meta of their own (dom-4/5)."""
        found: dict[str, str] = {}
        others = {key: value for key, value in resource.items() if key != "contained"}
        referred = {r for r in _references(others) if r.startswith("#")}
        for item in resource.get("contained") or ():
            if not isinstance(item, dict):
                continue
            local = f"#{item.get('id')}"
            found[local] = str(item.get("resourceType"))
            if local not in referred:
                self.problems.append(f"{where}.contained {local} is referred to by nothing (dom-3)")
            if "meta" in item:
                self.problems.append(f"{where}.contained {local} may not carry meta (dom-4, dom-5)")
        return found

    def object(self, value: dict[str, Any], type_name: str, where: str) -> None:
        elements = R4_TYPES.get(type_name)
        if elements is None:
            self.problems.append(f"{where}: type {type_name} is not in the R4 table")
            return
        for key, item in value.items():
            if key == "resourceType":
                continue
            path = f"{where}.{key}"
            element = elements.get(key.removeprefix("_"))
            if element is None:
                self.problems.append(f"{path}: {type_name} has no element {key!r} in R4")
                continue
            for entry in item if isinstance(item, list) else (item,):
                if not isinstance(entry, dict):
                    continue  # primitives: pydantic validates their form
                if key.startswith("_"):
                    self.primitive_extras(entry, path)
                elif element.type == ANY_RESOURCE:
                    self.resource(entry, path)
                elif element.is_complex:
                    self.object(entry, element.type, path)
                    if element.type == "Reference":
                        self.target(entry, element.targets, path)

    def primitive_extras(self, value: dict[str, Any], where: str) -> None:
        for key in value.keys() - PRIMITIVE_EXTRAS:
            self.problems.append(f"{where}: a primitive's element has no {key!r}")
        for extension in value.get("extension") or ():
            self.object(extension, "Extension", f"{where}.extension")

    def target(self, reference: dict[str, Any], allowed: frozenset[str], where: str) -> None:
        """The Reference's target type, when known, must be one R4 allows there; a local
        ``#id`` must name a contained resource of the type it says."""
        target = reference.get("type")
        literal = reference.get("reference")
        if isinstance(literal, str) and literal.startswith("#"):
            if literal not in self.targets:
                self.problems.append(f"{where}: {literal} is no contained resource")
                return
            if target is not None and target != self.targets[literal]:
                self.problems.append(f"{where}: {literal} is a {self.targets[literal]}")
                return
        if not allowed or ANY_RESOURCE in allowed:
            return
        if target is None and isinstance(literal, str):
            if literal in self.targets:
                target = self.targets[literal]
            elif match := LITERAL_REFERENCE.search(literal):
                target = match.group(1)
        if target is not None and target not in allowed:
            self.problems.append(f"{where}: R4 does not allow a reference to {target} here")


def _references(value: Any) -> list[str]:
    """Every literal reference in a JSON tree."""
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for item in value.values() for r in _references(item)]
    if isinstance(value, list):
        return [r for item in value for r in _references(item)]
    return []
