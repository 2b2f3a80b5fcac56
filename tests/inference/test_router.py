"""Router: policies, retry on another backend, circuit breaking, deadline, full queues.

``BackendDouble`` stands in for a remote inference backend (TF Serving cannot run here);
the end-to-end fault tests against TF Serving's documented REST API are in
``test_router_tfserving.py``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

from aistack.errors import (
    BackendFailed,
    BackendUnavailable,
    DeadlineExceeded,
    ModelNotFound,
    ServiceBusy,
)
from aistack.inference.breaker import CircuitBreaker
from aistack.inference.engine import EngineOutput, ModelInfo
from aistack.inference.gate import Gate
from aistack.inference.router import Backend, Policy, Router
from aistack.metrics import REGISTRY

INFO = ModelInfo("covid19", 1, 8, ("covid", "normal", "pneumonia_bac"))
PIXELS = np.zeros((1, 8, 8, 1), np.uint8)


class BackendDouble:
    """A remote backend's behaviour on demand: answer, fail, hang, or be down."""

    def __init__(self, name: str) -> None:
        self.info = INFO
        self.backend = name
        self.fail_with: Exception | None = None
        self.delay_s = 0.0
        self.up = True
        self.calls = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()

    def infer(self, pixels, heatmap, timeout_s=None) -> EngineOutput:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay_s:
                if timeout_s is not None and timeout_s < self.delay_s:
                    time.sleep(timeout_s)
                    raise DeadlineExceeded("backend double: timed out")
                time.sleep(self.delay_s)
            if self.fail_with is not None:
                raise self.fail_with
            return EngineOutput(np.full((len(pixels), 3), 1 / 3, np.float32), None)
        finally:
            with self._lock:
                self.in_flight -= 1

    def probe(self, timeout_s: float) -> bool:
        return self.up


def make_router(*names, policy=Policy.GPU_FIRST, concurrency=2, queue=2, **kwargs):
    doubles = [BackendDouble(n) for n in names]
    backends = [
        Backend(d.backend, d, Gate(concurrency, queue), CircuitBreaker(3, 0.3)) for d in doubles
    ]
    return Router(backends, policy, probe_interval_s=0, **kwargs), doubles


def served_by(router, calls):
    return Counter(router.infer(PIXELS, False).backend for _ in range(calls))


def test_gpu_first_uses_the_gpu_and_falls_back_to_cpu():
    router, (_cpu, gpu) = make_router("cpu", "gpu")
    assert served_by(router, 5) == {"gpu": 5}
    gpu.fail_with = BackendUnavailable("gpu down")
    assert served_by(router, 5) == {"cpu": 5}  # each call retried on the CPU, none failed


def test_round_robin_spreads_evenly():
    router, _ = make_router("a", "b", "c", policy=Policy.ROUND_ROBIN)
    assert served_by(router, 9) == {"a": 3, "b": 3, "c": 3}


def test_least_outstanding_avoids_the_busy_backend():
    router, (slow, _fast) = make_router("slow", "fast", policy=Policy.LEAST_OUTSTANDING)
    slow.delay_s = 0.5
    first = threading.Thread(target=router.infer, args=(PIXELS, False))
    first.start()  # takes "slow" (first in turn) and keeps it busy
    time.sleep(0.05)
    # Round-robin would now alternate; least-outstanding keeps off the busy one.
    assert served_by(router, 4) == {"fast": 4}
    first.join(5)
    assert slow.calls == 1


def failures(backend: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "aistack_backend_failures_total", {"backend": backend, "reason": reason}
    )
    return value or 0.0


def test_a_failing_backend_opens_its_circuit_then_recovers():
    router, (a, _b) = make_router("a", "b", policy=Policy.ROUND_ROBIN)
    a.fail_with = BackendFailed("a: 500")
    counted = failures("a", "error")
    assert served_by(router, 12) == {"b": 12}
    assert failures("a", "error") - counted == 3  # what Prometheus sees
    calls_when_open = a.calls
    assert calls_when_open == 3  # three failures open it; then it is skipped
    served_by(router, 6)
    assert a.calls == calls_when_open
    a.fail_with = None
    time.sleep(0.35)  # the cooldown passes: one trial, it succeeds, the circuit closes
    assert served_by(router, 6) == {"a": 3, "b": 3}


def test_flapping_backend_loses_no_request():
    router, (flappy, _steady) = make_router("flappy", "steady", policy=Policy.ROUND_ROBIN)
    results = []
    for i in range(60):
        flappy.fail_with = BackendUnavailable("flap") if (i // 5) % 2 else None
        results.append(router.infer(PIXELS, False).backend)
        if i % 10 == 0:
            time.sleep(0.1)
    # Every call answered, by whichever backend was up; the flapping one still served some.
    assert len(results) == 60 and set(results) == {"flappy", "steady"}


def test_all_backends_failing_gives_the_last_error_and_down_ones_503():
    router, (a, b) = make_router("a", "b")
    a.fail_with = BackendFailed("a broke")
    b.fail_with = BackendFailed("b broke")
    with pytest.raises(BackendFailed):
        router.infer(PIXELS, False)
    for double in (a, b):
        double.up = False
    router.probe_once()
    assert not router.available
    with pytest.raises(BackendUnavailable):
        router.infer(PIXELS, False)
    a.up = True
    router.probe_once()
    a.fail_with = None
    assert router.infer(PIXELS, False).backend == "a"


def test_the_deadline_bounds_a_slow_backend():
    router, (slow,) = make_router("slow", deadline_s=0.2)
    slow.delay_s = 2.0
    started = time.perf_counter()
    with pytest.raises(DeadlineExceeded):
        router.infer(PIXELS, False)
    assert time.perf_counter() - started < 1.0


def test_client_errors_are_not_retried_nor_held_against_the_backend():
    router, (a, b) = make_router("a", "b", policy=Policy.ROUND_ROBIN)
    a.fail_with = b.fail_with = ModelNotFound("no version 9")
    for _ in range(5):
        with pytest.raises(ModelNotFound):
            router.infer(PIXELS, False)
    assert a.calls + b.calls == 5  # one call each time, no retry
    a.fail_with = b.fail_with = None
    assert served_by(router, 2) == {"a": 1, "b": 1}  # no circuit opened


def test_full_queues_are_refused_at_once():
    router, (only,) = make_router("only", concurrency=1, queue=1)
    only.delay_s = 0.5
    threads = [threading.Thread(target=router.infer, args=(PIXELS, False)) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    started = time.perf_counter()
    with pytest.raises(ServiceBusy) as refused:
        router.infer(PIXELS, False)
    assert time.perf_counter() - started < 0.05
    assert refused.value.headers["Retry-After"]
    for thread in threads:
        thread.join(5)
    assert only.peak_in_flight == 1


def test_backends_serving_different_models_are_refused():
    a, b = BackendDouble("a"), BackendDouble("b")
    b.info = ModelInfo("covid19", 2, 8, INFO.classes)
    with pytest.raises(ValueError, match="different models"):
        Router([Backend("a", a, Gate(1, 0)), Backend("b", b, Gate(1, 0))])


def test_a_backend_whose_own_queue_is_full_is_passed_over_not_held_against_it():
    router, (busy, spare) = make_router("busy", "spare")
    busy.fail_with = ServiceBusy("its micro-batcher's queue is full")
    assert served_by(router, 5) == {"spare": 5}
    assert router.status()[0]["circuit"] == "closed"
    spare.fail_with = ServiceBusy("full too")
    with pytest.raises(ServiceBusy):
        router.infer(PIXELS, False)
