"""A rich progress bar fed by ``run_benchmark``'s ``on_result`` callback."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from aistack.bench.client import RequestResult


def progress_callback(
    total: int, console: Console | None = None
) -> tuple[Progress, Callable[[RequestResult], None]]:
    """Return a (not yet started) Progress and the callback that advances it.

    Use as ``with progress: run_benchmark(..., on_result=callback)``.
    """
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ok {task.fields[ok]}  [red]err {task.fields[err]}"),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task("requests", total=total, ok=0, err=0)
    counts = {"ok": 0, "err": 0}

    def on_result(result: RequestResult) -> None:
        counts["ok" if result.ok else "err"] += 1
        progress.update(task, advance=1, **counts)

    return progress, on_result
