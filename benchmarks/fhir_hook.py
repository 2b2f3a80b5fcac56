"""What the standalone prediction hook costs: storing one prediction's FHIR resources.

    .venv/bin/python benchmarks/fhir_hook.py --calls 300

Runs :class:`aistack.fhir.transaction.PredictionRecorder` (build the resources, one SQL
transaction in a fresh SQLite store) on synthetic records of distinct predictions and
images, and prints CPU and wall ms per call, with the building alone and storing the
prediction's own row beside it for scale.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.fhir_build import sample_record

from aistack.auth.signing import UrlSigner
from aistack.fhir.resource_store import ResourceStore
from aistack.fhir.transaction import PredictionRecorder
from aistack.store import PredictionRecord, PredictionStore
from aistack.xray.links import FileLinks

ROOT = Path(__file__).resolve().parents[1]


def distinct(record: PredictionRecord, count: int) -> list[PredictionRecord]:
    """New predictions of new images: nothing to find before creating but the Device."""
    return [
        dataclasses.replace(
            record, id=uuid.uuid4().hex, input_sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        )
        for _ in range(count)
    ]


def per_call_ms(call: Callable[[PredictionRecord], object], records: list) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for record in records:
        call(record)
    count = len(records)
    return (time.process_time() - cpu) / count * 1e3, (time.perf_counter() - wall) / count * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = PredictionStore(f"sqlite:///{folder}/aistack.db")
        store.create_schema()
        resources = ResourceStore(store.engine, "http://127.0.0.1:8088/fhir/r4")
        resources.create_schema()
        links = FileLinks("http://127.0.0.1:8088", UrlSigner(b"k" * 32, 60))
        hook = PredictionRecorder(resources, links, ROOT / "models" / "covid19")
        base = sample_record()
        for record in distinct(base, 20):  # warm: the model's digest, SQLAlchemy's caches
            hook(record)
        rows = [
            ("hook (build + store)", hook),
            ("building alone", hook.entries),
            ("the prediction's row", store.add),
        ]
        for name, call in rows:
            cpu, wall = per_call_ms(call, distinct(base, args.calls))
            print(f"{name:22} {cpu:6.2f} ms CPU {wall:6.2f} ms wall")
        store.close()


if __name__ == "__main__":
    main()
