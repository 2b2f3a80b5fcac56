"""N `aistack serve` replicas behind one HAProxy on this machine: what `aistack up` runs.

Replicas share VAR_DIR, so they share the database (SQLite in WAL mode takes one writer at
a time across processes, with a 30 s busy timeout) and the URL signing secret (created
atomically in VAR_DIR): a signed link from one replica works on any other.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from aistack.config import Settings
from aistack.topology.database import prepare_database
from aistack.topology.haproxy import (
    STATS_PASSWORD_ENV,
    STATS_PATH,
    STATS_USER_ENV,
    Server,
    check_config,
    render_local,
)
from aistack.topology.replicas import Replica, free_port, spawn, stop_processes

HAPROXY_STOP_S = 15.0
"""A soft stop lets open requests finish (the config's hard-stop-after is the same)."""
REPLICA_STOP_S = 15.0
"""uvicorn's graceful shutdown is 10 s; then SIGKILL."""


class TopologyError(RuntimeError):
    """The topology could not start: a bad config, a replica or HAProxy that exited."""


def url_for(host: str, port: int) -> str:
    """How clients on this machine reach ``host``:``port`` (a wildcard is no address)."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def stats_credentials(env: Mapping[str, str]) -> tuple[str, str, bool]:
    """(user, password, generated): from the environment, else a fresh random password."""
    user, password = env.get(STATS_USER_ENV, ""), env.get(STATS_PASSWORD_ENV, "")
    if user and password:
        return user, password, False
    return user or "aistack", secrets.token_urlsafe(12), True


@dataclass
class LocalTopology:
    """Plan with :meth:`plan`, then ``start_replicas``, ``wait_ready``, ``start_haproxy``."""

    replicas: list[Replica]
    host: str
    port: int
    stats_port: int
    haproxy_bin: Path
    config_path: Path
    haproxy_env: dict[str, str]
    haproxy_log: Path | None
    stats_user: str
    stats_password: str
    stats_password_generated: bool
    database_url: str
    haproxy: subprocess.Popen[bytes] | None = field(default=None)

    @classmethod
    def plan(
        cls,
        count: int,
        settings: Settings,
        haproxy_bin: Path,
        host: str = "127.0.0.1",
        port: int = 8088,
        stats_port: int = 8404,
        env: Mapping[str, str] | None = None,
        haproxy_log: Path | None = None,
    ) -> LocalTopology:
        """Choose replica ports, write the replicas' environment and the HAProxy config.

        ``env`` is the base environment (default: this process's); ``settings`` must be what
        it configures. Nothing is started.
        """
        base = dict(os.environ if env is None else env)
        work = settings.var_dir / "topology"
        work.mkdir(parents=True, exist_ok=True)
        front = url_for(host, port)
        replica_env = {
            **base,
            "AISTACK_TRUSTED_PROXIES": "127.0.0.1",
            "AISTACK_PUBLIC_BASE_URL": settings.public_base_url or front,
        }
        replicas = [
            Replica(f"r{i}", free_port(), replica_env, work / f"r{i}.log")
            for i in range(1, count + 1)
        ]
        user, password, generated = stats_credentials(base)
        config = work / "haproxy.cfg"
        servers = [Server(r.name, "127.0.0.1", r.port) for r in replicas]
        config.write_text(
            render_local(
                servers, bind_address(host, port), bind_address(host, stats_port), settings
            )
        )
        haproxy_env = {**base, STATS_USER_ENV: user, STATS_PASSWORD_ENV: password}
        return cls(
            replicas,
            host,
            port,
            stats_port,
            haproxy_bin,
            config,
            haproxy_env,
            haproxy_log,
            user,
            password,
            generated,
            settings.resolved_database_url,
        )

    @property
    def url(self) -> str:
        return url_for(self.host, self.port)

    @property
    def stats_url(self) -> str:
        return url_for(self.host, self.stats_port) + STATS_PATH

    def replica(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    def check_config(self) -> None:
        """``haproxy -c`` on the rendered file; raises with HAProxy's words when invalid."""
        valid, output = check_config(self.haproxy_bin, self.config_path, self.haproxy_env)
        if not valid:
            raise TopologyError(f"haproxy -c rejected {self.config_path}:\n{output}")

    def start_replicas(self) -> None:
        self.prepare_database()
        for replica in self.replicas:
            replica.start()

    def prepare_database(self) -> None:
        """Every table the replicas use, made before they start (``prepare_database``)."""
        prepare_database(self.database_url)

    def wait_ready(
        self,
        timeout_s: float = 180.0,
        on_ready: Callable[[Replica, float], None] | None = None,
    ) -> None:
        """Until every replica's ``/readyz`` is 200; raises if one exits or time runs out."""
        waiting = list(self.replicas)
        deadline = time.monotonic() + timeout_s
        while waiting:
            for replica in list(waiting):
                if not replica.running:
                    raise TopologyError(
                        f"replica {replica.name} exited with code {replica.exit_code}:\n"
                        f"{replica.log_tail()}"
                    )
                if replica.ready():
                    waiting.remove(replica)
                    if on_ready is not None:
                        on_ready(replica, time.monotonic() - replica.started_at)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(r.name for r in waiting)
                raise TopologyError(f"replicas not ready after {timeout_s:g} s: {names}")
            if waiting:
                time.sleep(0.2)

    def start_haproxy(self, timeout_s: float = 10.0) -> None:
        """Start HAProxy in the foreground mode (``-db``) and wait until it routes."""
        if self.haproxy_log is not None:
            self.haproxy_log.parent.mkdir(parents=True, exist_ok=True)
        command = [str(self.haproxy_bin), "-f", str(self.config_path), "-db"]
        self.haproxy = spawn(command, self.haproxy_env, self.haproxy_log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.haproxy.poll() is not None:
                raise TopologyError(f"haproxy exited with code {self.haproxy.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TopologyError(f"haproxy did not answer on {self.url} within {timeout_s:g} s")

    def start(self, on_ready: Callable[[Replica, float], None] | None = None) -> None:
        """Check the config, start replicas, wait for them, then HAProxy in front."""
        self.check_config()
        self.start_replicas()
        self.wait_ready(on_ready=on_ready)
        self.start_haproxy()

    def stop(self) -> None:
        """HAProxy first (soft stop: open requests finish), then every replica (SIGTERM)."""
        if self.haproxy is not None:
            stop_processes([self.haproxy], HAPROXY_STOP_S, first_signal=signal.SIGUSR1)
        processes = [r.process for r in self.replicas if r.process is not None]
        stop_processes(processes, REPLICA_STOP_S)

    def child_pids(self) -> list[int]:
        pids = [r.pid for r in self.replicas if r.running and r.pid is not None]
        if self.haproxy is not None and self.haproxy.poll() is None:
            pids.append(self.haproxy.pid)
        return pids
