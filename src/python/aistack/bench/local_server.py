"""Run `aistack serve` as a child process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalServer:
    """A started server; ``ready_s`` is process start to ``/readyz`` = 200.

    ``api_key`` is an admin key created for it (None when it runs with auth off).
    """

    url: str
    var_dir: Path
    process: subprocess.Popen
    log_path: Path
    ready_s: float = field(default=0.0)
    api_key: str | None = None
    database_url: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, **kwargs) -> httpx.Client:
        """An HTTP client for this server, carrying its admin key."""
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, headers=self.headers, **kwargs)

    def create_key(self, name: str, role: str) -> str:
        """Another key in the server's database (valid at once: only hits are cached)."""
        return create_key(self.database_url, name, role)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self, peak: bool = False) -> float:
        """Resident memory now (VmRSS) or at its peak (VmHWM), in MB (Linux)."""
        key = "VmHWM:" if peak else "VmRSS:"
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_s(self) -> float:
        """CPU seconds the server has used, all threads, user and system, its live worker
        processes' (``--workers``) included.

        On a shared machine CPU per request is steadier than throughput, which anything
        else running steals from.
        """
        return sum(_process_cpu_s(pid) for pid in _with_descendants(self.pid))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:  # exited meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _with_descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (Linux ``/proc``)."""
    found, index = [pid], 0
    while index < len(found):
        tasks = Path(f"/proc/{found[index]}/task")
        for children in tasks.glob("*/children") if tasks.is_dir() else ():
            try:
                found += [int(child) for child in children.read_text().split()]
            except FileNotFoundError:  # the thread or process ended meanwhile
                continue
        index += 1
    return found


def create_key(database_url: str, name: str, role: str) -> str:
    from aistack.auth.keys import KeyStore  # noqa: PLC0415 - only when keys are made
    from aistack.store import PredictionStore  # noqa: PLC0415

    store = PredictionStore(database_url)
    try:
        store.create_schema()
        return KeyStore(store.engine, cache_s=0).create(name, role)[1]
    finally:
        store.close()


def start_local_server(
    var_dir: Path, env: dict[str, str] | None = None, timeout_s: float = 90
) -> LocalServer:
    """Start and wait until ready; raises with the server's log if it exits or hangs.

    Unless ``env`` turns auth off, an admin key is created first (``LocalServer.api_key``).
    """
    port = free_port()
    var_dir.mkdir(parents=True, exist_ok=True)
    log_path = var_dir / "server.log"
    env = {"AISTACK_VAR_DIR": str(var_dir), **(env or {})}
    database_url = env.get("AISTACK_DATABASE_URL") or f"sqlite:///{var_dir / 'aistack.db'}"
    auth = {**os.environ, **env}.get("AISTACK_AUTH", "on")
    auth_on = auth.lower() not in {"off", "false", "0", "no"}
    api_key = create_key(database_url, f"local-admin-{port}", "admin") if auth_on else None
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aistack.cli",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "info",
        ],
        env={**os.environ, **env},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                ready_s = round(time.monotonic() - started, 2)
                return LocalServer(url, var_dir, process, log_path, ready_s, api_key, database_url)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server not ready in {timeout_s} s:\n{log_path.read_text()}")
