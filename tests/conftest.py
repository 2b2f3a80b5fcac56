"""Shared fixtures: paths to data and the committed model, and a real server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aistack.bench.local_server import LocalServer, start_local_server

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "covid19"
DATA_DIR = Path(os.environ.get("AISTACK_DATA", ROOT.parent / "shared" / "data"))
XRAY_TEST = DATA_DIR / "xray" / "test"
XRAY_TRAIN = DATA_DIR / "xray" / "train"


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


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """The real standalone service with the committed model, on 127.0.0.1, auth on.

    ``live_server.api_key`` is an admin key; ``api`` below is a client that sends it.
    """
    if not (MODEL_DIR / "1" / "saved_model.pb").is_file():
        pytest.fail(f"the committed model is missing at {MODEL_DIR}/1")
    server = start_local_server(
        tmp_path_factory.mktemp("server-var"),
        # The suite's requests come far faster than any one client's, and its admin key is
        # shared by every module: a lifted budget keeps a burst in one test from turning a
        # later test's request into a 429. The limiter has a server of its own in
        # tests/api/test_auth.py.
        env={
            "AISTACK_MODEL_DIR": str(MODEL_DIR),
            "AISTACK_KEY_CACHE_S": "1",
            "AISTACK_RATE_LIMIT": "100000/second",
        },
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def api(live_server: LocalServer) -> Iterator[httpx.Client]:
    """An HTTP client for the live server that authenticates as its admin key."""
    with live_server.client() as client:
        yield client


# --- the committed model for the TF Serving doubles (tests/doubles) and what they must equal


@pytest.fixture(scope="session")
def repository():
    """The committed model folder loaded once a session: what the TF Serving doubles serve."""
    from tests.doubles.helpers import committed_repository  # noqa: PLC0415 - imports TF

    return committed_repository()


@pytest.fixture(scope="session")
def reference():
    """The in-process engine on the committed version: what TF Serving's answers must equal."""
    from tests.doubles.helpers import reference_engine  # noqa: PLC0415 - imports TF

    return reference_engine()


@pytest.fixture(scope="session")
def real_pixels(sample_images: dict[str, Path], reference) -> object:
    """One test image per class, prepared as the service prepares uploads."""
    from tests.doubles.helpers import model_inputs  # noqa: PLC0415

    return model_inputs(sample_images.values(), reference.info.image_size)
