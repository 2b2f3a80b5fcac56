"""What the standalone prediction hook costs: storing one prediction's FHIR resources.

    .venv/bin/python -m benchmarks.fhir_hook --calls 300 [--rounds 3]

Runs :class:`aistack.fhir.transaction.PredictionRecorder` (build the resources, one SQL
transaction in a fresh SQLite store) on synthetic records of distinct predictions and
images, and prints CPU and wall ms per call, with the building alone and storing the
prediction's own row beside it for scale; "storing" is the hook less the building. Each
round measures all of them again (the spread between rounds is the noise). To compare two
revisions, run it with ``PYTHONPATH=<other tree>/src/python:<other tree>`` in between.
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
    parser.add_argument("--rounds", type=int, default=1, help="measure this many times")
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
        for round_ in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"round {round_}")
            ms = {name: per_call_ms(call, distinct(base, args.calls)) for name, call in rows}
            (hook_cpu, hook_wall), (build_cpu, build_wall) = (ms[name] for name, _ in rows[:2])
            ms["storing (hook - build)"] = (hook_cpu - build_cpu, hook_wall - build_wall)
            for name, (cpu, wall) in ms.items():
                print(f"{name:22} {cpu:6.2f} ms CPU {wall:6.2f} ms wall")
        store.close()


if __name__ == "__main__":
    main()
