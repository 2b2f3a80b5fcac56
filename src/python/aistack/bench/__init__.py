"""Load benchmark reproducing the 2020 experiment: N concurrent clients, every image each.

``aistack.bench.plot`` is not imported here: matplotlib loads only when a plot is asked for.
"""

from aistack.bench.client import (
    ENDPOINTS,
    BenchmarkRun,
    RequestResult,
    run_benchmark,
    run_benchmark_async,
)
from aistack.bench.command import bench_command, list_images
from aistack.bench.progress import progress_callback
from aistack.bench.report import format_text, summarize, write_json

__all__ = [
    "ENDPOINTS",
    "BenchmarkRun",
    "RequestResult",
    "bench_command",
    "format_text",
    "list_images",
    "progress_callback",
    "run_benchmark",
    "run_benchmark_async",
    "summarize",
    "write_json",
]
