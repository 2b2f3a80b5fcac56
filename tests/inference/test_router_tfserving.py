"""The router built from ``AISTACK_BACKENDS`` over TF Serving doubles, with injected faults.

Backends are doubles of TF Serving's REST and gRPC APIs (tests/doubles) running the real
committed SavedModel; the router, the engines and the settings parsing are the real ones.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest

from aistack.config import Settings
from aistack.errors import BackendUnavailable
from aistack.inference.backends import build_router
from aistack.inference.router import Router
from tests.conftest import MODEL_DIR
from tests.doubles.helpers import synthetic_pixels
from tests.doubles.tfserving_grpc import TfServingGrpcDouble
from tests.doubles.tfserving_rest import TfServingRestDouble

PIXELS = synthetic_pixels(1)


@pytest.fixture
def gpu(repository) -> Iterator[TfServingGrpcDouble]:
    with TfServingGrpcDouble(repository=repository) as double:
        yield double


@pytest.fixture
def cpu(repository) -> Iterator[TfServingRestDouble]:
    with TfServingRestDouble(repository=repository) as double:
        yield double


def router_for(backends: str, **settings) -> Router:
    options = {
        "model_dir": MODEL_DIR,
        "backends": backends,
        "probe_interval_s": 0,  # tests probe by hand: no timing races
        "breaker_cooldown_s": 1.0,
        "inference_deadline_s": 5,
    }
    return build_router(Settings(**(options | settings)), version=1)


@pytest.fixture
def router(gpu, cpu) -> Iterator[Router]:
    built = router_for(
        f"gpu=tfserving+grpc://{gpu.target}/covid19?timeout_s=0.5,"
        f"cpu=tfserving+http://127.0.0.1:{cpu.port}/covid19?timeout_s=0.5"
    )
    for backend in built.backends:  # the doubles' first calls trace the model: not timed
        for heatmap in (False, True):
            backend.engine.infer(PIXELS, heatmap, timeout_s=60)
    gpu.predict_calls = cpu.predict_calls = 0
    yield built
    built.close()


def served_by(router: Router, calls: int) -> Counter:
    return Counter(router.infer(PIXELS, heatmap=False).backend for _ in range(calls))


def test_gpu_first_serves_from_the_gpu_with_the_in_process_results(router, gpu, cpu, reference):
    output = router.infer(PIXELS, heatmap=True)
    expected = reference.infer(PIXELS, heatmap=True)
    assert output.backend == "gpu"
    np.testing.assert_allclose(output.probabilities, expected.probabilities, atol=1e-5)
    np.testing.assert_allclose(output.heatmaps, expected.heatmaps, atol=1e-4)
    assert served_by(router, 4) == {"gpu": 4} and cpu.predict_calls == 0


def test_a_killed_gpu_is_failed_over_without_a_lost_request(router, gpu, cpu):
    gpu.stop()
    assert served_by(router, 6) == {"cpu": 6}
    router.probe_once()
    assert [b["healthy"] for b in router.status()] == [False, True]
    assert router.available


def test_a_slow_backend_times_out_and_the_request_goes_elsewhere(router, gpu):
    gpu.delay_s = 2.0  # beyond the backend's 0.5 s timeout, within the 5 s deadline
    assert served_by(router, 2) == {"cpu": 2}


def test_5xx_opens_the_circuit_and_a_trial_closes_it_again(router, gpu, cpu):
    import grpc  # noqa: PLC0415 - the gRPC extra

    gpu.fail_code = grpc.StatusCode.INTERNAL
    assert served_by(router, 8) == {"cpu": 8}
    assert gpu.predict_calls == 3  # three failures open it; the rest skip it
    assert router.status()[0]["circuit"] == "open"
    gpu.fail_code = None
    time.sleep(1.05)
    assert served_by(router, 3) == {"gpu": 3}
    assert router.status()[0]["circuit"] == "closed"


def test_a_flapping_backend_loses_no_request(router, cpu):
    router.policy = router.policy.ROUND_ROBIN
    answered = Counter()
    for i in range(40):
        cpu.fail_status = 500 if (i // 4) % 2 else None
        answered.update(served_by(router, 1))
    assert sum(answered.values()) == 40 and answered["gpu"] > 20


def test_all_backends_down_is_a_fast_503(router, gpu, cpu):
    gpu.stop()
    cpu.stop()
    with pytest.raises(BackendUnavailable):
        router.infer(PIXELS, heatmap=False)
    router.probe_once()
    assert not router.available  # readiness follows


def test_a_loading_model_is_not_routed_to(router, cpu, gpu):
    gpu.state = "LOADING"
    router.probe_once()
    assert served_by(router, 3) == {"cpu": 3} and gpu.predict_calls == 0
    gpu.state = "AVAILABLE"
    router.probe_once()
    assert served_by(router, 1) == {"gpu": 1}
