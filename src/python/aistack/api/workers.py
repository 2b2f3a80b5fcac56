"""Several server processes on one port: ``aistack serve --workers N`` (AISTACK_WORKERS).

One process's request threads share one interpreter lock, so part of each request's
Python waits while another thread holds it; processes do not wait for each other
(benchmarks/serve_workers.py). uvicorn's supervisor binds the socket, starts the
workers (spawned: each imports the app afresh and reads its settings from the
environment), restarts one that dies and stops them all on Ctrl-C or SIGTERM.

What is shared: the socket, the var folder and the database (its tables are made before
the workers start, so that they do not race to), and the Prometheus metrics, which the
workers write to files that ``/metrics`` sums whichever worker answers. What is not: each
worker loads its own model and has its own admission places, body budget and, with the
in-memory storage, its own rate-limit budget per key.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import ClassVar

import uvicorn
from fastapi import FastAPI

from aistack.api.server import GuardedHttpToolsProtocol, prepare_process, uvicorn_options
from aistack.config import Settings, get_settings
from aistack.metrics import MULTIPROCESS_DIR_VARIABLE
from aistack.topology.database import prepare_database


def worker_app() -> FastAPI:
    """The app of one worker, from the settings in its environment (uvicorn's factory)."""
    from aistack.api.app import create_app  # noqa: PLC0415 - imports the whole app

    settings = get_settings()
    prepare_process(settings)
    return create_app(settings)


class WorkerProtocol(GuardedHttpToolsProtocol):
    """The guarded protocol bound to the worker's settings; named so uvicorn can import it."""

    settings: ClassVar[Settings] = get_settings()


def run_workers(settings: Settings, log_level: str) -> None:
    """Serve with ``settings.workers`` processes until stopped; then drop the metric files."""
    # The workers read their settings from the environment: what the command line changed
    # must be there too (the public URL defaults to the host and port).
    os.environ["AISTACK_HOST"] = settings.host
    os.environ["AISTACK_PORT"] = str(settings.port)
    os.environ["AISTACK_WORKERS"] = str(settings.workers)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    prepare_database(settings.resolved_database_url)
    metrics_dir = tempfile.mkdtemp(prefix="metrics-", dir=settings.var_dir)
    os.environ[MULTIPROCESS_DIR_VARIABLE] = metrics_dir
    try:
        uvicorn.run(
            f"{__name__}:worker_app",
            factory=True,
            workers=settings.workers,
            http=f"{__name__}:WorkerProtocol",
            **uvicorn_options(settings, log_level),
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
