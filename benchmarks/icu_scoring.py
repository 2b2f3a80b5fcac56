"""Batch scoring speed of the embedded ICU predictor (the committed model), rows per second.

    .venv/bin/python benchmarks/icu_scoring.py --repeats 20

Rows are the workbook's first-window rows as dicts keyed by column name (what the CLI and an
API receive), cycled to each batch size. Three figures per batch size: checking and
converting the rows to the feature matrix, the whole ``predict_proba`` (conversion + trees),
and ``predict`` with the top 3 TreeSHAP contributions per row. Median of ``--repeats`` runs,
one thread, after a warm-up. Target: at least 2,000 rows/s for batch scoring.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
from collections.abc import Callable

from aistack.icu.dataset import LABEL, load_prepared
from aistack.icu.defaults import DEFAULT_WORKBOOK
from aistack.icu.local import load_local
from aistack.icu.predictor import predict
from aistack.icu.rows import feature_matrix

TARGET_ROWS_PER_S = 2000


def rows_per_second(call: Callable[[], object], rows: int, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return rows / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batches", default="1,100,1000,5000")
    args = parser.parse_args()

    predictor = load_local()
    meta = predictor.metadata
    table = load_prepared(DEFAULT_WORKBOOK)
    source = table.first_window().drop(columns=[LABEL]).to_dict("records")
    print(f"model {meta.version} ({meta.details['estimator']}), {len(meta.features)} features")
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{'batch':>6} {'rows→matrix':>14} {'predict_proba':>14} {'with top 3':>14}  (rows/s)")
    lowest = float("inf")
    for size in (int(b) for b in args.batches.split(",")):
        rows = list(itertools.islice(itertools.cycle(source), size))
        repeats = max(3, args.repeats if size <= 1000 else args.repeats // 4)
        convert = rows_per_second(lambda r=rows: feature_matrix(r, meta.features), size, repeats)
        score = rows_per_second(lambda r=rows: predictor.predict_proba(r), size, repeats)
        explain = rows_per_second(lambda r=rows: predict(predictor, r, top=3), size, repeats)
        if size >= 100:
            lowest = min(lowest, score)
        print(f"{size:>6} {convert:>14,.0f} {score:>14,.0f} {explain:>14,.0f}")
    verdict = "met" if lowest >= TARGET_ROWS_PER_S else "NOT met"
    print(
        f"batch scoring (batches of 100+): {lowest:,.0f} rows/s; target "
        f"{TARGET_ROWS_PER_S:,} rows/s {verdict}"
    )


if __name__ == "__main__":
    main()
