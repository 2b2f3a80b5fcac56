"""A bounded queue in front of scarce work: a few run, a few wait, the rest are refused at once.

Refusing at the door keeps memory bounded and latency honest under overload: a request that
would wait longer than the work it queues behind is better told to retry (503 +
``Retry-After``) than left to hang.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class GateFull(Exception):
    """Every running and waiting place is taken."""


class GateTimeout(Exception):
    """A waiting place was taken, but no running place came before the deadline."""


class Gate:
    """``concurrency`` callers run at once, ``queue`` more may wait; the rest fail fast."""

    def __init__(self, concurrency: int, queue: int) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError("a gate needs concurrency >= 1 and queue >= 0")
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self._running = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._outstanding = 0

    @property
    def outstanding(self) -> int:
        """Running plus waiting: what least-outstanding routing compares."""
        return self._outstanding

    @property
    def full(self) -> bool:
        """Every running and waiting place is taken: a new caller would be refused."""
        return self._outstanding >= self.capacity

    @property
    def waiting(self) -> int:
        return max(0, self._outstanding - self.concurrency)

    def reserve(self) -> Ticket:
        """Take a place now or raise :class:`GateFull`; run later with ``ticket.run()``.

        Reserving early (on the event loop) and running later (in a worker thread) makes
        refusals immediate: nothing queues unseen in front of the gate.
        """
        with self._lock:
            if self.full:
                raise GateFull
            self._outstanding += 1
        return Ticket(self)

    @contextmanager
    def enter(self, timeout_s: float | None = None) -> Iterator[None]:
        """Run inside; :class:`GateFull` at once when full, :class:`GateTimeout` after waiting."""
        ticket = self.reserve()
        try:
            with ticket.run(timeout_s):
                yield
        finally:
            ticket.close()

    def _leave(self) -> None:
        with self._lock:
            self._outstanding -= 1


class Ticket:
    """A reserved place at a :class:`Gate`, given back exactly once (run or abandoned)."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def run(self, timeout_s: float | None = None) -> Iterator[None]:
        """Wait for a running slot (:class:`GateTimeout` past ``timeout_s``), then run."""
        try:
            if not self._gate._running.acquire(timeout=timeout_s):
                raise GateTimeout
            try:
                yield
            finally:
                self._gate._running.release()
        finally:
            self.close()

    def close(self) -> None:
        """Give the place back; later calls do nothing (a cancelled request may call it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._gate._leave()
