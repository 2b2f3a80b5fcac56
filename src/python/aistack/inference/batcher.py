"""Dynamic micro-batching in front of an engine: concurrent requests share one model call.

Request threads hand their inputs to one worker thread, which waits at most ``max_wait_ms``
for more work, runs a single batch of up to ``max_batch_size`` images and hands each caller
its rows back, and refuses work at once (503) when too much is queued.

Measured on 2 cores (docs/PERFORMANCE.md): a batch of 8 costs ~0.6x per image of single
calls for the committed model, yet end to end the service is no faster with batching,
because the model is a small part of a request; so it is off by default
(``AISTACK_MAX_BATCH_SIZE=1``) and meant for heavier models.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from aistack.errors import ServiceBusy
from aistack.inference.engine import EngineOutput, InferenceEngine
from aistack.metrics import BATCH_SIZE, QUEUE_DEPTH


@dataclass
class _Job:
    pixels: np.ndarray
    heatmap: bool
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    batches: int = 0
    images: int = 0
    largest_batch: int = 0


class MicroBatcher:
    """An :class:`InferenceEngine` that batches calls from many threads into few."""

    def __init__(
        self,
        engine: InferenceEngine,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        max_queued: int = 256,
    ) -> None:
        self.engine = engine
        self.info = engine.info
        self.backend = engine.backend
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.stats = BatchStats()
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queued)
        self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._worker.start()

    def infer(self, pixels: np.ndarray, heatmap: bool) -> EngineOutput:
        job = _Job(pixels, heatmap)
        try:
            self._jobs.put_nowait(job)
            QUEUE_DEPTH.labels(self.backend).set(self._jobs.qsize())
        except queue.Full as error:
            raise ServiceBusy("too many requests are waiting for the model; retry") from error
        return job.future.result()

    def close(self) -> None:
        self._jobs.put(None)
        self._worker.join(5)

    def _collect(self, first: _Job) -> list[_Job]:
        jobs, count = [first], len(first.pixels)
        deadline = time.monotonic() + self.max_wait_s
        while count < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = (
                    self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get_nowait()
                )
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)
                break
            jobs.append(job)
            count += len(job.pixels)
        return jobs

    def _run(self) -> None:
        while (first := self._jobs.get()) is not None:
            jobs = self._collect(first)
            try:
                # Grad-CAM costs about one forward pass here, so a mixed batch runs once.
                output = self.engine.infer(
                    np.concatenate([j.pixels for j in jobs]), heatmap=any(j.heatmap for j in jobs)
                )
            except Exception as error:  # noqa: BLE001 - handed to every waiting caller
                for job in jobs:
                    job.future.set_exception(error)
                continue
            self._record(sum(len(j.pixels) for j in jobs))
            start = 0
            for job in jobs:
                stop = start + len(job.pixels)
                heatmaps = output.heatmaps[start:stop] if job.heatmap else None
                job.future.set_result(EngineOutput(output.probabilities[start:stop], heatmaps))
                start = stop

    def _record(self, images: int) -> None:
        BATCH_SIZE.labels(self.backend).observe(images)
        QUEUE_DEPTH.labels(self.backend).set(self._jobs.qsize())
        self.stats.batches += 1
        self.stats.images += images
        self.stats.largest_batch = max(self.stats.largest_batch, images)
