"""One PNG per run: latency distribution and throughput over time.

Uses ``Figure`` with the Agg canvas directly rather than pyplot, so no GUI backend is
touched and no global figure state leaks into the caller (safe from threads and servers).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aistack.bench.client import BenchmarkRun

_LINES = (("p50", "tab:green"), ("p95", "tab:orange"), ("p99", "tab:red"))


def _latency_panel(ax: Any, run: BenchmarkRun, summary: dict[str, Any]) -> None:
    latencies = [r.latency_s * 1000 for r in run.results if r.ok]
    ax.set_title("latency (successful requests)")
    ax.set_xlabel("ms")
    ax.set_ylabel("requests")
    if not latencies:
        ax.text(0.5, 0.5, "no successful requests", ha="center", transform=ax.transAxes)
        return
    ax.hist(latencies, bins=min(40, max(5, len(latencies) // 4)), color="tab:blue", alpha=0.7)
    for key, color in _LINES:
        value = summary["latency_ms"][key]
        ax.axvline(value, color=color, linestyle="--", label=f"{key} {value:,.0f} ms")
    ax.legend()


def _throughput_panel(ax: Any, run: BenchmarkRun, summary: dict[str, Any]) -> None:
    ax.set_title("completed requests per second")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("requests / s")
    if not run.results:
        return
    t0 = min(r.start_s for r in run.results)
    duration = max(r.end_s for r in run.results) - t0
    # About 20 bins whatever the run's length; the last, partial bin is divided by its own
    # width so it does not look like a drop in throughput.
    width = max(duration / 20, 0.05)
    edges = np.arange(0, math.ceil(duration / width) + 1) * width
    spans = np.diff(np.minimum(edges, duration))
    spans[spans <= 0] = width
    ok, _ = np.histogram([r.end_s - t0 for r in run.results if r.ok], bins=edges)
    bad, _ = np.histogram([r.end_s - t0 for r in run.results if not r.ok], bins=edges)
    ok_rate, bad_rate = ok / spans, bad / spans
    ax.bar(edges[:-1], ok_rate, width=spans, align="edge", color="tab:blue", label="ok")
    if bad.any():
        ax.bar(
            edges[:-1],
            bad_rate,
            width=spans,
            align="edge",
            bottom=ok_rate,
            color="tab:red",
            label="error",
        )
    mean = summary["throughput_images_per_s"]
    ax.axhline(mean, color="black", linestyle=":", label=f"mean {mean:.2f}/s")
    ax.legend()


def plot_run(run: BenchmarkRun, summary: dict[str, Any], path: Path) -> None:
    """Write the two-panel PNG to ``path`` (parent directories are created)."""
    fig = Figure(figsize=(13, 5), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    _latency_panel(left, run, summary)
    _throughput_panel(right, run, summary)
    p50 = summary["latency_ms"]["p50"]
    fig.suptitle(
        f"{run.endpoint} · {run.clients} clients · {summary['requests']} requests · "
        f"{summary['throughput_images_per_s']:.2f} images/s · "
        f"p50 {'-' if p50 is None else f'{p50:,.0f} ms'} · errors {summary['errors']}"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
