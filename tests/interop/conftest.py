"""Fixtures of the IRIS runtime's tests: IRIS doubled, TF Serving doubled, the rest real."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from iop.runtime import iris as iop_iris

from aistack.api.app import create_app
from aistack.config import Settings
from aistack.interop import wiring
from aistack.interop.settings import prod
from aistack.runtime import Runtime
from tests.conftest import MODEL_DIR
from tests.doubles.helpers import free_port
from tests.doubles.tfserving_rest import TfServingRestDouble
from tests.interop.iris_double import IrisDouble, ProductionDouble, QueueDouble


@pytest.fixture
def iris(monkeypatch: pytest.MonkeyPatch) -> IrisDouble:
    """IoP's way into IRIS answered by the double, for this test."""
    double = IrisDouble()
    monkeypatch.setattr(iop_iris, "get_iris", lambda namespace=None: double)
    return double


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's ``AISTACK_*`` environment; the job's runtime is built from it anew."""
    monkeypatch.setenv("AISTACK_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("AISTACK_MODEL_DIR", str(MODEL_DIR))
    monkeypatch.setenv("AISTACK_AUTH", "off")
    monkeypatch.setenv("AISTACK_PUBLIC_BASE_URL", "http://iris.test")
    wiring.reset()
    yield tmp_path / "var"
    wiring.reset()


@pytest.fixture(scope="session")
def tfserving(repository) -> Iterator[TfServingRestDouble]:
    """TF Serving's REST API (the documented double) serving the committed model."""
    with TfServingRestDouble(repository=repository) as double:
        yield double


@pytest.fixture(scope="session")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The standalone app, model in process, authentication off (as on the IRIS side).

    It runs the SavedModel, as TF Serving does on the IRIS side, so that answers compare
    exactly; LiteRT's agreement with the SavedModel (within 1e-5) is tested on its own.
    """
    settings = Settings(
        var_dir=tmp_path_factory.mktemp("standalone"),
        model_dir=MODEL_DIR,
        inprocess_runtime="tensorflow",
        auth=False,
        rate_limit="",
        public_base_url="http://standalone.test",
    )
    runtime = Runtime(settings)
    with TestClient(create_app(settings, runtime)) as client:
        assert runtime.wait_ready(120), runtime.load_error
        yield client


@pytest.fixture
def dead_url() -> str:
    """A loopback address nothing listens on: a TF Serving that is down."""
    return f"http://127.0.0.1:{free_port()}"


Factory = Callable[..., ProductionDouble]


@pytest.fixture
def production(iris: IrisDouble, var_dir: Path) -> Iterator[Factory]:
    """Start the real production graph (settings.py) on the IRIS double.

    ``production(gpu_url, cpu_url, queue=None, **router_settings)``.
    """
    started: list[ProductionDouble] = []

    def start(gpu_url: str, cpu_url: str, queue: QueueDouble | None = None, **router: str):
        overrides = {
            "TfServingGpu": {"url": gpu_url},
            "TfServingCpu": {"url": cpu_url},
            "XRayRouter": router,
        }
        running = ProductionDouble(prod, iris, queue, overrides)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
