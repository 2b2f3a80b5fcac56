"""The REST entry: IRIS users and roles, reads, stored files, and reading a %CSP.Request."""

from __future__ import annotations

import json

import httpx
import pytest

from aistack.interop import rest, wiring
from tests.api.helpers import b64, unsigned
from tests.interop.iris_double import CspRequestDouble, StreamDouble

V1 = "/covid19/api/v1/predict/"
V2 = "/api/v2/xray/predictions"
JOBS = "/api/v2/xray/jobs"


@pytest.fixture
def auth_on(monkeypatch: pytest.MonkeyPatch, var_dir):
    monkeypatch.setenv("AISTACK_AUTH", "on")
    wiring.reset()


@pytest.fixture
def running(production, tfserving, auth_on):
    return production(tfserving.url, tfserving.url, probe_interval_s="0")


def call(operation: str, user: str = "UnknownUser", roles: str = "", *args: str, **request):
    request.setdefault("method", "GET")
    request.setdefault("url", "/")
    return rest.handle(operation, CspRequestDouble(**request), user, roles, *args)


def v2_json(image: bytes, heatmap: bool = True) -> dict:
    body = json.dumps({"image_b64": b64(image), "heatmap": heatmap}).encode()
    return {"method": "POST", "url": V2, "content_type": "application/json", "body": body}


def error_of(reply: rest.Reply) -> dict:
    return json.loads(reply.body)["error"]


def test_no_credentials_is_401_with_a_basic_challenge(running, sample_images):
    reply = call("create_prediction", **v2_json(sample_images["covid"].read_bytes()))
    assert reply.status == 401
    assert error_of(reply)["code"] == "unauthorized"
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="aistack"'


def test_v1_open_lets_anonymous_2020_clients_predict_and_nothing_else(
    running, monkeypatch, sample_images
):
    monkeypatch.setenv("AISTACK_V1_OPEN", "true")
    wiring.reset()
    form = httpx.Request(
        "POST", f"http://x{V1}", data={"b64": b64(sample_images["covid"].read_bytes())}
    )
    request = {"method": "POST", "url": V1, "content_type": form.headers["content-type"]}
    reply = call("v1_predict", body=form.read(), **request)
    assert reply.status == 200
    assert json.loads(reply.body)["X-Ray_Classification_Result"] == "Covid19"
    assert call("create_prediction", **v2_json(b"x")).status == 401
    assert call("list_predictions", url=V2).status == 401


def test_a_user_without_an_aistack_role_is_403(running, sample_images):
    reply = call("create_prediction", "nurse", "%DB_USER", **v2_json(b"x"))
    assert reply.status == 403
    assert error_of(reply) == {
        "code": "forbidden",
        "message": "the user 'nurse' (role None) may not ask for predictions",
    }


def test_roles_map_to_the_project_permissions(running, sample_images):
    image = sample_images["normal"].read_bytes()
    created = call("create_prediction", "alice", "%DB_USER,AIStackPredict", **v2_json(image))
    assert created.status == 201, created.body
    prediction = json.loads(created.body)
    own_id = prediction["id"]
    other = call("create_prediction", "bob", "AIStackPredict", **v2_json(image, heatmap=False))
    other_id = json.loads(other.body)["id"]

    # READ_OWN: alice reads her own prediction, not bob's (404, as if it did not exist)
    mine = call("get_prediction", "alice", "AIStackPredict", own_id, url=f"{V2}/{own_id}")
    assert mine.status == 200 and unsigned(json.loads(mine.body)) == unsigned(prediction)
    theirs = call("get_prediction", "alice", "AIStackPredict", other_id, url=f"{V2}/{other_id}")
    assert theirs.status == 404
    assert error_of(theirs)["message"] == f"no prediction with id {other_id!r}"
    listed = json.loads(call("list_predictions", "alice", "AIStackPredict", url=V2).body)
    assert [p["id"] for p in listed] == [own_id]

    # READ (read-all) sees both, newest first, and may not predict; ADMIN may do all
    everything = json.loads(call("list_predictions", "carol", "AIStackRead", url=V2).body)
    assert [p["id"] for p in everything] == [other_id, own_id]
    assert call("create_prediction", "carol", "AIStackRead", **v2_json(image)).status == 403
    admin = call("create_prediction", "root", "AIStackAdmin", **v2_json(image, heatmap=False))
    assert admin.status == 201


def test_a_job_is_read_by_who_asked_for_it_and_by_readers_of_everything(running, sample_images):
    body = v2_json(sample_images["normal"].read_bytes()) | {"url": JOBS}
    accepted = call("create_job", "alice", "AIStackPredict", **body)
    assert accepted.status == 202, accepted.body
    job_id = json.loads(accepted.body)["id"]

    def status(user: str, roles: str) -> int:
        return call("get_job", user, roles, job_id, url=f"{JOBS}/{job_id}").status

    assert status("alice", "AIStackPredict") == 200
    assert status("carol", "AIStackRead") == 200
    assert status("bob", "AIStackPredict") == 404  # as if there were no such job
    assert status("UnknownUser", "") == 401


def test_query_and_path_parameters_are_checked_as_fastapi_does(running):
    limit = call("list_predictions", "carol", "AIStackRead", url=f"{V2}?limit=0")
    assert limit.status == 422
    assert error_of(limit)["message"] == "query.limit: Input should be greater than or equal to 1"
    bad_id = call("get_prediction", "carol", "AIStackRead", "nope", url=f"{V2}/nope")
    assert error_of(bad_id)["message"] == (
        "path.prediction_id: String should match pattern '^[0-9a-f]{32}$'"
    )


def test_stored_files_by_signed_url_or_by_a_reader(running, sample_images):
    created = call("create_prediction", "alice", "AIStackPredict", **v2_json(
        sample_images["covid"].read_bytes()
    ))  # fmt: skip
    url = httpx.URL(json.loads(created.body)["overlay_url"])
    kind, name = url.path.split("/")[2:]
    signed = call(
        "static_file", "UnknownUser", "", kind, name, url=f"{url.path}?{url.query.decode()}"
    )
    assert signed.status == 200 and signed.body == ""
    assert signed.content_type == "image/jpeg" and signed.file_path.endswith(name)
    assert signed.headers["X-Content-Type-Options"] == "nosniff"

    assert call("static_file", "UnknownUser", "", kind, name, url=url.path).status == 401
    assert call("static_file", "bob", "AIStackPredict", kind, name, url=url.path).status == 404
    assert call("static_file", "alice", "AIStackPredict", kind, name, url=url.path).status == 200
    assert call("static_file", "carol", "AIStackRead", "secrets", name, url=url.path).status == 422


def test_health_routes_and_unknown_operations(running):
    health = call("v1_healthcheck")
    assert (health.status, json.loads(health.body)) == (200, "Covid19 detector API is live!\n\n")
    assert json.loads(call("oip_live").body) == {"live": True}
    assert call("oip_ready").status == 200
    unknown = call("drop_tables")
    assert unknown.status == 404 and error_of(unknown)["code"] == "not_found"


def test_every_reply_carries_the_request_id_and_common_headers(running):
    request = CspRequestDouble("GET", "/", headers={"X-Request-ID": "trace-42"})
    reply = rest.handle("oip_live", request, "UnknownUser", "")
    assert reply.headers["X-Request-ID"] == "trace-42"
    assert json.loads(reply.headers_json)["Referrer-Policy"] == "no-referrer"
    assert reply.status_line == "200 OK"


def test_an_unexpected_failure_is_a_500_json_error_not_an_exception(running, monkeypatch):
    def broken(_call):
        raise RuntimeError("bug")

    monkeypatch.setitem(rest.ROUTES, "oip_live", broken)
    reply = call("oip_live")
    assert reply.status == 500
    assert error_of(reply) == {
        "code": "internal_error",
        "message": "internal error; see the server log",
    }


# -- reading a %CSP.Request -----------------------------------------------------------------


def test_form_values_past_the_iris_string_limit_arrive_as_streams():
    request = CspRequestDouble("POST", V1, "application/x-www-form-urlencoded", b"")
    request._data["b64"] = [StreamDouble("aGVsbG8=" * 10)]  # as CSP stores a long value
    fields, files = rest.CspRequest(request).form()
    assert fields == {"b64": "aGVsbG8=" * 10} and files == {}


def test_query_parameters_are_not_form_fields():
    form = httpx.Request("POST", "http://x/", data={"b64": "AAAA", "version": "2"})
    request = CspRequestDouble("POST", f"{V2}?version=1", form.headers["content-type"], form.read())
    parsed = rest.CspRequest(request)
    assert parsed.query_value("version") == "1"
    assert parsed.form() == ({"b64": "AAAA", "version": "2"}, {})


def test_multipart_file_parts_are_bytes_and_text_parts_fields():
    png = bytes(range(256))
    form = httpx.Request(
        "POST", "http://x/", files={"file": ("a.png", png)}, data={"heatmap": "false"}
    )
    request = CspRequestDouble("POST", V2, form.headers["content-type"], form.read())
    assert rest.CspRequest(request).form() == ({"heatmap": "false"}, {"file": png})
    assert rest.v2_image(rest.CspRequest(request)) == (png, False)
