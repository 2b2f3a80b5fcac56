"""`aistack bench`: concurrent clients against a running server (the 2020 experiment)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aistack.cli.common import console


def bench(
    url: Annotated[str, typer.Option(help="server base URL")] = "http://127.0.0.1:8088",
    images: Annotated[Path, typer.Option(help="folder of images (searched recursively)")] = (
        Path("../shared/data/xray/test")
    ),
    clients: Annotated[int, typer.Option(min=1, max=256)] = 8,
    endpoint: Annotated[str, typer.Option(help="v1-heatmap | v1-predict | v2")] = "v1-heatmap",
    json_out: Annotated[Path | None, typer.Option(help="write summary and requests")] = None,
    plot: Annotated[Path | None, typer.Option(help="write a PNG plot")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="AISTACK_API_KEY", help="key sent as a bearer token (predict role)"),
    ] = None,
) -> None:
    """Each client posts every image of the folder, concurrently (the 2020 experiment)."""
    from aistack.bench import bench_command  # noqa: PLC0415

    if endpoint not in {"v1-heatmap", "v1-predict", "v2"}:
        raise typer.BadParameter("choose v1-heatmap, v1-predict or v2", param_hint="--endpoint")
    try:
        bench_command(url, images, clients, endpoint, json_out, plot, console, api_key=api_key)
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error)) from error
