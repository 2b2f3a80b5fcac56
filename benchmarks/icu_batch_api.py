"""The ICU batch route end to end: rows per second through HTTP, as JSON and as CSV.

    .venv/bin/python benchmarks/icu_batch_api.py --rows 5000 --repeats 5

Starts the standalone service (auth on, an admin key), then posts the workbook's first-window
rows, cycled to ``--rows``, to ``POST /icu/api/v1/predict/batch`` as a JSON list and as a CSV
upload, one request at a time; prints the median rows/s of ``--repeats`` requests each, with
the server's CPU per 1,000 rows. Target (issue: batch scoring): at least 2,000 rows/s.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from aistack.bench.local_server import start_local_server
from aistack.icu.dataset import LABEL, load_prepared
from aistack.icu.defaults import DEFAULT_WORKBOOK

BATCH = "/icu/api/v1/predict/batch"


def bodies(rows: list[dict]) -> dict[str, tuple[bytes, str]]:
    clean = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in rows
    ]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(clean[0]))
    writer.writeheader()
    writer.writerows(clean)
    return {
        "json": (json.dumps(clean).encode(), "application/json"),
        "csv": (text.getvalue().encode(), "text/csv"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    table = load_prepared(DEFAULT_WORKBOOK)
    source = table.first_window().drop(columns=[LABEL]).to_dict("records")
    rows = list(itertools.islice(itertools.cycle(source), args.rows))
    with tempfile.TemporaryDirectory() as var_dir:
        server = start_local_server(Path(var_dir))
        try:
            headers = {"authorization": f"Bearer {server.api_key}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
                for kind, (body, media_type) in bodies(rows).items():
                    send = {"content": body, "headers": {"content-type": media_type}}
                    warm = client.post(BATCH, **send)
                    warm.raise_for_status()
                    assert warm.json()["count"] == args.rows
                    times, cpu = [], server.cpu_s()
                    for _ in range(args.repeats):
                        started = time.perf_counter()
                        client.post(BATCH, **send).raise_for_status()
                        times.append(time.perf_counter() - started)
                    cpu_ms = (server.cpu_s() - cpu) / (args.repeats * args.rows) * 1e6
                    print(
                        f"{kind:>4}: {args.rows / statistics.median(times):8,.0f} rows/s "
                        f"({len(body) / 1e6:.1f} MB a request), "
                        f"server CPU {cpu_ms:.0f} ms per 1,000 rows"
                    )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
