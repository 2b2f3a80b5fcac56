"""A circuit breaker per inference backend: stop sending to one that keeps failing, then
let a single trial request find out whether it has recovered.

closed → (``failures`` in a row) → open → (``cooldown_s`` later) → half-open: one trial;
success closes it, failure opens it again with the cooldown doubled (up to ``max_cooldown_s``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(
        self,
        failures: int = 3,
        cooldown_s: float = 5.0,
        max_cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_open = failures
        self.base_cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._cooldown_s = cooldown_s
        self._trial_running = False

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._state()

    def _state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at >= self._cooldown_s:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def allow(self) -> bool:
        """May a request go now? In half-open state only one trial is let through."""
        with self._lock:
            state = self._state()
            if state is CircuitState.CLOSED:
                return True
            if state is CircuitState.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._cooldown_s = self.base_cooldown_s
            self._trial_running = False

    def record_failure(self) -> None:
        with self._lock:
            if self._opened_at is not None:  # the trial failed: stay away longer
                self._cooldown_s = min(self._cooldown_s * 2, self.max_cooldown_s)
                self._opened_at = self._clock()
                self._trial_running = False
                return
            self._failures += 1
            if self._failures >= self.failures_to_open:
                self._opened_at = self._clock()

    def release_trial(self) -> None:
        """A trial that ended without a verdict (e.g. refused by a full queue)."""
        with self._lock:
            self._trial_running = False
