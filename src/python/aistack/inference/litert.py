"""In-process engine over the version's LiteRT model (``assets.extra/model.tflite``).

The file holds the SavedModel's ``predict_pixels`` and ``gradcam_pixels`` signatures,
converted by :mod:`aistack.xray.litert_export`, with the same outputs. LiteRT runs a call on
the calling thread (no hand-off to a pool of worker threads) and releases the GIL while it
runs, so two requests compute side by side; a heatmap image costs less CPU than in
TensorFlow (``benchmarks/request_stages.py``), and serving never loads TensorFlow.

An interpreter is not thread-safe: the engine keeps a pool of them, and a call borrows one.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aistack.inference.engine import EngineOutput, check_pixels, model_info
from aistack.inference.versions import resolve_version_dir

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import SignatureRunner

LITERT_MODEL_FILE = "assets.extra/model.tflite"
"""Where a version keeps its LiteRT model; TF Serving ignores ``assets.extra``."""

PREDICT, GRADCAM = "predict_pixels", "gradcam_pixels"
log = logging.getLogger(__name__)


def litert_model_path(version_dir: Path) -> Path:
    return version_dir / LITERT_MODEL_FILE


@dataclass(frozen=True)
class _Signatures:
    """The two signatures of one interpreter, used by one thread at a time."""

    predict: SignatureRunner
    gradcam: SignatureRunner


class LiteRtEngine:
    """Runs the version's LiteRT model in this process; thread-safe, batch any size.

    ``concurrency`` interpreters serve that many calls at once (more wait for one);
    ``threads`` is LiteRT's threads per call, 0 its default. A batch runs image by image:
    the interpreters keep their one-image shapes, so no call re-plans them.
    """

    def __init__(self, version_dir: Path, concurrency: int = 2, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 - only where served

        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.backend = "inprocess"
        self.info = model_info(version_dir)
        self.concurrency, self.threads = concurrency, threads
        content = litert_model_path(version_dir).read_bytes()
        self._all: list[_Signatures] = []
        self._pool: queue.SimpleQueue[_Signatures] = queue.SimpleQueue()
        for _ in range(concurrency):
            interpreter = Interpreter(model_content=content, num_threads=threads or None)
            signatures = _Signatures(
                interpreter.get_signature_runner(PREDICT),
                interpreter.get_signature_runner(GRADCAM),
            )
            self._all.append(signatures)
            self._pool.put(signatures)
        heatmap_shape = self._all[0].gradcam.get_output_details()["heatmap"]["shape"]
        self._heatmap_size = tuple(int(n) for n in heatmap_shape[1:])
        self.warmed_up = False
        self.warm_up()

    @classmethod
    def from_model_dir(
        cls, model_dir: Path, version: int | None = None, concurrency: int = 2, threads: int = 1
    ) -> LiteRtEngine:
        """``version``, else the one labelled stable, else the only one."""
        return cls(resolve_version_dir(model_dir, version), concurrency, threads)

    def warm_up(self) -> None:
        """Every interpreter runs both signatures once: a first call prepares their kernels."""
        size = self.info.image_size
        blank = np.zeros((1, size, size, 1), np.uint8)
        for signatures in self._all:
            signatures.predict(pixels=blank)
            signatures.gradcam(pixels=blank)
        self.warmed_up = True
        log.info("model %s v%d warmed up (LiteRT)", self.info.name, self.info.version)

    def infer(self, pixels: np.ndarray, heatmap: bool) -> EngineOutput:
        check_pixels(pixels, self.info.image_size)
        pixels = np.ascontiguousarray(pixels)
        signatures = self._pool.get()
        try:
            run = signatures.gradcam if heatmap else signatures.predict
            outputs = [run(pixels=pixels[i : i + 1]) for i in range(len(pixels))]
        finally:
            self._pool.put(signatures)
        probabilities = _stack([out["probabilities"] for out in outputs], (len(self.info.classes),))
        if not heatmap:
            return EngineOutput(probabilities, None)
        return EngineOutput(
            probabilities, _stack([out["heatmap"] for out in outputs], self._heatmap_size)
        )


def _stack(rows: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """One-image outputs as one batch; an empty batch keeps the output's shape."""
    return np.concatenate(rows) if rows else np.zeros((0, *shape), np.float32)
