"""The micro-batcher gives every caller exactly its own rows, and does batch."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from aistack.errors import ServiceBusy
from aistack.inference.batcher import MicroBatcher
from aistack.inference.savedmodel import SavedModelEngine
from aistack.metrics import REGISTRY
from tests.conftest import MODEL_DIR


@pytest.fixture(scope="module")
def engine() -> SavedModelEngine:
    return SavedModelEngine.from_model_dir(MODEL_DIR)


def distinct_inputs(engine: SavedModelEngine, count: int) -> list[np.ndarray]:
    size = engine.info.image_size
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (1, size, size, 1), dtype=np.uint8) for _ in range(count)]


def test_concurrent_callers_get_their_own_results(engine):
    inputs = distinct_inputs(engine, 24)
    expected = [engine.infer(x, heatmap=True) for x in inputs]
    batches_before = batch_metric("aistack_batch_size_count")
    images_before = batch_metric("aistack_batch_size_sum")
    batcher = MicroBatcher(engine, max_batch_size=8, max_wait_ms=20)
    try:
        with ThreadPoolExecutor(8) as pool:
            # Half ask for heatmaps: mixed batches must hand back heatmaps only where asked.
            results = list(
                pool.map(lambda i: batcher.infer(inputs[i], heatmap=i % 2 == 0), range(len(inputs)))
            )
    finally:
        batcher.close()
    for i, (got, want) in enumerate(zip(results, expected, strict=True)):
        np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-5)
        if i % 2 == 0:
            np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-4)
        else:
            assert got.heatmaps is None
    assert batcher.stats.images == len(inputs)
    assert batcher.stats.largest_batch > 1
    assert batcher.stats.batches < len(inputs)
    # The batch-size histogram saw the same batches and images.
    assert batch_metric("aistack_batch_size_count") - batches_before == batcher.stats.batches
    assert batch_metric("aistack_batch_size_sum") - images_before == len(inputs)


def batch_metric(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"backend": "inprocess"}) or 0.0


def test_engine_errors_reach_the_caller(engine):
    batcher = MicroBatcher(engine)
    try:
        with pytest.raises(ValueError, match="uint8"):
            batcher.infer(np.zeros((1, 8, 8, 1), np.float32), heatmap=False)
        # and the worker survives to serve the next call
        ok = batcher.infer(distinct_inputs(engine, 1)[0], heatmap=False)
        assert ok.probabilities.shape == (1, len(engine.info.classes))
    finally:
        batcher.close()


class BlockedEngine:
    """A stand-in engine that holds the worker until released, to fill the queue."""

    backend = "blocked"

    def __init__(self, info) -> None:
        self.info = info
        self.release = threading.Event()

    def infer(self, pixels, heatmap):
        self.release.wait(10)
        raise RuntimeError("released")


def test_a_full_queue_is_refused_at_once(engine):
    blocked = BlockedEngine(engine.info)
    batcher = MicroBatcher(blocked, max_batch_size=1, max_queued=2)
    pixels = distinct_inputs(engine, 1)[0]
    with ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(batcher.infer, pixels, False) for _ in range(3)]
        threading.Event().wait(0.3)
        with pytest.raises(ServiceBusy):
            batcher.infer(pixels, heatmap=False)
        blocked.release.set()
        for future in waiting:
            with pytest.raises(RuntimeError):
                future.result(10)
    batcher.close()
