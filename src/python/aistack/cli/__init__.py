"""`aistack serve | train xray | evaluate xray | predict | models | bench | keys | icu`.

This module assembles the Typer ``app`` (the ``aistack`` script) from one module per
command family; heavy libraries are imported inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from aistack import __version__
from aistack.auth.cli import keys_app
from aistack.cli import bench, predict, serve, tf_notice, up
from aistack.cli.evaluate import evaluate_app
from aistack.cli.icu import icu_app
from aistack.cli.models import models_app
from aistack.cli.train import train_app

tf_notice.quiet_tensorflow_start_up()

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="aistack: medical AI models served as dependable services.",
)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(icu_app, name="icu")
app.command()(serve.serve)
app.command()(predict.predict)
app.command()(bench.bench)
app.command()(up.up)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="print the version and exit", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """aistack: medical AI models served as dependable services."""


__all__ = ["app"]
