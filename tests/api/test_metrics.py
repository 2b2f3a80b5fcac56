"""Prometheus /metrics over the real server: admin key only, real counts, templated routes."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.helpers import b64

V2 = "/api/v2/xray/predictions"


def scrape(api) -> dict[tuple[str, tuple], float]:
    response = api.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_an_admin_key(live_server):
    assert httpx.get(f"{live_server.url}/metrics").status_code == 401
    reader = live_server.create_key("metrics-reader", "read")
    forbidden = httpx.get(f"{live_server.url}/metrics", headers={"X-API-Key": reader})
    assert forbidden.status_code == 403


def test_predictions_requests_and_inference_are_counted(api, sample_images):
    data = sample_images["pneumonia_bac"].read_bytes()
    before = scrape(api)
    created = [
        api.post(V2, json={"image_b64": b64(data), "heatmap": True}).json() for _ in range(3)
    ]
    label = created[0]["label"]
    api.get(f"{V2}/{created[0]['id']}")
    api.get(f"{V2}/{'0' * 32}")  # a 404 on the same templated route
    after = scrape(api)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("aistack_predictions_total", label=label, endpoint="v2") == 3
    assert grew("aistack_http_requests_total", route=V2, method="POST", status="201") == 3
    by_id = f"{V2}/{{prediction_id}}"
    assert grew("aistack_http_requests_total", route=by_id, method="GET", status="200") == 1
    assert grew("aistack_http_requests_total", route=by_id, method="GET", status="404") == 1
    duration = "aistack_http_request_duration_seconds_count"
    assert grew(duration, route=V2, method="POST", status="201") == 3
    assert grew(duration, route=by_id, method="GET", status="404") == 1
    inference = grew(
        "aistack_inference_duration_seconds_count", backend="inprocess", heatmap="true"
    )
    assert inference == 3
    assert value(after, "aistack_backend_up", backend="inprocess") == 1
    # Raw paths never become label values: one series per route template.
    assert not [key for key in after if ("route", f"{V2}/{created[0]['id']}") in key[1]]
