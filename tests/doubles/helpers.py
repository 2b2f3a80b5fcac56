"""What the TF Serving engine tests share: the model, inputs, the comparison, a dead port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aistack.imaging.decode import decode_image
from aistack.imaging.preprocess import DECODE_MIN_SIDE, to_model_input
from aistack.inference.engine import EngineOutput
from aistack.inference.savedmodel import SavedModelEngine
from tests.conftest import MODEL_DIR
from tests.doubles.servables import ModelRepository, in_process_engine, load_repository

MAX_PIXELS = 50_000_000


def synthetic_pixels(count: int, size: int = 224, seed: int = 11) -> np.ndarray:
    """Varied (count, size, size, 1) uint8 images, a bright blob on a ramp with noise: inputs
    that need no data set."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        cy, cx, radius = *rng.uniform(0.2, 0.8, size=2), rng.uniform(0.1, 0.3)
        blob = 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        noise = rng.normal(0, 15, (size, size))
        images.append(np.clip(blob + 60 * xx + noise + 30, 0, 255).astype(np.uint8))
    return np.stack(images)[..., np.newaxis]


def model_inputs(paths: Iterable[Path], size: int) -> np.ndarray:
    """Image files prepared as the service prepares uploads."""
    return np.stack(
        [
            to_model_input(decode_image(p.read_bytes(), MAX_PIXELS, DECODE_MIN_SIDE).pixels, size)
            for p in paths
        ]
    )


def assert_same(got: EngineOutput, expected: EngineOutput) -> None:
    """Probabilities within 1e-5, heatmaps within 1e-4, a heatmap only where one was asked."""
    np.testing.assert_allclose(got.probabilities, expected.probabilities, rtol=0, atol=1e-5)
    if expected.heatmaps is None:
        assert got.heatmaps is None
    else:
        assert got.heatmaps is not None and got.heatmaps.shape == expected.heatmaps.shape
        np.testing.assert_allclose(got.heatmaps, expected.heatmaps, rtol=0, atol=1e-4)


def free_port() -> int:
    """A loopback port that was free a moment ago: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def committed_repository() -> ModelRepository:
    """The committed model folder, loaded once a session (the doubles' servables)."""
    if not (MODEL_DIR / "1" / "saved_model.pb").is_file():
        pytest.fail(f"the committed model is missing at {MODEL_DIR}/1")
    return load_repository(MODEL_DIR)


def reference_engine() -> SavedModelEngine:
    """The in-process engine on the committed version 1: what TF Serving must agree with."""
    return in_process_engine(MODEL_DIR, 1)


def without_faults(double: Any) -> Iterator[Any]:
    """A shared double with no fault set before or after a test (a fixture's body)."""
    double.reset_faults()
    yield double
    double.reset_faults()


def serve_http(port: int, handle: Callable[[BaseHTTPRequestHandler], None]) -> ThreadingHTTPServer:
    """A loopback HTTP server handing every GET and POST to ``handle``, in a daemon thread;
    :func:`stop_http` ends it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            handle(self)

        def do_POST(self) -> None:
            handle(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server


def stop_http(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
