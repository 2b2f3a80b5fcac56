"""Child processes of the local topology: `aistack serve` replicas and HAProxy.

Children run in their own process group, so a terminal's Ctrl-C reaches only the parent,
which then stops them in order (HAProxy first, then the replicas). They also get SIGTERM
from the kernel if the parent dies without doing so (``PR_SET_PDEATHSIG``), so that a killed
parent leaves no orphans. Spawn them from a thread that lives as long as they should: the
kernel signal follows the spawning thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS has just called free (another process could still take it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent(parent: int) -> Callable[[], None]:
    def prepare() -> None:  # runs in the child between fork and exec: no locks, no imports
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return prepare


def spawn(
    command: Sequence[str], env: Mapping[str, str], output: Path | None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group, bound to this process's life.

    ``output`` receives stdout and stderr; None leaves both on this process's own.
    """
    stream = output.open("ab") if output is not None else None
    try:
        return subprocess.Popen(
            list(command),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT if stream is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    finally:
        if stream is not None:
            stream.close()  # the child holds its own descriptor


def stop_processes(
    processes: Sequence[subprocess.Popen[bytes]],
    timeout_s: float,
    first_signal: int = signal.SIGTERM,
) -> None:
    """Signal all at once, wait up to ``timeout_s`` for all, SIGKILL whoever is left."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.send_signal(first_signal)  # a no-op once it has exited
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Replica:
    """One `aistack serve` on a loopback port; restartable on the same port."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = field(default=0.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "aistack.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def start(self) -> None:
        """Start (or start again after it exited); a running replica is left alone."""
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        self.process = spawn(self.command(), self.env, self.log_path)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def ready(self, timeout_s: float = 2.0) -> bool:
        """``/readyz`` answers 200 (model loaded and warm)."""
        try:
            return httpx.get(f"{self.url}/readyz", timeout=timeout_s).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """Signal and reap (for failure drills); ``stop`` is the clean way."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
