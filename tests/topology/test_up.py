"""`aistack up` as a user runs it: refusals up front, and nothing left behind when stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aistack.cli import app
from aistack.config import get_settings
from aistack.topology.replicas import free_port
from tests.conftest import MODEL_DIR, ROOT
from tests.topology.helpers import require_haproxy, wait_for


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_up_without_haproxy_exits_2_and_says_so(fresh_settings: pytest.MonkeyPatch):
    result = CliRunner().invoke(app, ["up", "--haproxy", "/nonexistent/haproxy"])
    assert result.exit_code == 2
    assert "haproxy not found" in result.output


def test_up_refuses_auth_off_beyond_loopback(fresh_settings: pytest.MonkeyPatch):
    fresh_settings.setenv("AISTACK_AUTH", "off")
    result = CliRunner().invoke(app, ["up", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "loopback" in result.output


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"]
)
def test_up_leaves_no_process_behind(tmp_path: Path, signum: signal.Signals):
    """Ctrl-C and SIGTERM stop HAProxy and the replicas; even a killed `up` takes them along."""
    require_haproxy()
    port, stats_port = free_port(), free_port()
    env = {
        **os.environ,
        "AISTACK_VAR_DIR": str(tmp_path),
        "AISTACK_MODEL_DIR": str(MODEL_DIR),
        "HAPROXY_STATS_USER": "ops",
        "HAPROXY_STATS_PASSWORD": "not-the-default",
    }
    command = [sys.executable, "-m", "aistack.cli", "up", "--replicas", "1"]
    command += ["--port", str(port), "--stats-port", str(stats_port)]
    with (tmp_path / "up.log").open("wb") as log:
        up = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _ready(port) or up.poll() is not None, 90, step_s=0.3)
        assert up.poll() is None, (tmp_path / "up.log").read_text()
        children = children_of(up.pid)
        assert len(children) == 2  # one replica, one haproxy
        up.send_signal(signum)
        code = up.wait(40)
        wait_for(lambda: not any(alive(pid) for pid in children), 20)
    finally:
        if up.poll() is None:
            up.kill()
    assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 0)
    if signum != signal.SIGKILL:
        assert "stopped" in (tmp_path / "up.log").read_text()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
