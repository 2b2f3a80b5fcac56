"""A version's LiteRT model, converted from its own SavedModel.

The in-process engine runs it (:class:`aistack.inference.litert.LiteRtEngine`): the same
``predict_pixels`` and ``gradcam_pixels`` signatures at less CPU per image, without loading
TensorFlow. It is derived, never trained: converting the version's SavedModel again gives
the same bytes with the same TensorFlow, so the file can be checked against its source.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from aistack.atomic_files import replacing
from aistack.inference.litert import GRADCAM, PREDICT, litert_model_path


def litert_model_bytes(version_dir: Path) -> bytes:
    """The SavedModel's pixel signatures as one LiteRT flatbuffer (float32, builtin ops)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(version_dir), signature_keys=[PREDICT, GRADCAM]
    )
    return converter.convert()


def write_litert_model(version_dir: Path, model: bytes | None = None) -> Path:
    """Write ``model`` (default: a fresh conversion) as the version's LiteRT model file.

    Written beside and renamed into place, so that a server never reads half a file.
    """
    model = litert_model_bytes(version_dir) if model is None else model
    path = litert_model_path(version_dir)
    with replacing(path) as partial:
        partial.write_bytes(model)
    return path
