"""What the resource store writes, row by row, on both of its insert paths; the statements a
conditional create shares between queries of one shape; the prediction hook's per-version
cache of the model's description.

The store inserts a transaction's resources with one ``INSERT ... RETURNING`` where the dialect
has it (SQLite) and one INSERT per row where it does not (sqlalchemy-iris): every storing test
runs on both, against a real SQLite file, and expects the same rows, written out here.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine, make_url

from aistack.auth.signing import UrlSigner
from aistack.errors import InvalidRequest
from aistack.fhir.resource_store import (
    _INSERT_RESOURCE,
    _INSERT_TOKENS,
    _TAKE_LOCK,
    FhirResourceRow,
    FhirTokenRow,
    FhirWriteLockRow,
    ResourceStore,
    StoredResource,
    _matching,
    _shape,
)
from aistack.fhir.search import parse_search
from aistack.fhir.transaction import PredictionRecorder, conditional, run_transaction
from aistack.store import PredictionRecord, PredictionStore
from aistack.xray.links import FileLinks
from tests.conftest import MODEL_DIR
from tests.unit.records import prediction_record

BASE = "http://test.local/fhir/r4"
NOW = datetime(2024, 6, 1, 8, 30, 15, 123456, tzinfo=UTC)
STORED_AT = datetime(2024, 6, 1, 8, 30, 15, 123000, tzinfo=UTC)  # NOW at millisecond precision
PREDICTION = "urn:aistack:prediction"
INPUT = "urn:aistack:input-sha256"
ARTIFACT = "urn:aistack:model-artifact-sha256"
SNOMED = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
LOINC = "http://loinc.org"


@pytest.fixture(params=[True, False], ids=["insert-returning", "row-by-row"])
def engine(request, tmp_path: Path):
    predictions = PredictionStore(f"sqlite:///{tmp_path / 'aistack.db'}")
    predictions.create_schema()
    if not request.param:
        # The path a dialect without INSERT ... RETURNING of many rows takes (sqlalchemy-iris):
        # the same real SQLite database, told what that dialect says of itself.
        predictions.engine.dialect.insert_executemany_returning = False
    yield predictions.engine
    predictions.close()


@pytest.fixture
def store(engine: Engine) -> ResourceStore:
    resources = ResourceStore(engine, BASE)
    resources.create_schema()
    return resources


@pytest.fixture
def recorder(store: ResourceStore) -> PredictionRecorder:
    return PredictionRecorder(
        store, FileLinks("http://test.local", UrlSigner(b"k" * 32, 60)), MODEL_DIR
    )


def record(n: int, image: int | None = None, version: int = 1) -> PredictionRecord:
    """Prediction ``n`` (id ``n`` in hex) of image ``image`` (default its own), for patient P-1."""
    made = prediction_record(n, image=image)
    return replace(made, id=f"{n:032x}", model_version=version)


def observation(name: str, **elements: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": name,
        "identifier": [{"system": "urn:test", "value": name}],
        "status": "final",
        **elements,
    }


def resource_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """Every resource row but its JSON, in storage order."""
    table = FhirResourceRow.__table__
    with engine.connect() as connection:
        rows = connection.execute(select(table).order_by(table.c.seq))
        return [
            tuple(value for key, value in row._mapping.items() if key != "content") for row in rows
        ]


def token_rows(engine: Engine) -> list[tuple[Any, ...]]:
    table = FhirTokenRow.__table__
    with engine.connect() as connection:
        rows = connection.execute(select(table).order_by(table.c.seq))
        return [tuple(row)[1:] for row in rows]  # the token's own seq is an internal key


def stored_json(engine: Engine) -> dict[str, str]:
    table = FhirResourceRow.__table__
    with engine.connect() as connection:
        rows = connection.execute(select(table.c.resource_type, table.c.id, table.c.content))
        return {f"{kind}/{id_}": content for kind, id_, content in rows}


def writes(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(FhirWriteLockRow.__table__.c.writes))


# --- What is stored -------------------------------------------------------------------------


def test_the_hook_stores_these_rows_and_tokens_and_names_what_it_stored(recorder, engine):
    first, again = record(0), record(1, image=0)  # the same image twice
    device = f"device-{recorder.model(1).artifact_sha256[:32]}"
    digest, image = recorder.model(1).artifact_sha256, first.input_sha256
    one, two = first.id, again.id
    done = run_transaction(recorder.store, recorder.entries(first), NOW)
    assert [(r.created, r.stored.reference) for r in done] == [
        (True, f"Device/{device}"),
        (True, f"Media/src-{one}"),
        (True, f"Media/heatmap-{one}"),
        (True, f"Observation/obs-{one}"),
        (True, f"DiagnosticReport/report-{one}"),
        (True, f"Provenance/prov-{one}"),
    ]
    assert all(r.stored.version_id == 1 and r.stored.last_updated == STORED_AT for r in done)
    done = run_transaction(recorder.store, recorder.entries(again), NOW)
    assert [(r.created, r.stored.reference) for r in done] == [
        (False, f"Device/{device}"),
        (False, f"Media/src-{one}"),  # found by the image's digest: its first prediction's
        (True, f"Media/heatmap-{two}"),
        (True, f"Observation/obs-{two}"),
        (True, f"DiagnosticReport/report-{two}"),
        (True, f"Provenance/prov-{two}"),
    ]
    effective = [  # the Observation's and the report's effectiveDateTime, to the millisecond
        (datetime(2024, 5, 1, 12, n, tzinfo=UTC), datetime(2024, 5, 1, 12, n, 0, 1000, tzinfo=UTC))
        for n in (0, 1)
    ]
    assert resource_rows(engine) == [
        (1, "Device", device, 1, STORED_AT, None, None, None),
        (2, "Media", f"src-{one}", 1, STORED_AT, None, None, None),
        (3, "Media", f"heatmap-{one}", 1, STORED_AT, None, None, None),
        (4, "Observation", f"obs-{one}", 1, STORED_AT, None, *effective[0]),
        (5, "DiagnosticReport", f"report-{one}", 1, STORED_AT, None, *effective[0]),
        (6, "Provenance", f"prov-{one}", 1, STORED_AT, None, None, None),
        (7, "Media", f"heatmap-{two}", 1, STORED_AT, None, None, None),
        (8, "Observation", f"obs-{two}", 1, STORED_AT, None, *effective[1]),
        (9, "DiagnosticReport", f"report-{two}", 1, STORED_AT, None, *effective[1]),
        (10, "Provenance", f"prov-{two}", 1, STORED_AT, None, None, None),
    ]
    assert token_rows(engine) == [
        (1, "Device", "identifier", ARTIFACT, digest),
        (2, "Media", "identifier", INPUT, image),
        (3, "Media", "identifier", PREDICTION, one),
        (4, "Observation", "identifier", PREDICTION, one),
        (4, "Observation", "code", SNOMED, "118247008"),
        (4, "Observation", "code", DCM, "121071"),
        (4, "Observation", "subject:identifier", None, "P-1"),
        (5, "DiagnosticReport", "identifier", PREDICTION, one),
        (5, "DiagnosticReport", "code", LOINC, "18748-4"),
        (5, "DiagnosticReport", "subject:identifier", None, "P-1"),
        (6, "Provenance", "_tag", PREDICTION, one),
        (7, "Media", "identifier", PREDICTION, two),
        (8, "Observation", "identifier", PREDICTION, two),
        (8, "Observation", "code", SNOMED, "118247008"),
        (8, "Observation", "code", DCM, "121071"),
        (8, "Observation", "subject:identifier", None, "P-1"),
        (9, "DiagnosticReport", "identifier", PREDICTION, two),
        (9, "DiagnosticReport", "code", LOINC, "18748-4"),
        (9, "DiagnosticReport", "subject:identifier", None, "P-1"),
        (10, "Provenance", "_tag", PREDICTION, two),
    ]
    assert writes(engine) == 2  # each transaction took the lock row


def test_the_stored_json_is_the_built_one_with_its_id_and_meta_compact(recorder, engine):
    first, again = record(0), record(1, image=0)
    # The second prediction's image was stored with the first: what refers to it, refers there.
    moved = (f'"Media/src-{again.id}"', f'"Media/src-{first.id}"')
    built = {
        f"{r.resource['resourceType']}/{r.resource['id']}": r.resource
        for r in [*recorder.entries(first), *recorder.entries(again)]
    }
    built = {key: json.loads(json.dumps(value).replace(*moved)) for key, value in built.items()}
    run_transaction(recorder.store, recorder.entries(first), NOW)
    run_transaction(recorder.store, recorder.entries(again), NOW)
    stored = stored_json(engine)
    assert len(stored) == 10
    for reference, content in stored.items():
        expected = built[reference]
        expected["meta"] = {
            **expected.get("meta", {}),
            "versionId": "1",
            "lastUpdated": "2024-06-01T08:30:15.123Z",
        }
        assert json.loads(content) == expected, reference
        compact = json.dumps(json.loads(content), ensure_ascii=False, separators=(",", ":"))
        assert content == compact and content.startswith('{"resourceType":')


def test_seqs_follow_the_order_given_and_each_token_row_its_resource(store, engine):
    names = ["e", "a", "d", "b", "c"]  # not the order of the ids
    resources = [
        observation(name, subject={"reference": f"{BASE}/Patient/{name}"}) for name in names
    ]
    inserts: list[str] = []

    def count(_connection, _cursor, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO fhir_resources"):
            inserts.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with store.writing() as writer:
            created = writer.create_all(resources, NOW)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    if engine.dialect.insert_executemany_returning:
        assert len(inserts) == 1 and "RETURNING" in inserts[0]
    else:
        assert len(inserts) == 5 and not any("RETURNING" in sql for sql in inserts)
    assert [stored.id for stored in created] == names
    assert all(isinstance(stored, StoredResource) for stored in created)
    assert [row[:3] for row in resource_rows(engine)] == [
        (seq, "Observation", name) for seq, name in enumerate(names, 1)
    ]
    assert [row[5] for row in resource_rows(engine)] == [f"Patient/{name}" for name in names]
    assert token_rows(engine) == [
        (seq, "Observation", "identifier", "urn:test", name) for seq, name in enumerate(names, 1)
    ]
    everything = store.search(parse_search("Observation", [("_count", "100")], BASE))
    assert [stored.id for stored in everything.resources] == names  # storage order


def test_a_taken_id_is_refused_and_the_whole_transaction_with_it(store):
    with store.writing() as writer:
        writer.create(observation("x"), NOW)
    taken = re.escape("an id is taken already (one of Observation/y, Observation/x)")
    with pytest.raises(InvalidRequest, match=taken), store.writing() as writer:
        writer.create_all([observation("y"), observation("x")], NOW)
    assert store.count() == 1 and store.read("Observation", "y") is None


def test_concurrent_predictions_each_store_their_own_and_share_the_device(recorder, engine):
    records = [record(n, image=n % 3) for n in range(24)]  # 3 images among 24 predictions
    start = threading.Barrier(4)
    named: list[PredictionRecord] = []

    def predict(batch: list[PredictionRecord]) -> None:
        start.wait()
        named.extend(recorder(one) for one in batch)

    threads = [threading.Thread(target=predict, args=(records[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.fhir_observation_id for r in named) == sorted(f"obs-{r.id}" for r in records)
    store = recorder.store
    assert (store.count("Device"), store.count("Media"), store.count("Observation")) == (1, 27, 24)
    assert writes(engine) == 24


# --- Conditional creates: one statement per query shape -------------------------------------


def test_queries_of_one_shape_share_a_statement_and_each_finds_its_own(store):
    with store.writing() as writer:
        writer.create_all([observation(name) for name in "abcde"], NOW)
    _matching.cache_clear()
    with store.writing() as writer:
        found = [
            writer.matches(conditional("Observation", f"identifier=urn:test|{name}"))
            for name in "abcde"
        ]
        assert writer.matches(conditional("Observation", "identifier=urn:test|z")) == []
    assert [[stored.id for stored in matches] for matches in found] == [[n] for n in "abcde"]
    info = _matching.cache_info()
    assert (info.currsize, info.misses, info.hits) == (1, 1, 5)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("identifier=urn:test|a", "a"),
        ("identifier=a", "a"),  # any system
        ("identifier=|bare", "d"),  # no system
        ("identifier=urn:test|", "abce"),  # any value of the system
        ("identifier=urn:test|a,urn:test|b,|bare", "abd"),
        ("identifier=urn:test|a&code=http://snomed.info/sct|118247008", "a"),
        ("code=118247008&subject=Patient/p1", "a"),
        ("_id=a,b,missing", "ab"),
        ("subject=p1", "ae"),  # a bare id: any type the subject may have
        (f"subject={BASE}/Patient/p2", "b"),
        ("subject:identifier=urn:pid|P-1", "c"),
        ("_tag=urn:tag|t", "b"),
        ("date=2024-05", "d"),  # dates are not shaped: the statement is built for the query
        ("_lastUpdated=ge2024-06-01&identifier=a,b", "ab"),
    ],
)
def test_a_conditional_create_finds_what_a_search_finds(store, query, expected):
    code = {"coding": [{"system": SNOMED, "code": "118247008"}]}
    tagged = {"tag": [{"system": "urn:tag", "code": "t"}]}
    logical = {"identifier": {"system": "urn:pid", "value": "P-1"}}
    with store.writing() as writer:
        writer.create_all(
            [
                observation("a", code=code, subject={"reference": "Patient/p1"}),
                observation("b", subject={"reference": "Patient/p2"}, meta=tagged),
                observation("c", code=code, subject=logical),
                {**observation("d"), "identifier": [{"value": "bare"}]}
                | {"effectiveDateTime": "2024-05-03"},
                observation("e", subject={"reference": "Patient/p1"}, effectiveDateTime="2023"),
            ],
            NOW,
        )
    condition = conditional("Observation", query, BASE)
    with store.writing() as writer:
        found = [stored.id for stored in writer.matches(condition, limit=100)]
    assert found == list(expected)
    searched = store.search(replace(condition, count=100))
    assert [stored.id for stored in searched.resources] == found


def test_the_statements_compile_for_iris():
    pytest.importorskip("sqlalchemy_iris", reason="sqlalchemy-iris is a dev dependency")
    iris = make_url("iris://user:pwd@localhost:1972/USER").get_dialect()()
    assert not iris.insert_executemany_returning  # so the store inserts row by row there
    shape, values = _shape(conditional("Device", f"identifier={ARTIFACT}|abc"))
    assert values == {"v0": "abc", "v1": ARTIFACT}
    compiled = _matching(shape, 2).compile(dialect=iris)
    match = str(compiled)
    assert match.startswith("SELECT TOP %s fhir_resources.resource_type, fhir_resources.id")
    assert "LIMIT" not in match and "fhir_tokens.code = %s AND fhir_tokens.system = %s" in match
    assert {"v0", "v1"} <= set(compiled.params) and 2 in compiled.params.values()
    insert = str(_INSERT_RESOURCE.compile(dialect=iris))
    assert insert.startswith("INSERT INTO fhir_resources (") and "RETURNING" not in insert
    assert str(_INSERT_TOKENS.compile(dialect=iris)).startswith("INSERT INTO fhir_tokens (")
    lock = str(_TAKE_LOCK.compile(dialect=iris))
    assert lock.startswith("UPDATE fhir_write_lock SET writes=(fhir_write_lock.writes + %s)")


# --- The hook's model description -----------------------------------------------------------


@pytest.fixture
def two_versions(tmp_path: Path) -> Path:
    """``<tmp>/covid19`` with version 1 and a retrained version 2 (one weight changed)."""
    models = tmp_path / "covid19"
    shutil.copytree(MODEL_DIR / "1", models / "1")
    shutil.copytree(MODEL_DIR / "1", models / "2")
    flip_a_weight(models / "2")
    return models


def flip_a_weight(version_dir: Path) -> None:
    weights = version_dir / "variables" / "variables.data-00000-of-00001"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))


def device_of(store: ResourceStore, observation_id: str) -> dict[str, Any]:
    reference = store.read("Observation", observation_id).json()["device"]["reference"]
    return store.read(*reference.split("/")).json()


def test_a_new_model_version_is_never_given_the_device_of_another(store, two_versions):
    recorder = PredictionRecorder(
        store, FileLinks("http://test.local", UrlSigner(b"k" * 32, 60)), two_versions
    )
    recorder.warm(1)
    first = recorder(record(0, version=1))
    second = recorder(record(1, version=2))
    again = recorder(record(2, version=1))
    one, two = (device_of(store, r.fhir_observation_id) for r in (first, second))
    assert one["identifier"] == [{"system": ARTIFACT, "value": recorder.model(1).artifact_sha256}]
    assert two["identifier"] == [{"system": ARTIFACT, "value": recorder.model(2).artifact_sha256}]
    assert one["id"] != two["id"] and one["version"][0]["value"] == "1"
    assert two["version"][0]["value"] == "2"
    assert device_of(store, again.fhir_observation_id)["id"] == one["id"]
    assert store.count("Device") == 2
    # Another name for the same artifact is described by that name (the stored Device is
    # still the one found by the artifact's digest: a conditional create).
    device = recorder.entries(replace(record(3, version=2), model_name="chest"))[0].resource
    assert device["deviceName"][0] == {"name": "chest", "type": "model-name"}
    assert device["identifier"] == two["identifier"]


def test_a_version_loaded_again_is_digested_again(store, two_versions):
    recorder = PredictionRecorder(
        store, FileLinks("http://test.local", UrlSigner(b"k" * 32, 60)), two_versions
    )
    recorder.warm(1)
    before = device_of(store, recorder(record(0)).fhir_observation_id)["id"]
    flip_a_weight(two_versions / "1")  # retrained in place
    # Until the version is loaded again, its Device is the artifact that was loaded.
    assert device_of(store, recorder(record(1)).fhir_observation_id)["id"] == before
    recorder.warm(1)
    after = device_of(store, recorder(record(2)).fhir_observation_id)["id"]
    assert after != before and store.count("Device") == 2


def test_a_version_without_an_artifact_stores_nothing_and_is_not_remembered(store, tmp_path):
    models = tmp_path / "covid19"
    recorder = PredictionRecorder(
        store, FileLinks("http://test.local", UrlSigner(b"k" * 32, 60)), models
    )
    recorder.warm(1)  # logged, not raised
    plain = record(0)
    assert recorder(plain) == plain and store.count() == 0
    shutil.copytree(MODEL_DIR / "1", models / "1")  # the artifact arrives
    assert recorder(record(1)).fhir_observation_id == f"obs-{record(1).id}"
