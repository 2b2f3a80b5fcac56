"""Throughput of the v1 heatmap endpoint with authentication on and off, back to back.

    .venv/bin/python benchmarks/auth_overhead.py --images ../shared/data/xray/test \
        --clients 8 --rounds 3

Both servers run at once (an idle one costs no CPU) and runs alternate on, off, on, off...
so that drift in a shared machine's speed hits both alike. Each run is the 2020 experiment:
every client posts every image. Prints a table and the ratio of medians; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from aistack.bench import list_images, run_benchmark, summarize
from aistack.bench.local_server import start_local_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/xray/test"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--endpoint", default="v1-heatmap")
    parser.add_argument("--out", type=Path, default=Path("var/bench/auth_overhead.json"))
    args = parser.parse_args()
    images = list_images(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        servers = {
            "on": start_local_server(Path(tmp) / "on", {"AISTACK_AUTH": "on"}),
            "off": start_local_server(Path(tmp) / "off", {"AISTACK_AUTH": "off"}),
        }
        try:
            key = servers["on"].create_key("bench", "predict")
            for server in servers.values():  # warm both before measuring
                run_benchmark(server.url, images[:4], 2, args.endpoint, api_key=key)
            runs: dict[str, list[dict]] = {"on": [], "off": []}
            for round_index in range(args.rounds):
                order = ("on", "off") if round_index % 2 == 0 else ("off", "on")
                for mode in order:
                    run = run_benchmark(
                        servers[mode].url,
                        images,
                        args.clients,
                        args.endpoint,
                        api_key=key if mode == "on" else None,
                    )
                    summary = summarize(run)
                    assert summary["errors"] == 0, summary
                    runs[mode].append(summary)
                    print(
                        f"round {round_index + 1} auth {mode:<3} "
                        f"{summary['throughput_images_per_s']:6.1f} img/s  "
                        f"p95 {summary['latency_ms']['p95']:5.0f} ms"
                    )
        finally:
            for server in servers.values():
                server.stop()
    medians = {
        mode: statistics.median(s["throughput_images_per_s"] for s in summaries)
        for mode, summaries in runs.items()
    }
    ratio = medians["on"] / medians["off"]
    print(
        f"median throughput: auth on {medians['on']:.1f}, off {medians['off']:.1f} img/s; "
        f"on/off = {ratio:.3f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"medians": medians, "ratio": ratio, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
