"""What building the FHIR resources of one prediction costs, and where the time goes.

    .venv/bin/python benchmarks/fhir_build.py --runs 2000

``build_prediction_resources`` makes the JSON of the six resources, runs the project's checks
(R4 elements, value sets, codes) on each and on the transaction, and has fhir.resources validate
the transaction Bundle, which validates every resource in it. The stages below it are timed
alone, with the alternatives that were measured and not taken: validating each resource on its
own as well, and serialising the validated models back to JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.media import Media
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from aistack.fhir import MediaLinks, ModelDescription, as_json, build_prediction_resources
from aistack.fhir.checks import bundle_problems, resource_problems
from aistack.store import PredictionRecord

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 2.0
MODELS = {
    "Device": Device,
    "Media": Media,
    "Observation": Observation,
    "DiagnosticReport": DiagnosticReport,
    "Provenance": Provenance,
}


def sample_record() -> PredictionRecord:
    return PredictionRecord.create(
        model_name="covid19",
        model_version=1,
        input_sha256=hashlib.sha256(b"benchmark").hexdigest(),
        probabilities={"covid": 0.81, "normal": 0.07, "pneumonia_bac": 0.12},
        label="covid",
        covid_positive=True,
        threshold=0.65,
        latency_ms=40.0,
        endpoint="v2",
        image_file="0123.png",
        overlay_file="0123.jpg",
        created_at=datetime.now(UTC),
    )


def timings_ms(call: Callable[[], object], runs: int) -> list[float]:
    for _ in range(min(50, runs)):  # warm up: pydantic builds its validators lazily
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def report(name: str, times: list[float]) -> float:
    p50, p95 = statistics.median(times), statistics.quantiles(times, n=20)[-1]
    print(f"{name:<52} p50 {p50:7.3f} ms   p95 {p95:7.3f} ms")
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "covid19")
    parser.add_argument("--version", type=int, default=1)
    args = parser.parse_args()

    model = ModelDescription.from_model_dir(args.model_dir, args.version)
    started = time.perf_counter()
    model.artifact_sha256  # noqa: B018 - once per model version, then cached
    print(f"artifact digest, once per version: {(time.perf_counter() - started) * 1000:.1f} ms")
    record = sample_record()
    links = MediaLinks(
        image_url="https://aistack.example/static/source/0123.png",
        overlay_url="https://aistack.example/static/result/0123.jpg",
    )

    def build():
        return build_prediction_resources(record, model, links)

    built = build()
    resources = built.all_json()
    transaction = built.bundle_json
    print(f"{args.runs} runs each; one prediction = {len(resources)} resources in a transaction")
    total = report("build_prediction_resources (checked + validated)", timings_ms(build, args.runs))
    report(
        "  + json.dumps of the transaction",
        timings_ms(lambda: json.dumps(build().bundle_json), args.runs),
    )
    print("stages:")
    report(
        "  project checks, 6 resources",
        timings_ms(lambda: [resource_problems(r) for r in resources], args.runs),
    )
    report(
        "  project checks, the transaction",
        timings_ms(lambda: bundle_problems(transaction), args.runs),
    )
    report(
        "  fhir.resources: validate the Bundle",
        timings_ms(lambda: Bundle.model_validate(transaction), args.runs),
    )
    print("not taken:")
    each = [(MODELS[r["resourceType"]], r) for r in resources]
    report(
        "  fhir.resources: validate each resource too",
        timings_ms(lambda: [m.model_validate(r) for m, r in each], args.runs),
    )
    bundle = built.bundle
    report(
        "  fhir.resources: Bundle model back to JSON",
        timings_ms(lambda: as_json(bundle), args.runs),
    )
    verdict = "meets" if total <= TARGET_MS else "misses"
    print(f"p50 {total:.3f} ms {verdict} the {TARGET_MS:g} ms target")


if __name__ == "__main__":
    main()
