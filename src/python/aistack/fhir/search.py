"""FHIR search over the resource store: the parameters each type takes and what values mean.

Strict handling: a parameter, modifier or prefix not listed here is a 400, never silently
dropped (FHIR's lenient default would answer ``subjet=Patient/1`` with every Observation).
Every value must first match its parameter's pattern, and the OpenAPI document publishes the
same patterns, so what the document promises is exactly what is accepted.

What a stored resource offers to search (its subject, date range and tokens) is extracted here
too (:func:`index_of`): one module says what each parameter means, on both sides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from aistack.errors import BadRequest
from aistack.fhir.r4 import FHIR_ID, R4_TYPES

SUPPORTED_TYPES = (
    "Observation",
    "DiagnosticReport",
    "Media",
    "Device",
    "Provenance",
    "RiskAssessment",
)
"""The resource types the store keeps, reads and searches: those of an X-ray prediction,
and the RiskAssessment of an ICU prediction (its Device and Observations contained)."""

DEFAULT_COUNT = 20
MAX_COUNT = 100
"""``_count`` above this gives pages of this size (FHIR lets a server return fewer)."""
MAX_OFFSET = 1_000_000
MAX_VALUE_CHARS = 256
"""A value is at most this long (a comma list of a few tokens): a query stays a few bounded
index lookups, however it is written."""
TOKEN_CHARS = 255
"""Indexed token systems and values, and subject references, are at most this long."""

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)

# --- Value patterns (the OpenAPI document publishes these, anchored) ------------------------
ID_LIST = rf"{FHIR_ID}(?:,{FHIR_ID})*"
_TOKEN_PART = r"(?:[^,|\\]|\\[,|$\\])*"
"""Any text; ``\\,`` ``\\|`` ``\\$`` ``\\\\`` escape FHIR's delimiters."""
TOKEN_LIST = rf"{_TOKEN_PART}(?:\|{_TOKEN_PART})?(?:,{_TOKEN_PART}(?:\|{_TOKEN_PART})?)*"
_TYPE = r"[A-Z][A-Za-z]{0,63}"
_URL_CHARS = r"[\x21-\x2b\x2d-\x7e]"
"""Printable ASCII but the comma: what an absolute reference may hold before ``/Type/id``."""
REFERENCE = rf"(?:https?://{_URL_CHARS}+/{_TYPE}/|{_TYPE}/)?{FHIR_ID}"
REFERENCE_LIST = rf"{REFERENCE}(?:,{REFERENCE})*"
_YEAR = r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_MONTH = r"(?:0[1-9]|1[0-2])"
_MONTH_DAY = (
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    r"|(?:0[13-9]|1[0-2])-(?:29|30)"
    r"|(?:0[13578]|1[02])-31)"
)
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,9})?)?"
_ZONE = r"(?:Z|[+-](?:0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)"
DATE_TIME = (
    rf"(?:{_YEAR}(?:-{_MONTH})?|(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)(?:T{_TIME}{_ZONE}?)?)"
)
"""A year, a month, a day, or a day and time (minutes at least); only real calendar dates."""
PREFIXES = ("eq", "gt", "ge", "lt", "le")
DATE_LIST = rf"(?:{'|'.join(PREFIXES)})?{DATE_TIME}(?:,(?:{'|'.join(PREFIXES)})?{DATE_TIME})*"
COUNT = r"[0-9]+"

_DATE_PARTS = re.compile(
    r"(?P<y>[0-9]{4})(?:-(?P<m>[0-9]{2})(?:-(?P<d>[0-9]{2})(?:T(?P<H>[0-9]{2}):(?P<M>[0-9]{2})"
    r"(?::(?P<S>[0-9]{2})(?:\.(?P<f>[0-9]+))?)?(?P<z>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)


class Kind(StrEnum):
    """FHIR search parameter types (the subset the store implements)."""

    TOKEN = "token"
    REFERENCE = "reference"
    DATE = "date"
    ID = "id"  # _id: a token in FHIR, matched on the logical id


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: Kind
    pattern: str
    definition: str
    """The canonical SearchParameter (for the CapabilityStatement)."""
    documentation: str
    element: str | None = None
    """For a clinical date: the choice element it reads (``effective`` for effective[x])."""

    @property
    def max_repeats(self) -> int:
        """A date may come twice (the two ends of a range); others once (a comma is "or")."""
        return 2 if self.kind is Kind.DATE else 1


_SP = "http://hl7.org/fhir/SearchParameter/"
_ID = Parameter("_id", Kind.ID, ID_LIST, f"{_SP}Resource-id", "logical id; comma = any of")
_LAST_UPDATED = Parameter(
    "_lastUpdated",
    Kind.DATE,
    DATE_LIST,
    f"{_SP}Resource-lastUpdated",
    "when the store saved it; prefixes eq (default), gt, ge, lt, le; partial dates are ranges; "
    "a time without zone is UTC; repeat the parameter for both ends of a range",
)
_TAG = Parameter("_tag", Kind.TOKEN, TOKEN_LIST, f"{_SP}Resource-tag", "meta.tag, system|code")


def _identifier(definition: str) -> Parameter:
    return Parameter(
        "identifier",
        Kind.TOKEN,
        TOKEN_LIST,
        f"{_SP}{definition}",
        "system|value, value (any system), |value (no system) or system| (any value)",
    )


def _clinical(
    resource_type: str,
    *,
    logical: str = "a DICOM Patient ID",
    date: str = "effective",
    coded: bool = True,
) -> tuple[Parameter, ...]:
    """identifier, subject (``logical`` says what a logical reference's identifier is),
    code when the type has R4's clinical-code, and the clinical date of ``date``[x]."""
    code = Parameter(
        "code",
        Kind.TOKEN,
        TOKEN_LIST,
        f"{_SP}clinical-code",
        "system|code or code (any system)",
    )
    return (
        _identifier("clinical-identifier"),
        Parameter(
            "subject",
            Kind.REFERENCE,
            REFERENCE_LIST,
            f"{_SP}{resource_type}-subject",
            "a literal reference: Type/id, an id alone (any target type), or an absolute URL; "
            "subject:identifier=system|value matches a logical reference by its identifier",
        ),
        Parameter(
            "subject:identifier",
            Kind.TOKEN,
            TOKEN_LIST,
            f"{_SP}{resource_type}-subject",
            f"the identifier of a logical subject reference ({logical}), system|value",
        ),
        *((code,) if coded else ()),
        Parameter(
            "date",
            Kind.DATE,
            DATE_LIST,
            f"{_SP}clinical-date",
            f"{date}[x]; prefixes eq (default), gt, ge, lt, le; partial dates are ranges; "
            "a time without zone is UTC; repeat the parameter for both ends of a range",
            element=date,
        ),
    )


PARAMETERS: dict[str, dict[str, Parameter]] = {
    resource_type: {p.name: p for p in (_ID, _LAST_UPDATED, _TAG, *extra)}
    for resource_type, extra in {
        "Observation": _clinical("Observation"),
        "DiagnosticReport": _clinical("DiagnosticReport"),
        "Media": (_identifier("Media-identifier"),),
        "Device": (_identifier("Device-identifier"),),
        "Provenance": (),
        # R4 gives RiskAssessment no clinical-code (its code is the method's, not searched).
        "RiskAssessment": _clinical(
            "RiskAssessment",
            logical="the ICU row's PATIENT_VISIT_IDENTIFIER",
            date="occurrence",
            coded=False,
        ),
    }.items()
}
RESULT_PARAMETERS = ("_count", "_offset")
"""Paging: ``_count`` (page size, default 20, at most 100) and ``_offset`` (entries skipped)."""


# --- Parsed queries -------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenMatch:
    """``code`` (any system), ``system|code``, ``|code`` (no system) or ``system|`` (any code)."""

    code: str | None
    system: str | None = None
    system_given: bool = False


@dataclass(frozen=True)
class DateRange:
    """A half-open instant range ``[start, end)``: what a (partial) date stands for."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class DateMatch:
    prefix: str
    range: DateRange


@dataclass(frozen=True)
class Criterion:
    """One parameter occurrence: the resource matches if any of its values does."""

    name: str
    kind: Kind
    any_of: tuple[Any, ...]
    """str ids or references, :class:`TokenMatch` or :class:`DateMatch` values."""


@dataclass(frozen=True)
class SearchQuery:
    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    """All must hold (a repeated parameter is an AND)."""
    count: int = DEFAULT_COUNT
    offset: int = 0


def parse_search(
    resource_type: str,
    pairs: Sequence[tuple[str, str]],
    base_url: str = "",
    paging: bool = True,
) -> SearchQuery:
    """The query of ``pairs`` (the URL's parameters, in order); BadRequest when not valid.

    ``base_url`` is this server's FHIR base: absolute references under it mean ``Type/id``.
    ``paging`` false refuses ``_count``/``_offset`` (a conditional create's query).
    """
    known = PARAMETERS.get(resource_type)
    if known is None:
        raise BadRequest(f"resource type {resource_type[:40]!r} is not supported")
    criteria: list[Criterion] = []
    count, offset = DEFAULT_COUNT, 0
    seen_result: set[str] = set()
    repeats: dict[str, int] = {}
    for name, value in pairs:
        if paging and name in RESULT_PARAMETERS:
            if name in seen_result:
                raise BadRequest(f"{name} may be given once")
            seen_result.add(name)
            number = _integer(name, value)
            if name == "_count":
                count = min(number, MAX_COUNT)
            elif number > MAX_OFFSET:
                raise BadRequest(f"_offset is at most {MAX_OFFSET}")
            else:
                offset = number
            continue
        parameter = known.get(name)
        if parameter is None:
            raise BadRequest(_unknown(resource_type, name, known, paging))
        repeats[name] = repeats.get(name, 0) + 1
        if repeats[name] > parameter.max_repeats:
            times = "once" if parameter.max_repeats == 1 else f"{parameter.max_repeats} times"
            raise BadRequest(f"{name} may be given {times} (a comma separates values: any of)")
        if len(value) > MAX_VALUE_CHARS:
            raise BadRequest(f"a {name} value is at most {MAX_VALUE_CHARS} characters long")
        if not re.fullmatch(parameter.pattern, value):
            raise BadRequest(f"{name}={value[:60]!r} is not a valid {parameter.kind} value")
        criterion = _criterion(parameter, value, resource_type, base_url)
        if criterion is not None:
            criteria.append(criterion)
    return SearchQuery(resource_type, tuple(criteria), count, offset)


def _unknown(resource_type: str, name: str, known: dict[str, Parameter], paging: bool) -> str:
    accepted = ", ".join([*known, *(RESULT_PARAMETERS if paging else ())])
    return (
        f"unknown or unsupported search parameter {name[:40]!r} for {resource_type} "
        f"(search is strict; accepted: {accepted})"
    )


def _integer(name: str, value: str) -> int:
    if not re.fullmatch(COUNT, value):
        raise BadRequest(f"{name} must be a whole number, not {value[:20]!r}")
    return int(value)


def _criterion(
    parameter: Parameter, value: str, resource_type: str, base_url: str
) -> Criterion | None:
    if parameter.kind is Kind.TOKEN:
        tokens = tuple(t for t in (_token(part) for part in _split(value)) if t is not None)
        return Criterion(parameter.name, parameter.kind, tokens) if tokens else None
    if parameter.kind is Kind.DATE:
        matches = tuple(_date_match(part) for part in value.split(","))
        return Criterion(parameter.name, parameter.kind, matches)
    if parameter.kind is Kind.REFERENCE:
        targets = subject_targets(resource_type)
        references = tuple(
            ref for part in value.split(",") for ref in _reference_values(part, base_url, targets)
        )
        return Criterion(parameter.name, parameter.kind, references)
    return Criterion(parameter.name, parameter.kind, tuple(value.split(",")))


def _split(value: str, separator: str = ",") -> list[str]:
    """Split on ``separator`` where it is not escaped with a backslash; escapes are kept."""
    parts, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _token(part: str) -> TokenMatch | None:
    """One token value; None for an empty one (FHIR: empty values are ignored)."""
    if part == "":
        return None
    pieces = _split(part, "|")
    if len(pieces) == 1:
        return TokenMatch(_unescape(pieces[0]))
    system, code = (_unescape(piece) or None for piece in pieces)
    return TokenMatch(code, system, system_given=True)


def _date_match(part: str) -> DateMatch:
    prefix = part[:2] if part[:2] in PREFIXES else "eq"
    return DateMatch(prefix, date_range(part[2:] if part[:2] in PREFIXES else part))


def subject_targets(resource_type: str) -> tuple[str, ...]:
    """The types R4 allows as this type's subject (what a bare id may point to)."""
    element = R4_TYPES.get(resource_type, {}).get("subject")
    return tuple(sorted(element.targets)) if element is not None else ()


def _reference_values(value: str, base_url: str, targets: Iterable[str]) -> list[str]:
    normal = normalize_reference(value, base_url)
    if "/" in normal:
        return [normal]
    return [f"{target}/{normal}" for target in targets]  # an id alone: any target type


def normalize_reference(reference: str, base_url: str) -> str:
    """``Type/id`` for a relative reference or an absolute one under this server's base;
    other absolute references stay whole. A version suffix (``/_history/n``) is dropped."""
    reference = re.sub(r"/_history/[^/]+$", "", reference)
    if base_url and reference.startswith(f"{base_url.rstrip('/')}/"):
        reference = reference[len(base_url.rstrip("/")) + 1 :]
    return reference


# --- Dates ----------------------------------------------------------------------------------


def date_range(text: str) -> DateRange:
    """The instants a FHIR date, dateTime or instant stands for, in UTC; ValueError if none.

    ``2024`` is the whole year, ``2024-05-01T10:00`` that minute; a time without a zone is UTC
    (a date alone has none). Beyond year 1 or 9999 the range is clamped, never an error.
    """
    match = _DATE_PARTS.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a FHIR date")
    parts = match.groupdict()
    year = int(parts["y"])
    if parts["m"] is None:
        start = datetime(year, 1, 1)
        return _range(start, _next_year(start), parts["z"])
    month = int(parts["m"])
    if parts["d"] is None:
        start = datetime(year, month, 1)
        end = _next_year(start) if month == 12 else datetime(year, month + 1, 1)
        return _range(start, end, parts["z"])
    day = datetime(year, month, int(parts["d"]))
    if parts["H"] is None:
        return _range(day, _plus(day, timedelta(days=1)), parts["z"])
    start = day.replace(hour=int(parts["H"]), minute=int(parts["M"]))
    if parts["S"] is None:
        return _range(start, _plus(start, timedelta(minutes=1)), parts["z"])
    start = start.replace(second=int(parts["S"]))
    fraction = parts["f"] or ""
    if not fraction:
        return _range(start, _plus(start, timedelta(seconds=1)), parts["z"])
    start = start.replace(microsecond=int(fraction[:6].ljust(6, "0")))
    width = timedelta(microseconds=10 ** max(0, 6 - len(fraction)))
    return _range(start, _plus(start, width), parts["z"])


def _next_year(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.year < 9999 else datetime.max


def _plus(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:
        return datetime.max if delta > timedelta(0) else datetime.min


def _range(start: datetime, end: datetime, zone: str | None) -> DateRange:
    offset = timedelta(0)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return DateRange(_to_utc(start, offset), _to_utc(end, offset))


def _to_utc(local: datetime, offset: timedelta) -> datetime:
    if local == datetime.max:
        return LATEST
    return _plus(local, -offset).replace(tzinfo=UTC)


def minus(moment: datetime, delta: timedelta) -> datetime:
    """``moment - delta``, clamped to the earliest instant (aware UTC in, aware UTC out)."""
    try:
        return moment - delta
    except OverflowError:
        return EARLIEST


# --- What a stored resource offers to search ------------------------------------------------


@dataclass(frozen=True)
class ResourceIndex:
    subject: str | None
    date: DateRange | None
    tokens: tuple[tuple[str, str | None, str], ...]
    """(parameter, system, code) for every token parameter of the type."""


def index_of(resource: dict[str, Any], base_url: str = "") -> ResourceIndex:
    """The search values of ``resource``; ValueError when one is too long to index (a
    resource whose identifier could not be found would be duplicated by every retry)."""
    resource_type = resource["resourceType"]
    known = PARAMETERS[resource_type]
    tokens: list[tuple[str, str | None, str]] = []
    for tag in (resource.get("meta") or {}).get("tag") or ():
        tokens += _tokens("_tag", tag.get("system"), tag.get("code"))
    if "identifier" in known:
        for identifier in resource.get("identifier") or ():
            tokens += _tokens("identifier", identifier.get("system"), identifier.get("value"))
    if "code" in known:
        for coding in (resource.get("code") or {}).get("coding") or ():
            tokens += _tokens("code", coding.get("system"), coding.get("code"))
    subject = None
    if "subject" in known:  # a literal reference, a logical one, or a display alone
        reference = resource.get("subject") or {}
        logical = reference.get("identifier") or {}
        tokens += _tokens("subject:identifier", logical.get("system"), logical.get("value"))
        if isinstance(reference.get("reference"), str):
            subject = normalize_reference(reference["reference"], base_url)
            _check_length("subject", subject)
    dated = known.get("date")
    date = _clinical_date(resource, dated.element) if dated and dated.element else None
    return ResourceIndex(subject, date, tuple(dict.fromkeys(tokens)))


def _tokens(name: str, system: Any, code: Any) -> list[tuple[str, str | None, str]]:
    if not isinstance(code, str) or not code:
        return []
    system = system if isinstance(system, str) and system else None
    _check_length(name, code)
    if system is not None:
        _check_length(f"{name} system", system)
    return [(name, system, code)]


def _check_length(what: str, value: str) -> None:
    if len(value) > TOKEN_CHARS:
        raise ValueError(f"{what} is longer than {TOKEN_CHARS} characters: it cannot be indexed")


def _clinical_date(resource: dict[str, Any], element: str) -> DateRange | None:
    """``element``[x] (``effective``, ``occurrence``) as a range: a dateTime or instant
    stands for its precision's range, a Period for its start to its end (open when absent)."""
    for key in (f"{element}DateTime", f"{element}Instant"):
        if isinstance(resource.get(key), str):
            return date_range(resource[key])
    period = resource.get(f"{element}Period")
    if isinstance(period, dict) and (period.get("start") or period.get("end")):
        start = date_range(period["start"]).start if period.get("start") else EARLIEST
        end = date_range(period["end"]).end if period.get("end") else LATEST
        return DateRange(start, end)
    return None
