"""The OpenAPI document tells the truth: schemathesis, every check, against the real server.

Seed and example budget are fixed in tests/api/schemathesis.toml, so a run is repeatable
and takes seconds; any failure it finds fails the suite with schemathesis' own report.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_schemathesis_finds_no_failure(live_server, tmp_path):
    key = live_server.create_key(f"schemathesis-{time.monotonic_ns()}", "admin")
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--no-color",
            "--config-file",
            str(CONFIG),
            "run",
            f"{live_server.url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {key}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "generated" in report and "failures" not in report.split("SUMMARY")[-1], report
    assert httpx.get(f"{live_server.url}/readyz").status_code == 200


def test_every_operation_documents_its_errors_with_the_real_body(live_server):
    schema = httpx.get(f"{live_server.url}/openapi.json").json()
    operation_ids = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            operation_ids.append(operation["operationId"])
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    if path.startswith("/fhir/"):  # FHIR's own error format
                        body = response["content"]["application/fhir+json"]["schema"]
                        assert body["$ref"].endswith("/OperationOutcome"), (method, path, status)
                        continue
                    body = response["content"]["application/json"]["schema"]
                    assert body["$ref"].endswith("/ErrorBody") or body["$ref"].endswith(
                        "/Readiness"
                    ), (method, path, status)
            if operation.get("security"):
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "503" in schema["paths"]["/readyz"]["get"]["responses"]


def test_docs_pages_work_offline(live_server):
    """/docs and /redoc load their assets from this server, not from a CDN."""
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{live_server.url}{page}").text
        assets = [part.split('"')[0] for part in html.split('src="')[1:]]
        assets += [part.split('"')[0] for part in html.split('href="')[1:]]
        local = [a for a in assets if a.startswith("/")]
        assert local, page
        assert not [a for a in assets if a.startswith("http")], (page, assets)
        for asset in local:
            assert httpx.get(f"{live_server.url}{asset}").status_code == 200, asset
