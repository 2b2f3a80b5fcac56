"""Benchmark numbers: what the 2020 experiment reported (throughput, latency tails, errors)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from aistack.bench.client import BenchmarkRun

CONNECTION_ERROR = "connection_error"
PERCENTILES = (50, 95, 99)


def summarize(run: BenchmarkRun) -> dict[str, Any]:
    """Counts, wall time and latency percentiles (successful requests only: errors are fast)."""
    results = run.results
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    errors_by_status = Counter(str(r.status) if r.status else CONNECTION_ERROR for r in failed)
    errors_by_reason = Counter(r.reason or "" for r in failed if r.status == 0)
    wall = max(r.end_s for r in results) - min(r.start_s for r in results) if results else 0.0
    latencies_ms = np.array([r.latency_s * 1000 for r in ok], dtype=float)
    latency: dict[str, float | None]
    if latencies_ms.size:
        latency = {f"p{p}": float(np.percentile(latencies_ms, p)) for p in PERCENTILES}
        latency |= {"mean": float(latencies_ms.mean()), "max": float(latencies_ms.max())}
    else:
        latency = {key: None for key in ("p50", "p95", "p99", "mean", "max")}
    return {
        "url": run.url,
        "endpoint": run.endpoint,
        "clients": run.clients,
        "images": len(run.images),
        "started_at": run.started_at.isoformat(),
        "requests": len(results),
        "ok": len(ok),
        "errors": len(failed),
        "errors_by_status": dict(sorted(errors_by_status.items())),
        "errors_by_reason": dict(sorted(errors_by_reason.items())),
        "wall_seconds": wall,
        "throughput_images_per_s": len(ok) / wall if wall > 0 else 0.0,
        "latency_ms": latency,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def format_text(summary: dict[str, Any]) -> str:
    """A few aligned lines for the terminal."""
    lat = summary["latency_ms"]
    errors = ", ".join(f"{k}: {v}" for k, v in summary["errors_by_status"].items()) or "none"
    reasons = ", ".join(f"{k}: {v}" for k, v in summary["errors_by_reason"].items())
    lines = [
        f"endpoint    {summary['endpoint']}  ({summary['url']})",
        f"clients     {summary['clients']} x {summary['images']} images",
        f"requests    {summary['requests']}  ok {summary['ok']}  errors {summary['errors']}",
        f"errors      {errors}" + (f"  ({reasons})" if reasons else ""),
        f"wall time   {summary['wall_seconds']:.2f} s",
        f"throughput  {summary['throughput_images_per_s']:.2f} images/s",
        "latency     "
        + "  ".join(f"{k} {_ms(lat[k])}" for k in ("p50", "p95", "p99", "mean", "max")),
    ]
    return "\n".join(lines)


def write_json(summary: dict[str, Any], run: BenchmarkRun, path: Path) -> None:
    """Summary plus one row per request, so later analysis needs no re-run."""
    rows = [
        {
            "client": r.client,
            "image": r.image,
            "start_s": r.start_s,
            "latency_s": r.latency_s,
            "status": r.status,
            "reason": r.reason,
        }
        for r in run.results
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"summary": summary, "requests": rows}, indent=2) + "\n")
