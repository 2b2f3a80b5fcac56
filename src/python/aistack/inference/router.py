"""Route each inference call to one of several engines: policy, health, deadline, retry.

The router is itself an :class:`InferenceEngine`, so the X-ray service neither knows nor cares
how many backends there are. Per backend it keeps a bounded queue (:class:`Gate`), a circuit
breaker fed by failures (passive) and a health flag fed by probes (active). A call picks
backends in policy order among the healthy ones, skips those whose queue is full, and on a
backend failure retries on the next one while the request's deadline allows.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from aistack.errors import (
    AistackError,
    BackendFailed,
    BackendUnavailable,
    DeadlineExceeded,
    ServiceBusy,
)
from aistack.inference.breaker import CircuitBreaker, CircuitState
from aistack.inference.engine import EngineOutput
from aistack.inference.gate import Gate, GateFull, GateTimeout
from aistack.metrics import BACKEND_FAILURES, BACKEND_UP, INFERENCE_DURATION, QUEUE_DEPTH, REJECTED

log = logging.getLogger(__name__)

RETRYABLE = (BackendUnavailable, BackendFailed)
"""Failures another backend may not share; a deadline or a client error is not retried."""


class Policy(StrEnum):
    GPU_FIRST = "gpu-first"
    """Backends named ``gpu…`` first, the others (CPU) only as fallback."""
    ROUND_ROBIN = "round-robin"
    LEAST_OUTSTANDING = "least-outstanding"
    """The backend with the fewest calls running or queued; ties rotate."""


@dataclass
class Backend:
    name: str
    engine: Any  # an InferenceEngine, optionally with probe() and infer(..., timeout_s=)
    gate: Gate
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    healthy: bool = True
    """Set by the active probe; an engine without ``probe`` is taken as healthy."""

    def __post_init__(self) -> None:
        self.takes_timeout = "timeout_s" in inspect.signature(self.engine.infer).parameters
        self.probes = callable(getattr(self.engine, "probe", None))

    @property
    def address(self) -> str:
        return str(getattr(self.engine, "address", self.name))

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "healthy": self.healthy,
            "circuit": str(self.breaker.state),
            "outstanding": self.gate.outstanding,
        }


class Router:
    """An :class:`InferenceEngine` over several backends serving the same model version."""

    backend = "router"

    def __init__(
        self,
        backends: list[Backend],
        policy: Policy = Policy.GPU_FIRST,
        deadline_s: float = 10.0,
        probe_interval_s: float = 2.0,
        probe_timeout_s: float = 1.0,
    ) -> None:
        if not backends:
            raise ValueError("a router needs at least one backend")
        infos = {b.engine.info for b in backends}
        if len(infos) != 1:
            raise ValueError(f"backends serve different models: {sorted(map(str, infos))}")
        self.info = backends[0].engine.info
        self.backends = backends
        self.policy = Policy(policy)
        self.deadline_s = deadline_s
        self.probe_timeout_s = probe_timeout_s
        self._turn = itertools.count()
        self._stop = threading.Event()
        for backend in backends:
            BACKEND_UP.labels(backend.name).set(1)
        self._prober: threading.Thread | None = None
        if any(b.probes for b in backends) and probe_interval_s > 0:
            self._prober = threading.Thread(
                target=self._probe_forever, args=(probe_interval_s,), name="backend-probe",
                daemon=True,
            )  # fmt: skip
            self._prober.start()

    # -- choosing ---------------------------------------------------------------------------

    def order(self) -> list[Backend]:
        """Backends in the order this call should try them, before health filtering."""
        turn = next(self._turn) % len(self.backends)
        rotated = self.backends[turn:] + self.backends[:turn]
        if self.policy is Policy.GPU_FIRST:
            return sorted(self.backends, key=lambda b: not b.name.lower().startswith("gpu"))
        if self.policy is Policy.LEAST_OUTSTANDING:
            return sorted(rotated, key=lambda b: b.gate.outstanding)
        return rotated

    # -- calling ----------------------------------------------------------------------------

    def infer(
        self, pixels: np.ndarray, heatmap: bool, timeout_s: float | None = None
    ) -> EngineOutput:
        deadline = time.monotonic() + (timeout_s or self.deadline_s)
        failure: AistackError | None = None
        queues_full = 0
        for backend in self.order():
            if not backend.healthy or not backend.breaker.allow():
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                backend.breaker.release_trial()
                break
            try:
                with backend.gate.enter(remaining):
                    return self._call(backend, pixels, heatmap, deadline)
            except (GateFull, ServiceBusy):  # its queue (or its micro-batcher's) is full
                backend.breaker.release_trial()
                queues_full += 1
            except GateTimeout:
                backend.breaker.release_trial()
                failure = DeadlineExceeded(
                    f"no inference slot on backend {backend.name} within the deadline"
                )
                break
            except RETRYABLE as error:
                failure = error
                log.warning("backend %s failed, trying another: %s", backend.name, error)
            except DeadlineExceeded as error:
                failure = error  # the backend's own timeout may leave time for another
                if time.monotonic() >= deadline:
                    break
        if failure is not None:
            raise failure
        if queues_full:
            REJECTED.labels("backend_queue").inc()
            raise ServiceBusy("every inference backend's queue is full; retry shortly")
        raise BackendUnavailable("no inference backend is available: all down or circuits open")

    def _call(
        self, backend: Backend, pixels: np.ndarray, heatmap: bool, deadline: float
    ) -> EngineOutput:
        QUEUE_DEPTH.labels(backend.name).set(backend.gate.waiting)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            backend.breaker.release_trial()
            raise DeadlineExceeded("the inference deadline passed while queued")
        started = time.perf_counter()
        try:
            if backend.takes_timeout:  # its own timeout, cut short by the request's deadline
                own = getattr(backend.engine, "timeout_s", None) or remaining
                output = backend.engine.infer(pixels, heatmap, timeout_s=min(own, remaining))
            else:
                output = backend.engine.infer(pixels, heatmap)
        except BackendUnavailable:
            self._failed(backend, "unavailable")
            raise
        except ServiceBusy:  # a full queue inside the engine: busy, not broken
            raise
        except DeadlineExceeded:
            self._failed(backend, "timeout")
            raise
        except AistackError as error:
            if error.status < 500:  # the request, not the backend, is at fault
                backend.breaker.record_success()
                raise
            self._failed(backend, "error")
            raise BackendFailed(f"backend {backend.name}: {error.message}") from error
        except Exception as error:
            self._failed(backend, "error")
            log.exception("backend %s raised", backend.name)
            raise BackendFailed(f"backend {backend.name} failed: {type(error).__name__}") from error
        INFERENCE_DURATION.labels(backend.name, str(heatmap).lower()).observe(
            time.perf_counter() - started
        )
        backend.breaker.record_success()
        return EngineOutput(output.probabilities, output.heatmaps, backend.name)

    def _failed(self, backend: Backend, reason: str) -> None:
        BACKEND_FAILURES.labels(backend.name, reason).inc()
        backend.breaker.record_failure()
        if backend.breaker.state is not CircuitState.CLOSED:
            log.warning("circuit for backend %s is open after failures", backend.name)

    # -- health -----------------------------------------------------------------------------

    def probe_once(self) -> None:
        for backend in self.backends:
            if not backend.probes:
                continue
            try:
                up = bool(backend.engine.probe(self.probe_timeout_s))
            except Exception:  # noqa: BLE001 - a probe that raises says "down"
                up = False
            if up != backend.healthy:
                log.warning("backend %s is %s", backend.name, "up" if up else "down")
            backend.healthy = up
            circuit_open = backend.breaker.state is CircuitState.OPEN
            BACKEND_UP.labels(backend.name).set(int(up and not circuit_open))

    def _probe_forever(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.probe_once()

    @property
    def available(self) -> bool:
        """Some backend is healthy with its circuit not open: readiness."""
        return any(b.healthy and b.breaker.state is not CircuitState.OPEN for b in self.backends)

    def status(self) -> list[dict[str, Any]]:
        return [b.status() for b in self.backends]

    def close(self) -> None:
        self._stop.set()
        for backend in self.backends:
            close = getattr(backend.engine, "close", None)
            if callable(close):
                close()
