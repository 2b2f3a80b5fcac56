"""The bounded queue refuses at once when full; the circuit breaker opens, probes, recovers."""

from __future__ import annotations

import threading
import time

import pytest

from aistack.inference.breaker import CircuitBreaker, CircuitState
from aistack.inference.gate import Gate, GateFull, GateTimeout


def _hold(gate: Gate, entered: threading.Event, release: threading.Event) -> None:
    with gate.enter():
        entered.set()
        release.wait(10)


def test_gate_runs_some_queues_some_and_refuses_the_rest_at_once():
    gate = Gate(concurrency=1, queue=1)
    release = threading.Event()
    running, queued = threading.Event(), threading.Event()
    first = threading.Thread(target=_hold, args=(gate, running, release))
    first.start()
    assert running.wait(5)
    second = threading.Thread(target=_hold, args=(gate, queued, release))
    second.start()
    deadline = time.monotonic() + 5
    while gate.outstanding < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert (gate.outstanding, gate.waiting) == (2, 1)
    started = time.perf_counter()
    with pytest.raises(GateFull), gate.enter():
        pass
    assert time.perf_counter() - started < 0.05  # refused without waiting
    release.set()
    first.join(5)
    second.join(5)
    assert queued.is_set() and gate.outstanding == 0


def test_a_queued_caller_gives_up_at_its_deadline():
    gate = Gate(concurrency=1, queue=1)
    release, running = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold, args=(gate, running, release))
    holder.start()
    assert running.wait(5)
    with pytest.raises(GateTimeout), gate.enter(timeout_s=0.05):
        pass
    assert gate.outstanding == 1  # the one that gave up left its place
    release.set()
    holder.join(5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_failures_in_a_row_and_lets_one_trial_through():
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, cooldown_s=5, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is CircuitState.OPEN and not breaker.allow()
    clock.now = 5.0
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # exactly one trial
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.allow()


def test_a_failed_trial_doubles_the_cooldown_up_to_its_cap():
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown_s=2, max_cooldown_s=5, clock=clock)
    breaker.record_failure()
    clock.now = 2.0
    assert breaker.allow()
    breaker.record_failure()  # trial failed: 4 s now
    clock.now = 5.9
    assert breaker.state is CircuitState.OPEN
    clock.now = 6.0
    assert breaker.allow()
    breaker.record_failure()  # 8 s capped at 5 s
    clock.now = 11.0
    assert breaker.state is CircuitState.HALF_OPEN
