"""In-process engine over the exported SavedModel's ``*_pixels`` signatures.

The signatures are concrete graph functions: loading compiles them once, a warm-up call per
batch size settles oneDNN kernels, and every request then runs the graph (no Keras
``predict()``, no eager execution, no retracing).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from aistack.inference.engine import EngineOutput, check_pixels, model_info
from aistack.inference.versions import available_versions as available_versions
from aistack.inference.versions import resolve_version_dir as resolve_version_dir

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
log = logging.getLogger(__name__)


def configure_threads(intra_op: int, inter_op: int) -> None:
    """TensorFlow's thread pools; 0 leaves TensorFlow's choice (one thread per core).

    Only possible before TensorFlow runs anything, so the first engine of a process decides.
    The LiteRT runtime (:mod:`aistack.inference.litert`) takes its threads per interpreter.
    """
    import tensorflow as tf  # noqa: PLC0415

    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        log.warning("TensorFlow already initialised: its thread settings stay as they were")


class SavedModelEngine:
    """Runs the exported model in this process; thread-safe, batch any size."""

    def __init__(
        self, version_dir: Path, warmup_batch_sizes: tuple[int, ...] = tuple(range(1, 9))
    ) -> None:
        import tensorflow as tf  # noqa: PLC0415 - heavy import only where a model is served

        self._tf = tf
        self.backend = "inprocess"
        self.info = model_info(version_dir)
        self._loaded = tf.saved_model.load(str(version_dir))
        self._predict = self._loaded.signatures["predict_pixels"]
        self._gradcam = self._loaded.signatures["gradcam_pixels"]
        self.warmed_up = False
        self.warm_up(warmup_batch_sizes)

    @classmethod
    def from_model_dir(cls, model_dir: Path, version: int | None = None) -> SavedModelEngine:
        """``version``, else the one ``version_labels.json`` labels stable, else the only one.

        Never simply the highest: a newly trained version is served only once chosen.
        """
        return cls(resolve_version_dir(model_dir, version))

    def warm_up(self, batch_sizes: tuple[int, ...]) -> None:
        size = self.info.image_size
        for batch in batch_sizes:
            blank = np.zeros((batch, size, size, 1), np.uint8)
            self.infer(blank, heatmap=False)
            self.infer(blank, heatmap=True)
        self.warmed_up = True
        log.info("model %s v%d warmed up", self.info.name, self.info.version)

    def infer(self, pixels: np.ndarray, heatmap: bool) -> EngineOutput:
        check_pixels(pixels, self.info.image_size)
        tensor = self._tf.constant(pixels)
        if heatmap:
            out = self._gradcam(pixels=tensor)
            return EngineOutput(out["probabilities"].numpy(), out["heatmap"].numpy())
        out = self._predict(pixels=tensor)
        return EngineOutput(out["probabilities"].numpy(), None)
