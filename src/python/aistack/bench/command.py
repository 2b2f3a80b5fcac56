"""The whole ``aistack bench`` command as one function, so the CLI only parses options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from aistack.bench.client import ENDPOINTS, run_benchmark
from aistack.bench.progress import progress_callback
from aistack.bench.report import format_text, summarize, write_json

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


def list_images(images_dir: Path) -> list[Path]:
    """Every jpg/jpeg/png below ``images_dir``, sorted so runs are repeatable."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {images_dir}")
    images = sorted(
        p for p in images_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise FileNotFoundError(f"no .jpg/.jpeg/.png images under {images_dir}")
    return images


def bench_command(
    url: str,
    images_dir: Path,
    clients: int,
    endpoint: str,
    json_out: Path | None,
    plot_path: Path | None,
    console: Console,
    timeout_s: float = 60,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Run the benchmark with a progress bar, print the report, write the optional files.

    Raises ``ValueError`` for a bad endpoint/clients and ``FileNotFoundError`` for no images.
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; choose from {', '.join(ENDPOINTS)}")
    if clients < 1:
        raise ValueError("clients must be at least 1")
    images = list_images(images_dir)
    console.print(
        f"{clients} clients x {len(images)} images -> {url} ({endpoint}), timeout {timeout_s:g} s"
    )
    progress, on_result = progress_callback(clients * len(images), console)
    with progress:
        run = run_benchmark(url, images, clients, endpoint, timeout_s, on_result, api_key=api_key)
    summary = summarize(run)
    console.print(format_text(summary), highlight=False, markup=False)
    if json_out is not None:
        write_json(summary, run, json_out)
        console.print(f"json  {json_out}")
    if plot_path is not None:
        from aistack.bench.plot import plot_run  # noqa: PLC0415 - matplotlib only when asked

        plot_run(run, summary, plot_path)
        console.print(f"plot  {plot_path}")
    return summary
