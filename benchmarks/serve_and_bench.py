"""Start `aistack serve`, time start-to-ready, run the 2020 load for each endpoint, read RSS.

    .venv/bin/python benchmarks/serve_and_bench.py --images ../shared/data/xray/test \
        --clients 8 --out var/bench

Prints one table and writes ``<out>/<endpoint>.json`` and ``.png`` per endpoint. The load
generator shares the machine with the server, as in any single-host run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from aistack.bench import list_images, run_benchmark, summarize, write_json
from aistack.bench.local_server import start_local_server
from aistack.bench.plot import plot_run

ENDPOINTS = ("v1-heatmap", "v1-predict", "v2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="runs per endpoint")
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        help="AISTACK_MAX_BATCH_SIZE for the server (1 disables batching)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    images = list_images(args.images)
    # One key drives all the load: lift its request budget so capacity, not policy, is measured.
    env = {"AISTACK_RATE_LIMIT": "10000/second"}
    if args.max_batch_size is not None:
        env["AISTACK_MAX_BATCH_SIZE"] = str(args.max_batch_size)
    with tempfile.TemporaryDirectory() as var_dir:
        server = start_local_server(Path(var_dir), env)
        ready_s, url = server.ready_s, server.url
        try:
            rss_ready = server.rss_mb()
            rows = []
            for endpoint in ENDPOINTS:
                for round_index in range(args.rounds):
                    run = run_benchmark(url, images, args.clients, endpoint, api_key=server.api_key)
                    summary = summarize(run)
                    name = f"{endpoint}-{round_index + 1}"
                    write_json(summary, run, args.out / f"{name}.json")
                    plot_run(run, summary, args.out / f"{name}.png")
                    rows.append((name, summary))
            peak = server.rss_mb(peak=True)
        finally:
            server.stop()
            (args.out / "server.log").write_text(server.log())
    print(
        f"start to ready {ready_s:.1f} s; RSS when ready {rss_ready:.0f} MB; "
        f"peak RSS {peak:.0f} MB; {args.clients} clients x {len(images)} images"
    )
    print(f"{'run':<16}{'img/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, s in rows:
        lat = s["latency_ms"]
        print(
            f"{name:<16}{s['throughput_images_per_s']:>8.1f}{lat['p50']:>9.0f}"
            f"{lat['p95']:>9.0f}{lat['p99']:>9.0f}{s['errors']:>8}"
        )
    (args.out / "summary.json").write_text(
        json.dumps(
            {
                "ready_s": ready_s,
                "rss_ready_mb": rss_ready,
                "rss_peak_mb": peak,
                "runs": {name: s for name, s in rows},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
