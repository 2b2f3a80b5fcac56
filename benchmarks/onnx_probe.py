"""Would ONNX Runtime, or XLA, run the committed model cheaper than TensorFlow? CPU ms a call.

Neither tf2onnx nor onnxruntime is a project dependency; install them beside the venv:

    .venv/bin/pip install --no-deps --target /tmp/onnxpkgs onnxruntime onnx tf2onnx flatbuffers
    PYTHONPATH=/tmp/onnxpkgs .venv/bin/python benchmarks/onnx_probe.py --calls 300

Converts the ``predict_pixels`` signature (forward pass only: ONNX carries no gradient, so
Grad-CAM would need its own head) and times one-image calls on one thread each, as the
server runs them (``AISTACK_TF_INTRA_OP_THREADS=1``), alternating rounds; the same signature
compiled by XLA (``tf.function(jit_compile=True)``) is timed beside them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from aistack.inference.versions import resolve_version_dir

ROOT = Path(__file__).resolve().parents[1]


def cpu_ms(call: Callable[[], object], calls: int) -> float:
    for _ in range(20):
        call()
    started = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - started) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    loaded = tf.saved_model.load(str(resolve_version_dir(ROOT / "models" / "covid19", None)))
    signature = loaded.signatures["predict_pixels"]
    spec = (tf.TensorSpec((None, 224, 224, 1), tf.uint8, name="pixels"),)
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/model.onnx"
        tf2onnx.convert.from_function(
            tf.function(lambda pixels: signature(pixels=pixels)), spec, opset=17, output_path=path
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    pixels = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 1), dtype=np.uint8)
    expected = signature(pixels=tf.constant(pixels))["probabilities"].numpy()
    got = session.run(None, {name: pixels})[0]
    print(f"largest probability difference {np.abs(got - expected).max():.1e}")
    xla = tf.function(lambda pixels: signature(pixels=pixels), jit_compile=True)
    tensor = tf.constant(pixels)
    for _ in range(args.rounds):
        with_tf = cpu_ms(lambda: signature(pixels=tensor)["probabilities"].numpy(), args.calls)
        with_ort = cpu_ms(lambda: session.run(None, {name: pixels}), args.calls)
        with_xla = cpu_ms(lambda: xla(tensor)["probabilities"].numpy(), args.calls)
        print(
            f"TensorFlow {with_tf:.2f} ms, ONNX Runtime {with_ort:.2f} ms "
            f"({with_ort / with_tf:.2f}x), XLA {with_xla:.2f} ms ({with_xla / with_tf:.2f}x)"
        )


if __name__ == "__main__":
    main()
