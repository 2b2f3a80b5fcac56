"""CPU latency of candidate classifier architectures (random weights, 3-class head).

Why the committed model is a small CNN: this measures, on the machine at hand, the cost of a
forward pass and of a forward pass with Grad-CAM for each candidate, as compiled graphs.

    .venv/bin/python benchmarks/architectures.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from aistack.xray.export import build_gradcam_function
from aistack.xray.model import CAM_LAYER, LOGITS_LAYER, build_classifier, build_ensemble


def with_cam_head(backbone: keras.Model) -> keras.Model:
    """A keras.applications backbone (1-channel input) with our CAM/logits/softmax head."""
    features = keras.layers.Activation("linear", name=CAM_LAYER)(backbone.output)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(3, name=LOGITS_LAYER)(pooled)
    return keras.Model(backbone.input, keras.layers.Softmax(name="probabilities")(logits))


def candidates() -> dict[str, tuple[keras.Model, int]]:
    apps = keras.applications
    common = {"include_top": False, "weights": None}
    return {
        "aistack CNN @224 (1 member)": (build_classifier(224), 224),
        "aistack CNN @224 (5-member ensemble)": (
            build_ensemble([build_classifier(224, name=f"m{i}") for i in range(5)]),
            224,
        ),
        "MobileNetV3Small @224": (
            with_cam_head(
                apps.MobileNetV3Small(
                    input_shape=(224, 224, 1), include_preprocessing=False, **common
                )
            ),
            224,
        ),
        "EfficientNetB0 @224": (
            with_cam_head(apps.EfficientNetB0(input_shape=(224, 224, 1), **common)),
            224,
        ),
        "InceptionV3 @256 (2020)": (
            with_cam_head(apps.InceptionV3(input_shape=(256, 256, 1), **common)),
            256,
        ),
    }


def median_ms(fn, x, repeats: int) -> float:
    fn(x)  # trace and warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(f"{'model':<40}{'params':>10}{'b1 ms':>9}{'b1 CAM ms':>11}{'b8 ms/img':>11}")
    for name, (model, size) in candidates().items():
        forward = tf.function(lambda x, m=model: m(x, training=False), jit_compile=False)
        gradcam = tf.function(build_gradcam_function(model))
        one = tf.constant(np.random.randint(0, 255, (1, size, size, 1)).astype("float32"))
        eight = tf.constant(np.random.randint(0, 255, (8, size, size, 1)).astype("float32"))
        b1 = median_ms(forward, one, args.repeats)
        cam = median_ms(gradcam, one, args.repeats)
        b8 = median_ms(forward, eight, max(5, args.repeats // 4)) / 8
        print(f"{name:<40}{model.count_params():>10,}{b1:>9.1f}{cam:>11.1f}{b8:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
