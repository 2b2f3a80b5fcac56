"""TF Serving warm-up requests: ``<version>/assets.extra/tf_serving_warmup_requests``.

TF Serving replays this TFRecord file of ``PredictionLog`` protos when it loads a version and
marks the version available only afterwards, so the first real request does not pay for
lazy initialisation (graph optimisation, oneDNN kernels built per input shape). One request
per signature the service calls and per batch size it may run: 1 without batching, and each
of ``allowed_batch_sizes`` in ``tf-serving/batching.config`` with it (a test keeps
:data:`WARMUP_BATCH_SIZES` equal to those). A record that fails makes TF Serving refuse the
version, so the signatures are checked in ``saved_model.pb`` before anything is written.

TF Serving's protos are imported here, not lazily: the exporter imports this module, so a
missing ``tensorflow-serving-api`` stops ``train xray`` before training, not after.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from aistack.atomic_files import replacing
from aistack.inference.versions import read_model_info

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
WARMUP_SIGNATURES = ("serving_default", "gradcam")
WARMUP_BATCH_SIZES = (1, 2, 4, 8)
INPUT_KEY = "image_bytes"


def synthetic_chest_png(image_size: int) -> bytes:
    """A smooth, deterministic chest-like radiograph (dark lungs, bright spine and ribs).

    Smooth on purpose: it compresses to a few KB, and warm-up needs the real decode, resize
    and model path at the real size, not a realistic picture.
    """
    y, x = np.mgrid[0:image_size, 0:image_size] / image_size

    def soft_ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
        distance = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
        return 1.0 / (1.0 + np.exp((distance - 1.0) * 12.0))

    body = soft_ellipse(0.55, 0.5, 0.55, 0.45)
    lungs = soft_ellipse(0.48, 0.3, 0.3, 0.14) + soft_ellipse(0.48, 0.7, 0.3, 0.14)
    spine = np.exp(-(((x - 0.5) / 0.05) ** 2))
    ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (y * 9 + 1.5 * (x - 0.5) ** 2))
    image = 15 + 120 * body - 80 * lungs + 70 * spine * body + 25 * ribs * lungs
    pixels = np.clip(np.round(image), 0, 255).astype(np.uint8)[..., np.newaxis]
    return tf.io.encode_png(pixels, compression=9).numpy()


def check_signatures(version_dir: Path, signatures: Sequence[str] = WARMUP_SIGNATURES) -> None:
    """Raise unless each signature takes exactly one string tensor named ``image_bytes``.

    Read from ``saved_model.pb`` as TF Serving reads it, without loading the model.
    """
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    defs = saved_model.meta_graphs[0].signature_def
    for name in signatures:
        if name not in defs:
            raise ValueError(f"{version_dir} has no signature {name!r} (has {sorted(defs)})")
        inputs = defs[name].inputs
        if list(inputs) != [INPUT_KEY] or inputs[INPUT_KEY].dtype != tf.string.as_datatype_enum:
            raise ValueError(f"{version_dir}: signature {name!r} does not take {INPUT_KEY}: string")


def warmup_records(
    model_name: str,
    image_size: int,
    batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES,
    signatures: Sequence[str] = WARMUP_SIGNATURES,
) -> list[prediction_log_pb2.PredictionLog]:
    """``PredictionLog`` protos: one ``PredictRequest`` per signature and batch size."""
    png = synthetic_chest_png(image_size)
    records = []
    for signature in signatures:
        for size in batch_sizes:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            request.inputs[INPUT_KEY].CopyFrom(
                tf.make_tensor_proto([png] * size, dtype=tf.string, shape=[size])
            )
            records.append(
                prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
            )
    return records


def write_warmup_requests(
    version_dir: Path,
    model_name: str | None = None,
    image_size: int | None = None,
    batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES,
) -> tuple[Path, int]:
    """Write (or replace) the warm-up file of a version, touching nothing else of it.

    Name and image size default to the version's ``model_info.json``. Returns the file and
    the number of records.
    """
    info = read_model_info(version_dir)
    model_name = model_name or info.get("name") or version_dir.parent.name
    image_size = image_size or info.get("image_size")
    if not image_size:
        raise ValueError(f"{version_dir}: no image_size given nor in its model_info.json")
    check_signatures(version_dir)
    records = warmup_records(model_name, int(image_size), batch_sizes)
    target = version_dir / WARMUP_FILE
    with replacing(target) as partial, tf.io.TFRecordWriter(str(partial)) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    return target, len(records)
