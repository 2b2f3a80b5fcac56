"""FHIR search by subject over 10,000 stored Observations (~1,000 subjects) in SQLite.

Times the same searches through the store (parse + SQL + rows) and through HTTP (the real
service, with auth off, on loopback): p50 and p95 in ms. The Observations are the builders'
own (about 3 KB of JSON each), with a literal subject and a logical one.

Also times the prediction hook on that database: what storing one prediction's resources
(build, check, conditional creates, commit) adds to a prediction, in ms.

.venv/bin/python benchmarks/fhir_search.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import httpx

from aistack.auth.signing import UrlSigner
from aistack.bench.local_server import start_local_server
from aistack.fhir import ModelDescription, build_prediction_resources
from aistack.fhir.codes import PREDICTION_SYSTEM
from aistack.fhir.context import instant
from aistack.fhir.resource_store import FHIR_BASE_PATH, ResourceStore
from aistack.fhir.search import parse_search
from aistack.fhir.transaction import PredictionRecorder
from aistack.store import PredictionRecord, PredictionStore
from aistack.xray.links import FileLinks

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "covid19"
BATCH = 500


@cache
def template() -> dict:
    """The builders' Observation of one prediction (about 3 KB of JSON)."""
    record = PredictionRecord.create(
        model_name="covid19",
        model_version=1,
        input_sha256=hashlib.sha256(b"image").hexdigest(),
        probabilities={"covid": 0.7, "normal": 0.2, "pneumonia_bac": 0.1},
        label="covid",
        covid_positive=True,
        threshold=0.65,
        latency_ms=10.0,
        endpoint="v2",
        image_file="image.png",
        patient_id="p",
    )
    model = ModelDescription.from_model_dir(MODEL_DIR, 1)
    return build_prediction_resources(record, model).observation_json


def observation(n: int, subjects: int) -> dict:
    """The n-th Observation, for patient ``n % subjects``: literal and logical subject."""
    patient = f"p{n % subjects:05d}"
    moment = instant(datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=7 * n))
    resource = json.loads(json.dumps(template()))
    resource.update(
        id=f"obs-{n}",
        identifier=[{"system": PREDICTION_SYSTEM, "value": f"{n:032x}"}],
        effectiveDateTime=moment,
        issued=moment,
    )
    resource["subject"] = {"reference": f"Patient/{patient}", **resource["subject"]}
    resource["subject"]["identifier"]["value"] = patient
    return resource


def fill(store: ResourceStore, count: int, subjects: int) -> float:
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        with store.writing() as writer:
            for n in range(start, min(start + BATCH, count)):
                writer.create(observation(n, subjects))
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "max_ms": round(ordered[-1], 2),
    }


def time_calls(call, subjects: list[str], warmup: int = 20) -> list[float]:
    for subject in subjects[:warmup]:
        call(subject)
    samples = []
    for subject in subjects:
        started = time.perf_counter()
        call(subject)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--subjects", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--no-http", action="store_true", help="time the store only")
    args = parser.parse_args()
    var_dir = Path(tempfile.mkdtemp(prefix="fhir-bench-"))
    database_url = f"sqlite:///{var_dir / 'aistack.db'}"
    predictions = PredictionStore(database_url)
    predictions.create_schema()
    store = ResourceStore(predictions.engine)
    store.create_schema()
    filled_s = fill(store, args.resources, args.subjects)
    rng = random.Random(2026)
    asked = [f"p{rng.randrange(args.subjects):05d}" for _ in range(args.queries)]
    per_subject = args.resources // args.subjects
    report: dict[str, object] = {
        "observations": store.count("Observation"),
        "subjects": args.subjects,
        "queries": args.queries,
        "fill_s": round(filled_s, 1),
    }

    def through_store(subject: str, name: str = "subject", prefix: str = "Patient/") -> None:
        query = parse_search("Observation", [(name, f"{prefix}{subject}")])
        page = store.search(query)
        assert page.total == per_subject, page.total
        [stored.json() for stored in page.resources]  # what a response decodes

    report["store_subject"] = percentiles(time_calls(through_store, asked))
    report["store_subject_identifier"] = percentiles(
        time_calls(lambda s: through_store(s, "subject:identifier", ""), asked)
    )
    report["hook_per_prediction"] = percentiles(hook_ms(store, args.queries))
    predictions.close()
    try:
        if not args.no_http:
            report["http_subject"] = percentiles(over_http(var_dir, asked, per_subject))
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    print(json.dumps(report, indent=2))


def hook_ms(store: ResourceStore, count: int) -> list[float]:
    """ms the standalone service's prediction hook adds to each prediction."""
    links = FileLinks("http://127.0.0.1:8088", UrlSigner("0" * 32, 3600))
    recorder = PredictionRecorder(store, links, MODEL_DIR)
    recorder.warm(1)  # as the runtime does when it loads the model
    samples = []
    for n in range(count):
        record = PredictionRecord.create(
            model_name="covid19",
            model_version=1,
            input_sha256=hashlib.sha256(f"hook {n}".encode()).hexdigest(),
            probabilities={"covid": 0.1, "normal": 0.8, "pneumonia_bac": 0.1},
            label="normal",
            covid_positive=False,
            threshold=0.65,
            latency_ms=10.0,
            endpoint="v2",
            image_file=f"{n}.png",
            overlay_file=f"{n}.jpg",
        )
        started = time.perf_counter()
        stored = recorder(record)
        samples.append((time.perf_counter() - started) * 1000)
        assert stored.fhir_observation_id == f"obs-{record.id}"
    return samples


def over_http(var_dir: Path, asked: list[str], per_subject: int) -> list[float]:
    """The same searches against the real service (auth off) on the same database."""
    server = start_local_server(
        var_dir,
        env={
            "AISTACK_AUTH": "off",
            "AISTACK_MODEL_DIR": str(MODEL_DIR),
            "AISTACK_RATE_LIMIT": "100000/second",  # measure search, not the limiter
        },
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:

            def through_http(subject: str) -> None:
                params = {"subject": f"Patient/{subject}"}
                answer = client.get(f"{FHIR_BASE_PATH}/Observation", params=params)
                assert answer.status_code == 200, answer.text
                assert len(answer.json()["entry"]) == per_subject

            return time_calls(through_http, asked)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
