"""`aistack up`: N replicas of `aistack serve` behind HAProxy on this machine.

The same HAProxy template as the docker-compose stack (docs/SCALING.md), with replicas on
free loopback ports; Ctrl-C or SIGTERM stops HAProxy, then the replicas.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from aistack.cli.common import err_console, say, tell
from aistack.cli.serve import _is_loopback

if TYPE_CHECKING:
    from aistack.topology.local import LocalTopology
    from aistack.topology.replicas import Replica


class _Stop(Exception):
    """A stop signal arrived."""


def up(
    replicas: Annotated[int, typer.Option(min=1, max=16, help="how many `aistack serve`")] = 2,
    port: Annotated[int, typer.Option(help="HAProxy's port for the API")] = 8088,
    host: Annotated[str, typer.Option(help="interface HAProxy binds")] = "127.0.0.1",
    stats_port: Annotated[int, typer.Option(help="HAProxy's stats page port")] = 8404,
    haproxy: Annotated[
        Path | None, typer.Option(help="haproxy executable (default: PATH, then /usr/sbin)")
    ] = None,
) -> None:
    """Serve N replicas behind HAProxy (health-checked, least connections)."""
    from aistack.config import get_settings  # noqa: PLC0415
    from aistack.topology.haproxy import find_haproxy  # noqa: PLC0415
    from aistack.topology.local import LocalTopology, TopologyError  # noqa: PLC0415
    from aistack.topology.replicas import port_is_free  # noqa: PLC0415

    settings = get_settings()
    if not settings.auth and not _is_loopback(host):
        raise typer.BadParameter(
            f"AISTACK_AUTH=off serves every prediction and stored X-ray to anyone who can "
            f"connect; it is allowed on a loopback address only, not {host!r}",
            param_hint="--host",
        )
    binary = find_haproxy(haproxy)
    if binary is None:
        where = f"at {haproxy}" if haproxy else "on PATH, in /usr/sbin or /usr/local/sbin"
        say(f"haproxy not found {where}; install it (Debian: apt-get install haproxy)")
        raise typer.Exit(2)
    if port == stats_port:
        raise typer.BadParameter("the stats page needs its own port", param_hint="--stats-port")
    for name, number in (("--port", port), ("--stats-port", stats_port)):
        if not port_is_free(host, number):
            raise typer.BadParameter(f"{host}:{number} is in use", param_hint=name)

    topology = LocalTopology.plan(replicas, settings, binary, host, port, stats_port)
    with _stop_signals():
        try:
            topology.check_config()
            _start(topology)
            _announce(topology)
            _watch(topology)
        except TopologyError as error:
            say(str(error))
            raise typer.Exit(1) from error
        except _Stop:
            pass
        finally:
            _ignore_signals()
            say("stopping HAProxy, then the replicas…")
            topology.stop()
            say("stopped")


def _start(topology: LocalTopology) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        tasks = {
            r.name: progress.add_task(f"{r.name} {r.url} loading the model", total=1)
            for r in topology.replicas
        }
        topology.start_replicas()

        def ready(replica: Replica, seconds: float) -> None:
            progress.update(
                tasks[replica.name],
                completed=1,
                description=f"{replica.name} {replica.url} ready in {seconds:.1f} s",
            )

        topology.wait_ready(on_ready=ready)
        front = progress.add_task(f"HAProxy {topology.url}", total=1)
        topology.start_haproxy()
        progress.update(front, completed=1)


def _announce(topology: LocalTopology) -> None:
    tell(f"aistack: {len(topology.replicas)} replicas behind HAProxy")
    tell(f"  url    {topology.url}")
    tell(f"  stats  {topology.stats_url}")
    if topology.stats_password_generated:
        say(
            f"stats page: user {topology.stats_user}, password {topology.stats_password} "
            "(generated for this run; HAPROXY_STATS_USER/HAPROXY_STATS_PASSWORD choose them)"
        )
    else:
        say(f"stats page: user {topology.stats_user}, password from HAPROXY_STATS_PASSWORD")
    logs = ", ".join(str(r.log_path) for r in topology.replicas)
    say(f"replica logs: {logs}; HAProxy's access log follows. Ctrl-C stops everything.")


def _watch(topology: LocalTopology) -> None:
    """Until a signal: HAProxy exiting ends the run; a replica exiting is reported once."""
    reported: set[str] = set()
    while True:
        if topology.haproxy is not None and topology.haproxy.poll() is not None:
            say(f"haproxy exited with code {topology.haproxy.returncode}")
            raise typer.Exit(1)
        for replica in topology.replicas:
            if not replica.running and replica.name not in reported:
                reported.add(replica.name)
                say(
                    f"replica {replica.name} exited with code {replica.exit_code}; HAProxy "
                    f"routes around it (log: {replica.log_path})"
                )
        time.sleep(0.5)


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


@contextmanager
def _stop_signals() -> Iterator[None]:
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _ignore_signals() -> None:
    """While stopping: a second Ctrl-C must not cut the clean-up short (it is bounded)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
