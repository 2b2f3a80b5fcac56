"""Shared fixtures: paths to data and the committed model, and a real server on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "covid19"
DATA_DIR = Path(os.environ.get("AISTACK_DATA", ROOT.parent / "shared" / "data"))
XRAY_TEST = DATA_DIR / "xray" / "test"
XRAY_TRAIN = DATA_DIR / "xray" / "train"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def xray_test_dir() -> Path:
    if not XRAY_TEST.is_dir():
        pytest.skip(f"the X-ray test set is not at {XRAY_TEST}")
    return XRAY_TEST


@pytest.fixture(scope="session")
def xray_train_dir() -> Path:
    if not XRAY_TRAIN.is_dir():
        pytest.skip(f"the X-ray training set is not at {XRAY_TRAIN}")
    return XRAY_TRAIN


@pytest.fixture(scope="session")
def sample_images(xray_test_dir: Path) -> dict[str, Path]:
    """One test image per class."""
    return {
        c: sorted((xray_test_dir / c).iterdir())[0] for c in ("covid", "normal", "pneumonia_bac")
    }


@dataclass
class LiveServer:
    url: str
    var_dir: Path
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    var_dir: Path, env_extra: dict[str, str] | None = None, timeout_s: float = 90
) -> LiveServer:
    """`aistack serve` in a subprocess on a free loopback port, returned once ready."""
    port = free_port()
    var_dir.mkdir(parents=True, exist_ok=True)
    log_path = var_dir / "server.log"
    env = {
        **os.environ,
        "AISTACK_VAR_DIR": str(var_dir),
        "AISTACK_MODEL_DIR": str(MODEL_DIR),
        **(env_extra or {}),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aistack.cli",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return LiveServer(url, var_dir, process, log_path)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server not ready in {timeout_s} s:\n{log_path.read_text()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real standalone service with the committed model, on 127.0.0.1."""
    if not (MODEL_DIR / "1" / "saved_model.pb").is_file():
        pytest.fail(f"the committed model is missing at {MODEL_DIR}/1")
    server = start_server(tmp_path_factory.mktemp("server-var"))
    yield server
    stop_server(server)
