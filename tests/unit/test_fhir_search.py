"""The FHIR resource store on a real SQLite file: search semantics, paging, transactions.

Search values are checked parameter by parameter, prefix by prefix, against small data sets
whose expected matches are worked out by hand from FHIR's range rules. The patterns the
OpenAPI document publishes are fuzzed: any value they allow must parse (a 400 for a value the
document promises would break its clients).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from aistack.auth.signing import UrlSigner
from aistack.errors import AistackError, BadRequest, InvalidRequest
from aistack.fhir import MediaLinks, ModelDescription, build_prediction_resources
from aistack.fhir.bundle import transaction_json
from aistack.fhir.resource_store import (
    MAX_RESOURCE_CHARS,
    TABLES,
    ResourceStore,
    StoredResource,
)
from aistack.fhir.risk import (
    ICU_COLUMN_SYSTEM,
    ICU_PREDICTION_SYSTEM,
    PATIENT_VISIT_SYSTEM,
    TRAINING_DATA_SYSTEM,
    risk_assessment_json,
)
from aistack.fhir.search import (
    DATE_LIST,
    ID_LIST,
    MAX_COUNT,
    MAX_OFFSET,
    MAX_VALUE_CHARS,
    PARAMETERS,
    REFERENCE_LIST,
    SUPPORTED_TYPES,
    TOKEN_LIST,
    date_range,
    index_of,
    parse_search,
)
from aistack.fhir.transaction import (
    Entry,
    PreconditionFailed,
    PredictionRecorder,
    parse_transaction,
    run_transaction,
)
from aistack.icu.local import load_local
from aistack.icu.predictor import IcuPrediction, ModelMetadata, predict
from aistack.store import PredictionStore
from aistack.xray.links import FileLinks
from tests.unit.records import prediction_record

BASE = "http://test.local/fhir/r4"
SNOMED = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "covid19"


@pytest.fixture
def store(tmp_path: Path):
    predictions = PredictionStore(f"sqlite:///{tmp_path / 'aistack.db'}")
    predictions.create_schema()
    resources = ResourceStore(predictions.engine, BASE)
    resources.create_schema()
    yield resources
    predictions.close()


def observation(name: str, **elements) -> dict:
    """A minimal Observation named by its identifier value (the store does not validate)."""
    return {
        "resourceType": "Observation",
        "id": name,
        "identifier": [{"system": "urn:test", "value": name}],
        "status": "preliminary",
        "code": {"coding": [{"system": SNOMED, "code": "118247008"}]},
        **elements,
    }


def add(store: ResourceStore, *resources: dict, now: datetime | None = None) -> None:
    with store.writing() as writer:
        for resource in resources:
            writer.create(resource, now)


def ids(store: ResourceStore, resource_type: str = "Observation", **params: str | list[str]):
    """The ids a search finds (every page)."""
    pairs = [
        (name.replace("__", ":"), value)
        for name, values in params.items()
        for value in (values if isinstance(values, list) else [values])
    ]
    query = parse_search(resource_type, [*pairs, ("_count", "100")], BASE)
    return {stored.id for stored in store.search(query).resources}


# --- Parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pairs",
    [
        [("subjet", "Patient/1")],  # a typo is refused, not ignored
        [("code:text", "covid")],  # unsupported modifier
        [("_sort", "-_lastUpdated")],
        [("date", "ne2024")],  # unsupported prefix
        [("date", "2024-13")],
        [("date", "2023-02-29")],  # not a leap year
        [("date", "2024-04-31")],
        [("date", "2024-02-01T25:00Z")],
        [("date", "2024-02-01T10Z")],
        [("date", "")],
        [("subject", "Patient/")],
        [("subject", "Patient/a b")],
        [("_id", "a/b")],
        [("_count", "-1")],
        [("_count", "ten")],
        [("_count", "\uff11\uff12")],  # fullwidth digits are no decimal number here
        [("_count", "5"), ("_count", "6")],
        [("_offset", str(MAX_OFFSET + 1))],
        [("identifier", "a|b|c")],
        [("code", "a"), ("code", "b")],  # once: a comma says "any of"
        [("date", "ge2024"), ("date", "lt2025"), ("date", "2024")],  # a range has two ends
        [("_tag", "x" * (MAX_VALUE_CHARS + 1))],
    ],
)
def test_invalid_search_is_a_400(pairs):
    with pytest.raises(BadRequest) as raised:
        parse_search("Observation", pairs, BASE)
    assert raised.value.status == 400


def test_the_400_names_the_parameters_a_type_accepts():
    with pytest.raises(
        BadRequest, match=r"strict; accepted: _id, _lastUpdated, _tag, _count, _offset\)"
    ):
        parse_search("Provenance", [("subject", "Patient/1")])
    with pytest.raises(BadRequest, match="not supported"):
        parse_search("Patient", [])


def test_count_is_bounded_and_defaults_to_20():
    assert parse_search("Observation", []).count == 20
    assert parse_search("Observation", [("_count", "0")]).count == 0
    assert parse_search("Observation", [("_count", "100000000000000000000")]).count == MAX_COUNT
    assert parse_search("Observation", [("_offset", str(MAX_OFFSET))]).offset == MAX_OFFSET


def test_empty_token_values_are_ignored_as_fhir_says():
    assert parse_search("Observation", [("code", ""), ("identifier", ",")]).criteria == ()


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2024", datetime(2024, 1, 1), datetime(2025, 1, 1)),
        ("2024-02", datetime(2024, 2, 1), datetime(2024, 3, 1)),
        ("2024-12", datetime(2024, 12, 1), datetime(2025, 1, 1)),
        ("2024-02-29", datetime(2024, 2, 29), datetime(2024, 3, 1)),
        ("2024-05-01T10:00+02:00", datetime(2024, 5, 1, 8), datetime(2024, 5, 1, 8, 1)),
        ("2024-05-01T10:00:05", datetime(2024, 5, 1, 10, 0, 5), datetime(2024, 5, 1, 10, 0, 6)),
        (
            "2024-05-01T10:00:05.5Z",
            datetime(2024, 5, 1, 10, 0, 5, 500000),
            datetime(2024, 5, 1, 10, 0, 5, 600000),
        ),
        (
            "2024-05-01T10:00:05.1234567-01:00",
            datetime(2024, 5, 1, 11, 0, 5, 123456),
            datetime(2024, 5, 1, 11, 0, 5, 123457),
        ),
        ("0001-01-01T00:30+01:00", datetime.min, datetime.min),  # before year 1: clamped
        ("9999", datetime(9999, 1, 1), datetime.max),
        ("9999-12-31T23:00-02:00", datetime.max, datetime.max),
    ],
)
def test_a_partial_date_stands_for_its_whole_range_in_utc(text, start, end):
    parsed = date_range(text)
    assert (parsed.start, parsed.end) == (start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))


# Whatever the published patterns and bounds allow must parse: the OpenAPI document's promise.
def documented(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(f"^{pattern}$", fullmatch=True).filter(
        lambda value: len(value) <= MAX_VALUE_CHARS
    )


@settings(max_examples=150, deadline=None)
@given(value=documented(DATE_LIST))
def test_every_value_the_date_pattern_allows_parses(value):
    parse_search("Observation", [("date", value), ("_lastUpdated", value)])


@settings(max_examples=100, deadline=None)
@given(value=documented(TOKEN_LIST))
def test_every_value_the_token_pattern_allows_parses(value):
    parse_search("DiagnosticReport", [("code", value), ("subject:identifier", value)])


@settings(max_examples=100, deadline=None)
@given(
    reference=documented(REFERENCE_LIST),
    ids_=documented(ID_LIST),
)
def test_every_value_the_reference_and_id_patterns_allow_parses(reference, ids_):
    parse_search("Observation", [("subject", reference), ("_id", ids_)], BASE)


# --- Search semantics -----------------------------------------------------------------------


def test_subject_by_reference_bare_id_and_absolute_url(store):
    add(
        store,
        observation("a", subject={"reference": "Patient/p1"}),
        observation("b", subject={"reference": "Group/p1"}),
        observation("c", subject={"reference": f"{BASE}/Patient/p2"}),
        observation("d", subject={"reference": "http://other.example/fhir/Patient/p1"}),
        observation("e", subject={"reference": "Patient/p1/_history/3"}),
        observation("f"),
    )
    assert ids(store, subject="Patient/p1") == {"a", "e"}
    assert ids(store, subject="p1") == {"a", "b", "e"}  # any type R4 allows as subject
    assert ids(store, subject="Patient/p2") == {"c"}  # stored as Type/id under our base
    assert ids(store, subject=f"{BASE}/Patient/p2") == {"c"}
    assert ids(store, subject="http://other.example/fhir/Patient/p1") == {"d"}
    assert ids(store, subject="Patient/p2,Group/p1") == {"b", "c"}
    assert ids(store, subject="Patient/none") == set()


def test_subject_by_the_identifier_of_a_logical_reference(store):
    add(
        store,
        observation("a", subject={"identifier": {"system": "urn:mrn", "value": "123"}}),
        observation("b", subject={"type": "Patient", "identifier": {"value": "123"}}),
        observation("c", subject={"identifier": {"system": "urn:other", "value": "123"}}),
    )
    assert ids(store, subject__identifier="urn:mrn|123") == {"a"}
    assert ids(store, subject__identifier="123") == {"a", "b", "c"}
    assert ids(store, subject__identifier="|123") == {"b"}  # no system
    assert ids(store, subject__identifier="urn:other|") == {"c"}  # any value in the system


def test_code_tokens_with_and_without_system_and_escapes(store):
    add(
        store,
        observation(
            "finding",
            code={
                "coding": [
                    {"system": SNOMED, "code": "118247008"},
                    {"system": DCM, "code": "121071"},
                ]
            },
        ),
        observation("other", code={"coding": [{"system": SNOMED, "code": "17621005"}]}),
        observation("bare", code={"coding": [{"code": "118247008"}]}),
        observation("comma", code={"coding": [{"system": "urn:x", "code": "a,b|c"}]}),
        observation("text-only", code={"text": "no coding"}),
    )
    assert ids(store, code=f"{SNOMED}|118247008") == {"finding"}
    assert ids(store, code="118247008") == {"finding", "bare"}
    assert ids(store, code="|118247008") == {"bare"}
    assert ids(store, code=f"{SNOMED}|") == {"finding", "other"}
    assert ids(store, code=f"{DCM}|121071,{SNOMED}|17621005") == {"finding", "other"}
    assert ids(store, code=r"urn:x|a\,b\|c") == {"comma"}
    assert ids(store, code="a") == set()


def test_identifier_id_and_tag_on_every_type(store):
    add(
        store,
        {"resourceType": "Device", "id": "d1", "identifier": [{"system": "urn:s", "value": "1"}]},
        {"resourceType": "Device", "id": "d2", "identifier": [{"system": "urn:s", "value": "2"}]},
        {
            "resourceType": "Provenance",
            "id": "p1",
            "meta": {"tag": [{"system": "urn:t", "code": "x"}]},
        },
        {"resourceType": "Provenance", "id": "p2"},
    )
    assert ids(store, "Device", identifier="urn:s|2") == {"d2"}
    assert ids(store, "Device", _id="d1,d2,zz") == {"d1", "d2"}
    assert ids(store, "Provenance", _tag="urn:t|x") == {"p1"}
    assert ids(store, "Observation", identifier="urn:s|2") == set()  # types stay apart


DATED = [
    observation("jan-end", effectiveDateTime="2024-01-31T23:59:59.999Z"),
    observation("feb-start", effectiveDateTime="2024-02-01T00:00:00.000Z"),
    observation("feb-mid", effectiveInstant="2024-02-15T12:00:00.000Z"),
    observation("span", effectivePeriod={"start": "2024-01-15", "end": "2024-02-15"}),
    observation("local", effectiveDateTime="2024-03-01T01:00:00+02:00"),  # Feb 29, 23:00 UTC
    observation("undated"),
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-02", {"feb-start", "feb-mid", "local"}),  # eq: within February
        ("eq2024-02", {"feb-start", "feb-mid", "local"}),
        ("gt2024-01", {"feb-start", "feb-mid", "span", "local"}),  # extends past January
        ("lt2024-02", {"jan-end", "span"}),  # starts before February
        ("ge2024-02", {"feb-start", "feb-mid", "local"}),
        ("le2024-01-31", {"jan-end", "span"}),
        ("2024-02-01T00:00:00.000Z", {"feb-start"}),
        ("2024-02-01T02:00+02:00", {"feb-start"}),  # that minute, in UTC
        ("2024-01-31,2024-02-15", {"jan-end", "feb-mid"}),  # comma: any of
        ("2024", {"jan-end", "feb-start", "feb-mid", "span", "local"}),
        ("2023", set()),
        ("ge2024-01-31T23:59:59.999Z", {"jan-end", "feb-start", "feb-mid", "span", "local"}),
        ("gt2024-01-31T23:59:59.999Z", {"feb-start", "feb-mid", "span", "local"}),
    ],
)
def test_date_prefixes_follow_fhirs_range_rules(store, value, expected):
    add(store, *DATED)
    assert ids(store, date=value) == expected


def test_a_date_range_is_two_parameters_that_must_both_hold(store):
    add(store, *DATED)
    assert ids(store, date=["ge2024-01-31", "lt2024-02-02"]) == {"jan-end", "feb-start", "span"}


def test_last_updated_at_millisecond_precision(store):
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    add(store, observation("r1"), now=moment)
    add(store, observation("r2"), now=moment + timedelta(milliseconds=1, microseconds=700))
    add(store, observation("r3"), now=datetime(2025, 6, 1, 12, 0, 0, 500000, tzinfo=UTC))
    assert store.read("Observation", "r2").json()["meta"]["lastUpdated"] == (
        "2025-01-01T00:00:00.001Z"
    )
    assert ids(store, _lastUpdated="2025-01-01T00:00:00.000Z") == {"r1"}
    assert ids(store, _lastUpdated="gt2025-01-01T00:00:00.000Z") == {"r2", "r3"}
    assert ids(store, _lastUpdated="ge2025-01-01") == {"r1", "r2", "r3"}
    assert ids(store, _lastUpdated="lt2025-06") == {"r1", "r2"}
    assert ids(store, _lastUpdated="le2025-06-01T12:00:00.5Z") == {"r1", "r2", "r3"}
    assert ids(store, _lastUpdated="lt2025-06-01T12:00:00.5Z") == {"r1", "r2"}


def test_criteria_of_different_parameters_combine(store):
    add(
        store,
        observation("hit", subject={"reference": "Patient/x"}, effectiveDateTime="2024-05-02"),
        observation(
            "other-day", subject={"reference": "Patient/x"}, effectiveDateTime="2024-06-01"
        ),
        observation(
            "other-patient", subject={"reference": "Patient/y"}, effectiveDateTime="2024-05-02"
        ),
        observation(
            "other-code",
            subject={"reference": "Patient/x"},
            effectiveDateTime="2024-05-02",
            code={"coding": [{"system": SNOMED, "code": "17621005"}]},
        ),
    )
    found = ids(store, subject="Patient/x", code=f"{SNOMED}|118247008", date="2024-05")
    assert found == {"hit"}


# --- RiskAssessment: an ICU prediction, with its model Device and values contained ----------

MAY_FIRST = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def icu() -> tuple[IcuPrediction, ModelMetadata]:
    """One answer of the committed ICU model, and the model's metadata."""
    model = load_local()
    return predict(model, [{"PCR_MEDIAN": -0.85}])[0], model.metadata


def risk(icu, subject_id: str | None = None, issued: datetime = MAY_FIRST, **elements) -> dict:
    """A RiskAssessment as the ICU service builds it (``elements`` replace its own)."""
    answer, meta = icu
    resource = risk_assessment_json(
        answer, meta, {"PCR_MEDIAN": -0.85}, subject_id=subject_id, issued=issued
    )
    return {**resource, **elements}


def test_a_risk_assessment_indexes_its_identifier_subject_and_occurrence_only(icu):
    identified = risk(icu, "17")
    key = identified["identifier"][0]["value"]
    index = index_of(identified)
    assert index.subject is None  # a logical reference: no literal one to index
    assert index.tokens == (
        ("identifier", ICU_PREDICTION_SYSTEM, key),
        ("subject:identifier", PATIENT_VISIT_SYSTEM, "17"),
    )  # nothing of the contained Device and Observations
    assert index.date == date_range("2024-05-01T12:00:00Z")  # occurrenceDateTime, to the second
    display_only = index_of(risk(icu))
    assert display_only.subject is None and [t[0] for t in display_only.tokens] == ["identifier"]
    identifier_only = risk(
        icu, subject={"identifier": {"system": PATIENT_VISIT_SYSTEM, "value": "9"}}
    )
    assert ("subject:identifier", PATIENT_VISIT_SYSTEM, "9") in index_of(identifier_only).tokens
    literal = index_of(risk(icu, subject={"reference": f"{BASE}/Patient/p1"}), BASE)
    assert literal.subject == "Patient/p1"
    undated = {k: v for k, v in identified.items() if k != "occurrenceDateTime"}
    assert index_of(undated).date is None
    period = risk(icu, occurrencePeriod={"start": "2024-05-01"})
    del period["occurrenceDateTime"]
    assert index_of(period).date.start == datetime(2024, 5, 1, tzinfo=UTC)


def test_risk_assessments_are_found_by_identifier_subject_date_tag_and_last_updated(store, icu):
    tagged = {**risk(icu)["meta"], "tag": [{"system": "urn:t", "code": "x"}]}
    made = {
        "first": risk(icu, "17"),
        "second": risk(icu, "18", MAY_FIRST + timedelta(days=1), meta=tagged),
        "anonymous": risk(icu, None, datetime(2024, 6, 1, tzinfo=UTC)),
        "literal": risk(
            icu, None, datetime(2023, 1, 1, tzinfo=UTC), subject={"reference": "Patient/p1"}
        ),
    }
    add(store, made["first"], made["second"], now=datetime(2025, 1, 1, tzinfo=UTC))
    add(store, made["anonymous"], made["literal"], now=datetime(2025, 2, 1, tzinfo=UTC))
    names = {resource["id"]: name for name, resource in made.items()}

    def found(**params) -> set[str]:
        return {names[i] for i in ids(store, "RiskAssessment", **params)}

    first_key = made["first"]["identifier"][0]["value"]
    assert found(identifier=f"{ICU_PREDICTION_SYSTEM}|{first_key}") == {"first"}
    assert found(identifier=first_key) == {"first"}
    assert found(subject__identifier="17") == {"first"}
    assert found(subject__identifier=f"{PATIENT_VISIT_SYSTEM}|18") == {"second"}
    assert found(subject__identifier=f"{PATIENT_VISIT_SYSTEM}|") == {"first", "second"}
    assert found(subject="Patient/p1") == found(subject="p1") == {"literal"}  # Patient or Group
    assert found(subject="Group/p1") == set()
    assert found(date="2024-05-01") == {"first"}
    assert found(date="2024-05") == {"first", "second"}
    assert found(date=["ge2024-05-02", "lt2024-07"]) == {"second", "anonymous"}
    assert found(date="lt2024") == {"literal"}
    assert found(_tag="urn:t|x") == {"second"}
    assert found(_id=f"{made['first']['id']},{made['anonymous']['id']}") == {"first", "anonymous"}
    assert found(_lastUpdated="2025-01") == {"first", "second"}
    assert found(subject__identifier="17", date="2024-06") == set()  # criteria combine


def test_what_a_risk_assessment_contains_is_not_stored_or_found_on_its_own(store, icu):
    resource = risk(icu, "17")
    device, observation_json = resource["contained"]
    add(store, resource)
    assert store.count() == store.count("RiskAssessment") == 1
    assert store.read("Device", device["id"]) is None
    assert ids(store, "Device", identifier=f"{TRAINING_DATA_SYSTEM}|") == set()
    assert ids(store, "Observation", subject__identifier="17") == set()
    assert ids(store, "Observation", code=f"{ICU_COLUMN_SYSTEM}|PCR_MEDIAN") == set()
    stored = store.read("RiskAssessment", resource["id"]).json()
    assert stored["contained"] == [device, observation_json]  # part of the RiskAssessment


def test_risk_assessment_search_is_strict_too():
    accepted = "_id, _lastUpdated, _tag, identifier, subject, subject:identifier, date"
    with pytest.raises(BadRequest, match=f"accepted: {accepted}, _count, _offset"):
        parse_search("RiskAssessment", [("code", "x")])  # R4 has no code search on it


def test_a_transaction_creates_a_risk_assessment_once_and_refuses_a_broken_one(store, icu):
    made = risk(icu, "17")
    body = transaction_json([made])
    first = run_transaction(store, parse_transaction(body, BASE))
    again = run_transaction(store, parse_transaction(body, BASE))
    assert [r.created for r in first + again] == [True, False]
    assert store.count("RiskAssessment") == 1
    broken = {**made, "performer": {**made["performer"], "reference": "#nothing"}}
    with pytest.raises(InvalidRequest, match="no contained resource"):
        run_transaction(store, parse_transaction(transaction_json([broken]), BASE))
    assert store.count() == 1


# --- Paging ---------------------------------------------------------------------------------


def test_paging_visits_every_match_once_in_storage_order_while_new_ones_arrive(store):
    add(store, *(observation(f"o{n:03d}", subject={"reference": "Patient/pg"}) for n in range(45)))
    add(store, observation("elsewhere", subject={"reference": "Patient/other"}))
    seen: list[str] = []
    offset = 0
    while True:
        pairs = [("subject", "Patient/pg"), ("_count", "10"), ("_offset", str(offset))]
        page = store.search(parse_search("Observation", pairs))
        seen += [stored.id for stored in page.resources]
        if offset == 10:  # resources stored meanwhile come after: no page shifts
            add(
                store,
                *(observation(f"late{n}", subject={"reference": "Patient/pg"}) for n in range(3)),
            )
        if offset + 10 >= page.total:
            break
        offset += 10
    assert seen == [f"o{n:03d}" for n in range(45)] + [f"late{n}" for n in range(3)]


def test_count_zero_gives_the_total_only_and_large_counts_give_100(store):
    add(store, *(observation(f"o{n}", subject={"reference": "Patient/c"}) for n in range(120)))
    page = store.search(parse_search("Observation", [("subject", "Patient/c"), ("_count", "0")]))
    assert (page.total, page.resources) == (120, [])
    page = store.search(parse_search("Observation", [("subject", "Patient/c"), ("_count", "500")]))
    assert (page.total, len(page.resources)) == (120, 100)
    past = [("subject", "Patient/c"), ("_offset", "500")]
    assert store.search(parse_search("Observation", past)).resources == []


# --- Storing --------------------------------------------------------------------------------


def test_a_stored_resource_carries_its_id_and_meta_and_reads_back(store):
    add(store, observation("x", meta={"security": [{"system": "urn:s", "code": "AIAST"}]}))
    stored = store.read("Observation", "x")
    assert isinstance(stored, StoredResource) and stored.version_id == 1
    body = stored.json()
    assert body["id"] == "x" and body["meta"]["versionId"] == "1"
    assert body["meta"]["security"] == [{"system": "urn:s", "code": "AIAST"}]
    assert store.read("Observation", "y") is None
    assert store.read("Device", "x") is None


@pytest.mark.parametrize(
    "resource",
    [
        observation("long-id", identifier=[{"system": "urn:s", "value": "v" * 256}]),
        observation("long-ref", subject={"reference": "Patient/" + "p" * 250}),
        observation("huge", note=[{"text": "n" * MAX_RESOURCE_CHARS}]),
    ],
    ids=["identifier too long to index", "reference too long", "over the size limit"],
)
def test_what_cannot_be_indexed_or_stored_is_refused_and_nothing_stays(store, resource):
    with pytest.raises(AistackError) as raised:
        add(store, observation("first"), resource)
    assert raised.value.status in (413, 422)
    assert store.count() == 0  # all or nothing: "first" went too


def test_the_tables_compile_for_iris():
    pytest.importorskip("sqlalchemy_iris", reason="sqlalchemy-iris is a dev dependency")
    dialect = make_url("iris://user:pwd@localhost:1972/USER").get_dialect()()
    ddl = " ".join(str(CreateTable(table).compile(dialect=dialect)) for table in TABLES)
    assert "CREATE TABLE fhir_resources" in ddl and "CREATE TABLE fhir_tokens" in ddl
    assert "seq IDENTITY" in ddl and "UNIQUE (resource_type, id)" in ddl
    assert "JSON" not in ddl and "TEXT" not in ddl.upper().replace("CONTEXT", "")
    assert "content VARCHAR(1000000)" in ddl  # a long string, not a stream
    indexes = [
        str(CreateIndex(index).compile(dialect=dialect))
        for table in TABLES
        for index in table.indexes
    ]
    assert any("(resource_type, subject, seq)" in index for index in indexes)
    assert any("(resource_type, param, code, system)" in index for index in indexes)


# --- Transactions ---------------------------------------------------------------------------


def prediction_bundle(n: int = 0, patient: str = "P-1") -> dict:
    record = prediction_record(n, patient)
    model = ModelDescription.from_model_dir(MODEL_DIR, 1)
    links = MediaLinks(overlay_url=f"http://test.local/static/result/{n}.jpg")
    return build_prediction_resources(record, model, links).bundle_json


def test_a_transaction_resolves_references_and_a_repeat_creates_nothing(store):
    bundle = prediction_bundle()
    first = run_transaction(store, parse_transaction(bundle, BASE))
    assert [r.created for r in first] == [True] * 6
    device, source, heatmap, finding, report, _ = (r.stored for r in first)  # Bundle order
    observation_json = store.read("Observation", finding.id).json()
    assert observation_json["device"] == {"reference": device.reference}
    assert observation_json["derivedFrom"] == [{"reference": source.reference}]
    report_json = store.read("DiagnosticReport", report.id).json()
    assert report_json["result"] == [{"reference": finding.reference}]
    assert report_json["media"][0]["link"] == {"reference": heatmap.reference}
    again = run_transaction(store, parse_transaction(bundle, BASE))
    assert [r.created for r in again] == [False] * 6
    assert [r.stored for r in again] == [r.stored for r in first]
    assert store.count() == 6
    # The next prediction shares the Device only.
    third = run_transaction(store, parse_transaction(prediction_bundle(1), BASE))
    assert [r.created for r in third] == [False, True, True, True, True, True]
    assert store.count() == 11


def test_concurrent_identical_transactions_create_one_set(store):
    bundle = prediction_bundle()
    results: list[list[str]] = []
    start = threading.Barrier(4)

    def publish() -> None:
        start.wait()
        done = run_transaction(store, parse_transaction(bundle, BASE))
        results.append([r.stored.reference for r in done])

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(result == results[0] for result in results)
    assert store.count() == 6


def test_several_matches_fail_the_whole_transaction_with_412(store):
    add(
        store,
        observation("one"),
        observation("two", identifier=[{"system": "urn:test", "value": "one"}]),
    )
    entries = [
        Entry({"resourceType": "Device", "status": "active"}, None, None),
        Entry(
            observation("three"),
            None,
            parse_search("Observation", [("identifier", "urn:test|one")], paging=False),
        ),
    ]
    with pytest.raises(PreconditionFailed):
        run_transaction(store, entries)
    assert store.count("Device") == 0


def bundle_with(**changes) -> dict:
    bundle = prediction_bundle()
    entry = bundle["entry"][3]  # the Observation
    for path, value in changes.items():
        target = entry
        *parents, leaf = path.split(".")
        for key in parents:
            target = target[key]
        target[leaf] = value
    return bundle


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], BadRequest),
        ({"resourceType": "Patient"}, BadRequest),
        ({"resourceType": "Bundle", "type": "batch"}, BadRequest),
        ({"resourceType": "Bundle", "type": "transaction", "entry": None}, BadRequest),
        ({"resourceType": "Bundle", "type": "transaction", "entry": [1]}, BadRequest),
        (bundle_with(**{"request.method": "PUT"}), InvalidRequest),
        (bundle_with(**{"request.url": "Media"}), InvalidRequest),
        (bundle_with(**{"resource.resourceType": "Patient"}), InvalidRequest),
        (bundle_with(**{"resource.status": "nonsense"}), InvalidRequest),  # R4 value set
        (bundle_with(**{"resource.issued": "yesterday"}), InvalidRequest),  # not an instant
        (bundle_with(**{"resource.valueBoolean": True}), InvalidRequest),  # two value[x]
        (bundle_with(**{"resource.bodyStructure": {}}), InvalidRequest),  # not an R4 element
        (bundle_with(**{"request.ifNoneExist": "identifer=urn:x|1"}), BadRequest),
        (bundle_with(**{"request.ifNoneExist": "_count=1"}), BadRequest),
        (bundle_with(**{"request.ifNoneExist": ""}), BadRequest),
        (bundle_with(**{"request.ifNoneExist": None}), BadRequest),
        (bundle_with(fullUrl="urn:uuid:00000000-0000-4000-8000-000000000000"), InvalidRequest),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_what_is_no_valid_transaction_is_refused_before_anything_is_stored(store, body, error):
    with pytest.raises(error):
        run_transaction(store, parse_transaction(body, BASE))
    assert store.count() == 0


def test_parameters_are_documented_for_every_supported_type():
    assert set(PARAMETERS) == set(SUPPORTED_TYPES)
    assert set(SUPPORTED_TYPES) == {
        "Observation",
        "DiagnosticReport",
        "Media",
        "Device",
        "Provenance",
        "RiskAssessment",
    }
    assert "identifier" not in PARAMETERS["Provenance"]  # R4 Provenance has none
    assert PARAMETERS["Observation"]["date"].element == "effective"
    assert PARAMETERS["RiskAssessment"]["date"].element == "occurrence"


def test_the_prediction_hook_stores_its_resources_and_never_fails_a_prediction(store, tmp_path):
    recorder = PredictionRecorder(
        store, FileLinks("http://test.local", UrlSigner("k" * 32, 60)), MODEL_DIR
    )
    first, again = prediction_record(0), prediction_record(1, image=0)  # the same image twice
    stored = recorder(first)
    assert (stored.fhir_observation_id, stored.fhir_report_id) == (
        f"obs-{first.id}",
        f"report-{first.id}",
    )
    assert replace(stored, fhir_observation_id=None, fhir_report_id=None) == first
    media = store.read("Media", f"heatmap-{first.id}").json()
    assert media["content"]["url"] == f"http://test.local/static/result/{first.overlay_file}"
    second = recorder(again)
    observation = store.read("Observation", second.fhir_observation_id).json()
    assert observation["derivedFrom"] == [{"reference": f"Media/src-{first.id}"}]  # stored once
    assert store.read("Media", f"src-{again.id}") is None
    assert store.count("Device") == 1
    assert store.count() == 10  # 6, then 4: the Device and the image were there
    broken = PredictionRecorder(store, recorder.links, tmp_path)  # no model artifact there
    third = prediction_record(2)
    assert broken(third) == third  # logged; the prediction goes on without resources
    assert store.count() == 10
