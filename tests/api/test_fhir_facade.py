"""The FHIR facade over real HTTP (the live uvicorn server): transactions, read, search, errors.

Each test names its own patients and model artifact, so resources the rest of the suite
stores on the same server (every prediction stores its own) never enter its counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.riskassessment import RiskAssessment

from aistack.api.app import create_app
from aistack.config import Settings
from aistack.fhir import MediaLinks, ModelDescription, build_prediction_resources
from aistack.fhir.bundle import transaction_json
from aistack.fhir.codes import PREDICTION_SYSTEM
from aistack.fhir.risk import (
    ICU_PREDICTION_SYSTEM,
    PATIENT_VISIT_SYSTEM,
    TRAINING_DATA_SYSTEM,
    check_risk_assessment,
)
from aistack.fhir.search import PARAMETERS, SUPPORTED_TYPES
from aistack.runtime import Runtime
from aistack.store import PredictionRecord, PredictionStore
from tests.api.helpers import b64

FHIR = "/fhir/r4"
FHIR_JSON = "application/fhir+json"
RUN = uuid.uuid4().hex[:10]
"""Tells this module's patients from those of other runs on the same server."""

# FHIR R4 (4.0.1) CapabilityStatement elements, from its StructureDefinition.
R4_CAPABILITY = {
    "": "resourceType id meta implicitRules language text contained extension "
    "modifierExtension url version name title status experimental date publisher contact "
    "description useContext jurisdiction purpose copyright kind instantiates imports software "
    "implementation fhirVersion format patchFormat implementationGuide rest messaging document",
    "rest": "id extension modifierExtension mode documentation security resource interaction "
    "searchParam operation compartment",
    "security": "id extension modifierExtension cors service description",
    "resource": "id extension modifierExtension type profile supportedProfile documentation "
    "interaction versioning readHistory updateCreate conditionalCreate conditionalRead "
    "conditionalUpdate conditionalDelete referencePolicy searchInclude searchRevInclude "
    "searchParam operation",
    "searchParam": "id extension modifierExtension name definition type documentation",
    "interaction": "id extension modifierExtension code documentation",
    "software": "id extension modifierExtension name version releaseDate",
    "implementation": "id extension modifierExtension description url custodian",
}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ModelDescription:
    """A model artifact of this module's own: its Device is new to the server."""
    version_dir = tmp_path_factory.mktemp("model") / "7"
    version_dir.mkdir()
    (version_dir / "saved_model.pb").write_bytes(os.urandom(64))
    return ModelDescription("facade-test", 7, version_dir)


@pytest.fixture(scope="module")
def keys(live_server) -> dict[str, str]:
    return {
        role: live_server.create_key(f"fhir-{role}-{time.monotonic_ns()}", role)
        for role in ("predict", "read")
    }


def prediction_record(n: int, patient: str) -> PredictionRecord:
    return PredictionRecord.create(
        created_at=datetime(2024, 5, 1, 12, tzinfo=UTC) + timedelta(minutes=n),
        model_name="facade-test",
        model_version=7,
        input_sha256=hashlib.sha256(f"{RUN} {patient} {n}".encode()).hexdigest(),
        probabilities={"covid": 0.1, "normal": 0.8, "pneumonia_bac": 0.1},
        label="normal",
        covid_positive=False,
        threshold=0.65,
        latency_ms=5.0,
        endpoint="v2",
        image_file=f"{n}.png",
        overlay_file=f"{n}.jpg",
        patient_id=patient,
    )


def bundle_for(model: ModelDescription, n: int, patient: str) -> dict:
    links = MediaLinks(overlay_url=f"https://images.example.org/{RUN}/{n}.jpg")
    return build_prediction_resources(prediction_record(n, patient), model, links).bundle_json


def post_bundle(api: httpx.Client, bundle: dict) -> httpx.Response:
    return api.post(FHIR, json=bundle, headers={"content-type": FHIR_JSON})


def path_of(location: str, live_server) -> str:
    """``Type/id`` of an absolute ``.../fhir/r4/Type/id/_history/1`` location."""
    prefix = f"{live_server.url}{FHIR}/"
    assert location.startswith(prefix), location
    return location.removeprefix(prefix).split("/_history/")[0]


def as_stored(resource: dict, bundle: dict, paths: list[str]) -> dict:
    """``resource`` with references to Bundle entries (``urn:uuid``) as the stored ids."""
    text = json.dumps(resource)
    for entry, path in zip(bundle["entry"], paths, strict=True):
        text = text.replace(f'"{entry["fullUrl"]}"', f'"{path}"')
    return json.loads(text)


def search(api: httpx.Client, resource_type: str, **params) -> dict:
    answer = api.get(f"{FHIR}/{resource_type}", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(FHIR_JSON)
    return answer.json()


def outcome(answer: httpx.Response, status: int, issue: str, code: str) -> str:
    """Assert an OperationOutcome error; its diagnostics."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(FHIR_JSON)
    body = OperationOutcome.model_validate(answer.json()).model_dump(mode="json")
    (found,) = body["issue"]
    assert (found["severity"], found["code"]) == ("error", issue)
    assert found["details"]["coding"][0] == {"system": "urn:aistack:error", "code": code}
    assert answer.headers["x-request-id"]
    return found["diagnostics"]


# --- CapabilityStatement --------------------------------------------------------------------


def test_the_capability_statement_is_valid_r4_and_lists_exactly_what_is_served(live_server):
    answer = httpx.get(f"{live_server.url}{FHIR}/metadata")  # open: no key
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(FHIR_JSON)
    statement = answer.json()
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1" and statement["kind"] == "instance"
    assert statement["implementation"]["url"] == f"{live_server.url}{FHIR}"

    def only_r4(value: dict, element: str) -> None:
        assert set(value) <= set(R4_CAPABILITY[element].split()), (element, set(value))
        for key, item in value.items():
            for child in item if isinstance(item, list) else [item]:
                if isinstance(child, dict):
                    only_r4(child, key)

    only_r4(statement, "")
    (rest,) = statement["rest"]
    assert rest["interaction"] == [{"code": "transaction"}]
    assert "strict" in rest["documentation"]
    assert [r["type"] for r in rest["resource"]] == list(SUPPORTED_TYPES)
    for resource in rest["resource"]:
        assert [i["code"] for i in resource["interaction"]] == ["read", "search-type"]
        listed = {p["name"] for p in resource["searchParam"]}
        assert listed == {p for p in PARAMETERS[resource["type"]] if ":" not in p}
        assert resource["conditionalCreate"] is True
    (risk,) = [r for r in rest["resource"] if r["type"] == "RiskAssessment"]
    assert "ICU-admission prediction" in risk["documentation"]


# --- Transactions ---------------------------------------------------------------------------


def test_a_transaction_round_trip_and_its_retry_which_creates_nothing(api, live_server, model):
    bundle = bundle_for(model, 0, f"P-{RUN}-round")
    first = post_bundle(api, bundle)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith(FHIR_JSON)
    response = Bundle.model_validate(first.json()).model_dump(mode="json")
    assert response["type"] == "transaction-response"
    assert [e["response"]["status"] for e in response["entry"]] == ["201 Created"] * 6
    paths = [path_of(e["response"]["location"], live_server) for e in response["entry"]]
    assert [p.split("/")[0] for p in paths] == [
        e["resource"]["resourceType"] for e in bundle["entry"]
    ]
    device, source, heatmap, finding, report, provenance = paths  # the Bundle's order
    stored: dict[str, dict] = {}
    for path, sent in zip(paths, bundle["entry"], strict=True):
        answer = api.get(f"{FHIR}/{path}")
        assert answer.status_code == 200, answer.text
        assert answer.headers["etag"] == 'W/"1"' and answer.headers["last-modified"]
        stored[path] = body = answer.json()
        assert body.pop("id") == path.split("/")[1]
        meta = body.pop("meta")
        assert meta.pop("versionId") == "1" and meta.pop("lastUpdated")
        if meta:
            body["meta"] = meta
        assert body == as_stored(sent["resource"], bundle, paths)  # the content, as sent
    observation = Observation.model_validate(stored[finding]).model_dump(mode="json")
    assert observation["device"]["reference"] == device  # urn:uuid rewritten to stored ids
    assert observation["derivedFrom"] == [{"reference": source}]
    assert stored[report]["result"] == [{"reference": finding}]
    assert stored[report]["media"][0]["link"] == {"reference": heatmap}
    assert {t["reference"] for t in stored[provenance]["target"]} == {finding, report, heatmap}

    retry = post_bundle(api, bundle)
    assert retry.status_code == 200, retry.text
    assert [e["response"]["status"] for e in retry.json()["entry"]] == ["200 OK"] * 6
    assert [e["response"]["location"] for e in retry.json()["entry"]] == [
        e["response"]["location"] for e in first.json()["entry"]
    ]
    identifier = bundle["entry"][3]["resource"]["identifier"][0]["value"]
    found = search(api, "Observation", identifier=f"{PREDICTION_SYSTEM}|{identifier}")
    assert found["total"] == 1


def test_concurrent_retries_of_one_transaction_store_it_once(live_server, model):
    bundle = bundle_for(model, 1, f"P-{RUN}-race")
    answers: list[httpx.Response] = []
    start = threading.Barrier(4)

    def publish() -> None:
        with live_server.client() as client:
            start.wait()
            answers.append(post_bundle(client, bundle))

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 4
    locations = {tuple(e["response"]["location"] for e in a.json()["entry"]) for a in answers}
    assert len(locations) == 1
    with live_server.client() as client:
        found = search(client, "Observation", **{"subject:identifier": f"P-{RUN}-race"})
    assert found["total"] == 1


# --- Search ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def patient_with_seven(api, model) -> str:
    patient = f"P-{RUN}-seven"
    for n in range(10, 17):
        assert post_bundle(api, bundle_for(model, n, patient)).status_code == 200
    return patient


def test_paging_through_all_matches_by_the_links(api, live_server, patient_with_seven):
    params = {"subject:identifier": patient_with_seven, "_count": "3"}
    page = search(api, "Observation", **params)
    seen, sizes = [], []
    while True:
        Bundle.model_validate(page)
        assert page["type"] == "searchset" and page["total"] == 7
        entries = page.get("entry", [])
        sizes.append(len(entries))
        for entry in entries:
            assert (
                entry["fullUrl"] == f"{live_server.url}{FHIR}/Observation/{entry['resource']['id']}"
            )
            assert entry["search"] == {"mode": "match"}
        seen += [entry["resource"]["id"] for entry in entries]
        links = {link["relation"]: link["url"] for link in page["link"]}
        assert links["self"].startswith(f"{live_server.url}{FHIR}/Observation?")
        if "next" not in links:
            break
        page = api.get(links["next"]).json()
    assert sizes == [3, 3, 1]
    assert len(seen) == len(set(seen)) == 7  # no duplicates, no holes
    back = api.get(links["previous"]).json()
    assert [e["resource"]["id"] for e in back["entry"]] == seen[3:6]
    dates = [api.get(f"{FHIR}/Observation/{i}").json()["effectiveDateTime"] for i in seen]
    assert dates == sorted(dates)  # storage order


def test_count_bounds(api, patient_with_seven):
    subject = {"subject:identifier": patient_with_seven}
    only_total = search(api, "Observation", **subject, _count="0")
    assert only_total["total"] == 7 and "entry" not in only_total
    assert [link["relation"] for link in only_total["link"]] == ["self"]
    default = search(api, "DiagnosticReport", **subject)
    assert len(default["entry"]) == 7 and "_count=20" in default["link"][0]["url"]
    capped = search(api, "Observation", **subject, _count="5000")
    assert len(capped["entry"]) == 7 and "_count=100" in capped["link"][0]["url"]
    for bad in ("-1", "many"):
        outcome(
            api.get(f"{FHIR}/Observation", params={"_count": bad}), 400, "invalid", "bad_request"
        )


def test_code_date_and_identifier_search_combine(api, patient_with_seven):
    subject = {"subject:identifier": patient_with_seven}
    finding = "http://snomed.info/sct|118247008"
    assert search(api, "Observation", **subject, code=finding)["total"] == 7
    assert search(api, "Observation", **subject, code="118247008")["total"] == 7
    assert (
        search(api, "Observation", **subject, code="http://snomed.info/sct|17621005")["total"] == 0
    )
    # n = 10..16 were made at 12:10..12:16 UTC on 2024-05-01.
    assert search(api, "Observation", **subject, date="2024-05-01")["total"] == 7
    assert search(api, "Observation", **subject, date="lt2024-05-01T12:13:00Z")["total"] == 3
    assert search(api, "Observation", **subject, date="ge2024-05-01T14:13+02:00")["total"] == 4
    both_ends = [("date", "gt2024-05-01T12:11:00.000Z"), ("date", "le2024-05-01T12:14Z")]
    answer = api.get(
        f"{FHIR}/DiagnosticReport", params=[*subject.items(), *both_ends, ("_count", "50")]
    ).json()
    assert answer["total"] == 3  # 12:12, 12:13, 12:14
    assert search(api, "Observation", **subject, _lastUpdated="ge2024")["total"] == 7
    assert search(api, "Observation", **subject, _lastUpdated="lt2024")["total"] == 0


def test_search_by_literal_subject(api, model):
    bundle = bundle_for(model, 30, f"P-{RUN}-literal")
    observation = bundle["entry"][3]["resource"]
    observation["subject"] = {"reference": f"Patient/{RUN}", **observation["subject"]}
    assert post_bundle(api, bundle).status_code == 200
    for value in (f"Patient/{RUN}", RUN, f"Group/{RUN},Patient/{RUN}"):
        assert search(api, "Observation", subject=value)["total"] == 1, value
    assert search(api, "Observation", subject=f"Group/{RUN}")["total"] == 0


# --- Access ---------------------------------------------------------------------------------


def test_a_read_key_reads_and_searches_but_may_not_write(live_server, keys, model, api):
    answer = post_bundle(api, bundle_for(model, 40, f"P-{RUN}-access"))
    path = path_of(answer.json()["entry"][3]["response"]["location"], live_server)
    read_key = {"Authorization": f"Bearer {keys['read']}"}
    with httpx.Client(base_url=live_server.url, headers=read_key) as reader:
        assert reader.get(f"{FHIR}/{path}").status_code == 200
        found = search(reader, "Observation", **{"subject:identifier": f"P-{RUN}-access"})
        assert found["total"] == 1
        text = outcome(
            post_bundle(reader, {"resourceType": "Bundle"}), 403, "forbidden", "forbidden"
        )
        assert "may not write FHIR resources" in text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{FHIR}/Observation"),
        ("GET", f"{FHIR}/Device/x"),
        ("GET", f"{FHIR}/RiskAssessment"),
        ("GET", f"{FHIR}/RiskAssessment/risk-x"),
        ("POST", FHIR),
    ],
)
def test_no_key_or_a_bad_key_is_a_401_outcome_with_a_challenge(live_server, method, path):
    for headers in ({}, {"X-API-Key": "ask_000000000000_" + "A" * 43}):
        answer = httpx.request(method, f"{live_server.url}{path}", headers=headers)
        outcome(answer, 401, "login", "unauthorized")
        assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_predict_key_may_not_read_fhir_resources(live_server, keys):
    headers = {"Authorization": f"Bearer {keys['predict']}"}
    answer = httpx.get(f"{live_server.url}{FHIR}/Observation", headers=headers)
    assert "may not read FHIR resources" in outcome(answer, 403, "forbidden", "forbidden")


def test_auth_off_opens_every_fhir_route(tmp_path, model):
    """The app in process (no model is needed for FHIR) with AISTACK_AUTH=off."""
    app = create_app(Settings(var_dir=tmp_path, auth=False))
    client = TestClient(app)
    bundle = bundle_for(model, 50, f"P-{RUN}-open")
    assert client.post(FHIR, json=bundle).status_code == 200
    found = client.get(f"{FHIR}/Observation", params={"subject:identifier": f"P-{RUN}-open"})
    assert found.json()["total"] == 1
    assert client.get(f"{FHIR}/metadata").status_code == 200
    app.state.runtime.store.close()


# --- Errors ---------------------------------------------------------------------------------


def invalid_bundle(model: ModelDescription, **changes) -> dict:
    bundle = bundle_for(model, 60, f"P-{RUN}-invalid")
    bundle["entry"][3]["resource"].update(changes)
    return bundle


def test_errors_are_operation_outcomes_with_the_right_status(api, live_server, model):
    get = api.get
    outcome(
        get(f"{FHIR}/Observation", params={"subjet": "Patient/1"}), 400, "invalid", "bad_request"
    )
    outcome(
        get(f"{FHIR}/Observation", params={"date": "2023-02-29"}), 400, "invalid", "bad_request"
    )
    outcome(get(f"{FHIR}/Patient/1"), 404, "not-found", "not_found")
    outcome(get(f"{FHIR}/Patient"), 404, "not-found", "not_found")
    outcome(get(f"{FHIR}/Observation/no-such-id"), 404, "not-found", "not_found")
    outcome(get(f"{FHIR}/Observation/bad%20id"), 404, "not-found", "not_found")
    deleted = api.delete(f"{FHIR}/Observation")
    outcome(deleted, 405, "not-supported", "method_not_allowed")
    assert deleted.headers["allow"] == "GET, HEAD"
    as_text = api.post(FHIR, content=b"{}", headers={"content-type": "text/plain"})
    outcome(as_text, 415, "not-supported", "unsupported_media_type")
    not_json = api.post(FHIR, content=b"{", headers={"content-type": FHIR_JSON})
    outcome(not_json, 400, "invalid", "invalid_json")
    batch = post_bundle(api, {"resourceType": "Bundle", "type": "batch"})
    outcome(batch, 400, "invalid", "bad_request")
    nonsense = post_bundle(api, invalid_bundle(model, status="nonsense"))
    assert "Observation.status 'nonsense'" in outcome(nonsense, 422, "invalid", "invalid_request")
    r4b_only = post_bundle(api, invalid_bundle(model, bodyStructure={"reference": "X/1"}))
    outcome(r4b_only, 422, "invalid", "invalid_request")
    found = search(api, "Observation", **{"subject:identifier": f"P-{RUN}-invalid"})
    assert found["total"] == 0  # nothing of a refused transaction stays


def test_several_matches_for_if_none_exist_is_a_412(api, model):
    twins = []
    for n in (70, 71):  # two Observations that share an identifier
        bundle = bundle_for(model, n, f"P-{RUN}-twins")
        observation = bundle["entry"][3]
        observation["resource"]["identifier"].append({"system": "urn:test", "value": RUN})
        assert post_bundle(api, bundle).status_code == 200
        twins.append(bundle)
    twins[0]["entry"][3]["request"]["ifNoneExist"] = f"identifier=urn:test|{RUN}"
    answer = post_bundle(api, twins[0])
    assert "matches several" in outcome(answer, 412, "multiple-matches", "precondition_failed")


def test_a_body_over_the_limit_is_an_outcome_too(api):
    body = b" " * (21 * 1024 * 1024)
    answer = api.post(FHIR, content=body, headers={"content-type": FHIR_JSON})
    outcome(answer, 413, "too-long", "payload_too_large")


# --- The prediction hook --------------------------------------------------------------------


def test_a_prediction_stores_its_resources_and_names_them(api, live_server, sample_images):
    answer = api.post(
        "/api/v2/xray/predictions", json={"image_b64": b64(sample_images["covid"].read_bytes())}
    )
    assert answer.status_code == 201, answer.text
    prediction = answer.json()
    links = prediction["fhir"]
    base = f"{live_server.url}{FHIR}"
    assert links["observation"] == {
        "id": f"obs-{prediction['id']}",
        "url": f"{base}/Observation/obs-{prediction['id']}",
    }
    assert links["diagnostic_report"] == {
        "id": f"report-{prediction['id']}",
        "url": f"{base}/DiagnosticReport/report-{prediction['id']}",
    }
    observation = api.get(links["observation"]["url"]).json()
    assert observation["identifier"] == [{"system": PREDICTION_SYSTEM, "value": prediction["id"]}]
    assert observation["issued"].startswith(prediction["created_at"][:19])
    report = api.get(links["diagnostic_report"]["url"]).json()
    assert report["result"] == [{"reference": f"Observation/obs-{prediction['id']}"}]
    read_back = api.get(f"/api/v2/xray/predictions/{prediction['id']}").json()
    assert read_back["fhir"] == links
    v1 = api.post(
        "/covid19/api/v1/predict/", data={"b64": b64(sample_images["normal"].read_bytes())}
    )
    assert set(v1.json()) == {
        "model_name",
        "X-Ray_Classification_Result",
        "X-Ray_Classfication_Raw_Result",
    }


def test_what_the_hook_stores_is_valid_r4_and_shares_the_device_and_a_repeated_image(
    api, live_server, sample_images
):
    """The hook skips fhir.resources for speed; what it stored must pass it all the same."""
    data = sample_images["pneumonia_bac"].read_bytes()
    first, again = (
        api.post("/api/v2/xray/predictions", json={"image_b64": b64(data)}).json() for _ in range(2)
    )
    stored = {}
    for prediction in (first, again):
        found = search(api, "Provenance", _tag=f"{PREDICTION_SYSTEM}|{prediction['id']}")
        (provenance,) = [entry["resource"] for entry in found["entry"]]
        references = [t["reference"] for t in provenance["target"]]
        references += [provenance["agent"][0]["who"]["reference"]]
        observation = api.get(prediction["fhir"]["observation"]["url"]).json()
        references += [observation["device"]["reference"], *observation_sources(observation)]
        resources = {ref: api.get(f"{FHIR}/{ref}").json() for ref in references}
        for resource in [provenance, *resources.values()]:
            model = get_fhir_model_class(resource["resourceType"])
            model.model_validate(resource)  # raises when not valid R4
        stored[prediction["id"]] = set(resources)
    shared = stored[first["id"]] & stored[again["id"]]
    assert {ref.split("/")[0] for ref in shared} == {"Device", "Media"}  # model and the image
    assert len(shared) == 2


def observation_sources(observation: dict) -> list[str]:
    return [d["reference"] for d in observation.get("derivedFrom", []) if "reference" in d]


def test_a_prediction_stored_before_names_no_resources(api, live_server):
    record = replace(prediction_record(80, f"P-{RUN}-old"), model_name="covid19", model_version=1)
    store = PredictionStore(live_server.database_url)
    try:
        store.add(record)
    finally:
        store.close()
    answer = api.get(f"/api/v2/xray/predictions/{record.id}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["fhir"] is None


def test_stored_media_point_at_unexpiring_urls(api, live_server, sample_images):
    data = sample_images["normal"].read_bytes()
    answer = api.post("/api/v2/xray/predictions", json={"image_b64": b64(data)})
    assert answer.status_code == 201, answer.text
    prediction = answer.json()
    found = search(api, "Media", identifier=f"{PREDICTION_SYSTEM}|{prediction['id']}")
    (heatmap,) = [entry["resource"] for entry in found["entry"]]
    url = heatmap["content"]["url"]
    assert url == f"{live_server.url}/static/result/{prediction['id']}.jpg"  # no token
    assert api.get(url).status_code == 200  # a key reads it
    assert httpx.get(url).status_code == 401


# --- The ICU prediction's RiskAssessment ----------------------------------------------------

ICU_PREDICT = "/icu/api/v1/predict"
ICU_ROW = {"AGE_PERCENTIL": "70th", "RESPIRATORY_RATE_MAX": -0.2, "PCR_MEDIAN": -0.85}


@pytest.fixture(scope="module")
def icu_answer(live_server, keys) -> dict:
    """One ICU prediction, asked with a predict key, for a visit of this module's own."""
    row = {"PATIENT_VISIT_IDENTIFIER": f"V-{RUN}", **ICU_ROW}
    headers = {"Authorization": f"Bearer {keys['predict']}"}
    answer = httpx.post(f"{live_server.url}{ICU_PREDICT}", json=row, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def reader(live_server, keys) -> httpx.Client:
    return httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {keys['read']}"}
    )


def test_an_icu_prediction_is_stored_as_answered_and_a_read_key_reads_it(
    live_server, keys, icu_answer
):
    sent = icu_answer["fhir"]
    with reader(live_server, keys) as client:
        answer = client.get(f"{FHIR}/RiskAssessment/{sent['id']}")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(FHIR_JSON)
    assert answer.headers["etag"] == 'W/"1"' and answer.headers["last-modified"]
    stored = answer.json()
    RiskAssessment.model_validate(stored)  # valid R4 (R4B's model: RiskAssessment is the same)
    check_risk_assessment(stored)  # and the project's R4 and coding checks
    meta = dict(stored["meta"])
    assert meta.pop("versionId") == "1"
    assert datetime.fromisoformat(meta.pop("lastUpdated")) >= datetime.fromisoformat(
        sent["occurrenceDateTime"]
    )
    assert {**stored, "meta": meta} == sent  # the answer's own, plus the store's meta


def test_an_icu_prediction_is_found_by_its_visit_and_its_identifier(live_server, keys, icu_answer):
    sent = icu_answer["fhir"]
    (identifier,) = sent["identifier"]
    assert identifier["system"] == ICU_PREDICTION_SYSTEM
    assert sent["id"] == f"risk-{identifier['value']}"
    visit = f"V-{RUN}"
    with reader(live_server, keys) as client:
        for params in (
            {"subject:identifier": visit},
            {"subject:identifier": f"{PATIENT_VISIT_SYSTEM}|{visit}"},
            {"identifier": f"{ICU_PREDICTION_SYSTEM}|{identifier['value']}"},
            {"subject:identifier": visit, "date": f"ge{sent['occurrenceDateTime'][:10]}"},
        ):
            found = search(client, "RiskAssessment", **params)
            Bundle.model_validate(found)
            assert found["total"] == 1, params
            (entry,) = found["entry"]
            assert entry["fullUrl"] == f"{live_server.url}{FHIR}/RiskAssessment/{sent['id']}"
            assert entry["resource"]["id"] == sent["id"]
        assert search(client, "RiskAssessment", **{"subject:identifier": "V-none"})["total"] == 0
        # What it contains is part of it, not a resource of its own.
        assert search(client, "Observation", **{"subject:identifier": visit})["total"] == 0
        device = {
            "identifier": f"{TRAINING_DATA_SYSTEM}|{icu_answer['model']['training_data_hash']}"
        }
        assert search(client, "Device", **device)["total"] == 0


def test_an_icu_batch_stores_no_risk_assessment(live_server, keys):
    visit = f"B-{RUN}"
    with reader(live_server, keys) as client:
        before = search(client, "RiskAssessment", _count="0")["total"]
        headers = {"Authorization": f"Bearer {keys['predict']}"}
        rows = [{"PATIENT_VISIT_IDENTIFIER": visit, **ICU_ROW}, {"GENDER": 1}]
        batch = httpx.post(
            f"{live_server.url}{ICU_PREDICT}/batch", json=rows, headers=headers, timeout=60
        )
        assert batch.status_code == 200 and batch.json()["count"] == 2, batch.text
        assert search(client, "RiskAssessment", **{"subject:identifier": visit})["total"] == 0
        assert search(client, "RiskAssessment", _count="0")["total"] == before


def test_a_predict_key_or_no_key_may_not_read_a_risk_assessment(live_server, keys, icu_answer):
    url = f"{live_server.url}{FHIR}/RiskAssessment/{icu_answer['fhir']['id']}"
    outcome(httpx.get(url), 401, "login", "unauthorized")
    predict_key = {"Authorization": f"Bearer {keys['predict']}"}
    outcome(httpx.get(url, headers=predict_key), 403, "forbidden", "forbidden")


def test_a_publisher_resending_a_stored_risk_assessment_creates_nothing(api, icu_answer):
    """What the IRIS runtime's publisher sends: a conditional create on the identifier."""
    resent = transaction_json([icu_answer["fhir"]])
    answer = post_bundle(api, resent)
    assert answer.status_code == 200, answer.text
    assert [e["response"]["status"] for e in answer.json()["entry"]] == ["200 OK"]
    identifier = icu_answer["fhir"]["identifier"][0]["value"]
    found = search(api, "RiskAssessment", identifier=f"{ICU_PREDICTION_SYSTEM}|{identifier}")
    assert found["total"] == 1


def test_the_runtimes_hook_stores_a_risk_assessment_once_however_often_it_comes(
    tmp_path, icu_answer
):
    """In process: the hook the standalone runtime gives the ICU service."""
    runtime = Runtime(Settings(var_dir=tmp_path, auth=False))
    try:
        resource = icu_answer["fhir"]
        for _ in range(3):
            runtime.record_risk(resource)
        assert runtime.fhir_store.count() == runtime.fhir_store.count("RiskAssessment") == 1
        stored = runtime.fhir_store.read("RiskAssessment", resource["id"]).json()
        assert stored["identifier"] == resource["identifier"]
    finally:
        runtime.store.close()
