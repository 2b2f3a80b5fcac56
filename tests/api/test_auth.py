"""Authentication and authorization over the real server: keys, roles, files, budgets."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest
import requests

from aistack.auth.keys import KeyStore
from aistack.bench.local_server import LocalServer, start_local_server
from aistack.store import PredictionStore
from tests.api.helpers import b64
from tests.conftest import MODEL_DIR

V1 = "/covid19/api/v1/predict/"
V1_HEATMAP = "/covid19/api/v1/predict/heatmap"
V2 = "/api/v2/xray/predictions"
PUBLIC_BASE = "https://xray.example.org"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


@pytest.fixture(scope="module")
def keys(live_server: LocalServer) -> dict[str, str]:
    return {
        role: live_server.create_key(f"{role}-{time.monotonic_ns()}", role)
        for role in ("predict", "read", "admin")
    }


@pytest.fixture(scope="module")
def second_predict_key(live_server: LocalServer) -> str:
    return live_server.create_key(f"other-{time.monotonic_ns()}", "predict")


@pytest.fixture(scope="module")
def image(sample_images) -> bytes:
    return sample_images["normal"].read_bytes()


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", V1), ("POST", V1_HEATMAP), ("POST", V2), ("GET", V2), ("GET", f"{V2}/{'a' * 32}")],
)
def test_no_key_is_a_401_with_a_challenge(live_server, method, path):
    response = httpx.request(method, f"{live_server.url}{path}")
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_an_unknown_key_is_a_401_saying_invalid_token(live_server):
    response = httpx.get(
        f"{live_server.url}{V2}", headers=bearer("ask_" + "0" * 12 + "_" + "A" * 43)
    )
    assert_error(response, 401, "unauthorized")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_both_header_forms_are_accepted(live_server, keys):
    for headers in (bearer(keys["read"]), {"X-API-Key": keys["read"]}):
        assert httpx.get(f"{live_server.url}{V2}", headers=headers).status_code == 200


def test_health_page_and_docs_stay_open(live_server):
    for path in ("/healthz", "/readyz", "/", "/docs", "/redoc", "/openapi.json", "/favicon.ico"):
        assert httpx.get(f"{live_server.url}{path}").status_code == 200, path
    assert httpx.get(f"{live_server.url}/covid19/api/v1/healthcheck").status_code == 200


def test_a_read_key_may_not_predict(live_server, keys, image):
    response = httpx.post(
        f"{live_server.url}{V2}", headers=bearer(keys["read"]), json={"image_b64": b64(image)}
    )
    assert_error(response, 403, "forbidden")
    assert "may not ask for predictions" in response.json()["error"]["message"]


def test_a_predict_key_reads_its_own_predictions_only(live_server, keys, second_predict_key, image):
    mine = httpx.post(
        f"{live_server.url}{V2}",
        headers=bearer(keys["predict"]),
        json={"image_b64": b64(image), "heatmap": True},
    ).json()
    own = httpx.get(f"{live_server.url}{V2}/{mine['id']}", headers=bearer(keys["predict"]))
    assert own.status_code == 200 and own.json()["id"] == mine["id"]
    other = httpx.get(f"{live_server.url}{V2}/{mine['id']}", headers=bearer(second_predict_key))
    assert_error(other, 404, "not_found")
    listed = httpx.get(f"{live_server.url}{V2}", headers=bearer(second_predict_key)).json()
    assert mine["id"] not in {p["id"] for p in listed}
    by_reader = httpx.get(f"{live_server.url}{V2}/{mine['id']}", headers=bearer(keys["read"]))
    assert by_reader.status_code == 200

    unsigned = mine["overlay_url"].split("?")[0]
    assert httpx.get(unsigned).status_code == 401
    assert httpx.get(unsigned, headers=bearer(keys["predict"])).status_code == 200
    assert httpx.get(unsigned, headers=bearer(keys["read"])).status_code == 200
    assert_error(httpx.get(unsigned, headers=bearer(second_predict_key)), 404, "not_found")


def test_stored_files_need_a_valid_signature_and_are_not_sniffed(live_server, api, image):
    body = api.post(V2, json={"image_b64": b64(image)}).json()
    signed = httpx.get(body["image_url"])
    assert signed.status_code == 200 and signed.content == image
    assert signed.headers["x-content-type-options"] == "nosniff"
    assert signed.headers["content-type"] == "image/jpeg"
    forged = body["image_url"].replace("token=", "token=A")
    assert_error(httpx.get(forged), 401, "unauthorized")
    swapped = body["image_url"].replace("/static/source/", "/static/result/")
    assert httpx.get(swapped).status_code == 401  # a token is bound to one file


def test_revoked_key_is_refused_within_the_cache_time(live_server, image):
    name = f"revoke-me-{time.monotonic_ns()}"
    key = live_server.create_key(name, "predict")
    assert httpx.get(f"{live_server.url}{V2}", headers=bearer(key)).status_code == 200
    store = PredictionStore(live_server.database_url)
    try:
        KeyStore(store.engine).revoke(name)
    finally:
        store.close()
    time.sleep(1.2)  # the server trusts a verified key for AISTACK_KEY_CACHE_S = 1 s
    assert_error(httpx.get(f"{live_server.url}{V2}", headers=bearer(key)), 401, "unauthorized")


def test_urls_ignore_an_untrusted_host_header(live_server, api, image):
    response = api.post(V2, json={"image_b64": b64(image)}, headers={"Host": "evil.example"})
    body = response.json()
    for url in (response.headers["location"], body["image_url"], body["overlay_url"]):
        assert url.startswith(live_server.url), url


def test_openapi_declares_both_key_schemes(live_server):
    schema = httpx.get(f"{live_server.url}/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerKey"]["scheme"] == "bearer"
    assert schemes["apiKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "`X-API-Key`",
    }
    operation = schema["paths"][V2]["post"]
    assert {"bearerKey": []} in operation["security"]
    assert "security" not in schema["paths"]["/healthz"]["get"]


@pytest.fixture(scope="module")
def open_server(tmp_path_factory) -> Iterator[LocalServer]:
    """v1 opened for keyless 2020 clients; a public base URL; short-lived file URLs."""
    server = start_local_server(
        tmp_path_factory.mktemp("open-var"),
        env={
            "AISTACK_MODEL_DIR": str(MODEL_DIR),
            "AISTACK_V1_OPEN": "true",
            "AISTACK_PUBLIC_BASE_URL": PUBLIC_BASE,
            "AISTACK_FILE_URL_TTL_S": "2",
            "AISTACK_RATE_LIMIT": "10/second",
        },
    )
    yield server
    server.stop()


def test_v1_open_lets_the_2020_client_in_unchanged(open_server, sample_images):
    """Exactly what the 2020 notebook did: requests.post(data={'b64': base64 bytes})."""
    path = sample_images["covid"]
    response = requests.post(
        f"{open_server.url}{V1}",
        data={"b64": base64.b64encode(open(path, "rb").read())},  # noqa: SIM115
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert set(response.json()) == {
        "model_name",
        "X-Ray_Classification_Result",
        "X-Ray_Classfication_Raw_Result",
    }


def test_v1_open_opens_nothing_else(open_server, image):
    assert_error(
        httpx.post(f"{open_server.url}{V2}", json={"image_b64": b64(image)}), 401, "unauthorized"
    )
    assert_error(httpx.get(f"{open_server.url}{V2}"), 401, "unauthorized")
    schema = httpx.get(f"{open_server.url}/openapi.json").json()
    assert {} in schema["paths"][V1]["post"]["security"]
    assert {} not in schema["paths"][V2]["post"]["security"]


def test_public_base_url_and_expiring_file_links(open_server, image):
    body = requests.post(
        f"{open_server.url}{V1_HEATMAP}", data={"b64": base64.b64encode(image)}, timeout=30
    ).json()
    assert body["Output_Heatmap"].startswith(f"{PUBLIC_BASE}/static/result/")
    local = body["Output_Heatmap"].replace(PUBLIC_BASE, open_server.url)
    assert httpx.get(local).status_code == 200
    time.sleep(3.2)  # AISTACK_FILE_URL_TTL_S = 2 (signatures have 1 s resolution)
    assert_error(httpx.get(local), 401, "unauthorized")


def test_a_key_over_its_budget_gets_429_with_retry_after(open_server):
    key = open_server.create_key(f"greedy-{time.monotonic_ns()}", "read")
    with httpx.Client(base_url=open_server.url, headers=bearer(key)) as client:
        statuses = [client.get(V2).status_code for _ in range(40)]
        limited = client.get(V2)
    assert 429 in statuses and statuses[0] == 200
    if limited.status_code == 429:
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
    time.sleep(2)
    with httpx.Client(base_url=open_server.url, headers=bearer(key)) as client:
        assert client.get(V2).status_code == 200  # the budget comes back


def test_signed_tokens_stay_out_of_the_access_log(live_server, api, image):
    body = api.post(V2, json={"image_b64": b64(image)}).json()
    token = body["image_url"].split("token=")[1]
    assert httpx.get(body["image_url"]).status_code == 200
    time.sleep(0.2)
    log = live_server.log()
    assert body["id"] in log  # the fetch was logged...
    assert token not in log  # ...without the token that would let a log reader fetch it
