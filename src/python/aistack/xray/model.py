"""The classifier: a compact CNN trained from scratch, sized for fast CPU inference.

Why not InceptionV3 as in 2020: without ImageNet weights a 22M-parameter network overfits
~160 training images, and it costs ~90 ms per image here. This network has ~0.28M weights,
keeps a 14x14 feature map for Grad-CAM at 224 px and runs in a few milliseconds.
"""

from __future__ import annotations

import keras
from keras import layers

from aistack.xray.labels import CLASSES

CAM_LAYER = "cam_features"
"""The last convolutional activation; Grad-CAM is computed on it."""

LOGITS_LAYER = "logits"
"""Pre-softmax class scores; Grad-CAM differentiates these (softmax saturates)."""

DEFAULT_IMAGE_SIZE = 224


def _conv_block(x, filters: int, name: str, kernel: int = 3, stride: int = 1):
    x = layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=name)(x)


def build_classifier(
    image_size: int = DEFAULT_IMAGE_SIZE,
    width: int = 16,
    dropout: float = 0.3,
    name: str = "xray_cnn",
) -> keras.Model:
    """uint8-valued (size, size, 1) input → softmax over :data:`CLASSES`."""
    inputs = keras.Input((image_size, image_size, 1), name="pixels")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    x = _conv_block(x, width, "stem", kernel=5, stride=2)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = _conv_block(x, width * 2, "block2")
    x = layers.MaxPooling2D(name="pool2")(x)
    x = _conv_block(x, width * 4, "block3a")
    x = _conv_block(x, width * 4, "block3b")
    x = layers.MaxPooling2D(name="pool3")(x)
    x = _conv_block(x, width * 8, "block4a")
    x = _conv_block(x, width * 8, CAM_LAYER)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(len(CLASSES), name=LOGITS_LAYER)(x)
    outputs = layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=name)


def build_ensemble(members: list[keras.Model]) -> keras.Model:
    """One model whose probabilities are the mean of its members' (cross-validation folds).

    Averaging members trained on different folds cancels much of the variance that a single
    network trained on ~160 images carries, at a few milliseconds per member.
    """
    if len(members) == 1:
        return members[0]
    inputs = keras.Input(members[0].input_shape[1:], name="pixels")
    outputs = layers.Average(name="probabilities")([member(inputs) for member in members])
    return keras.Model(inputs, outputs, name="xray_ensemble")


def build_augmenter(seed: int) -> keras.Sequential:
    """Train-time augmentation: small rotations (±15°, as in 2020), shifts, zoom, contrast."""
    return keras.Sequential(
        [
            layers.RandomRotation(15 / 360, fill_mode="constant", seed=seed),
            layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom((-0.15, 0.15), fill_mode="constant", seed=seed + 2),
            layers.RandomContrast(0.3, value_range=(0, 255), seed=seed + 3),
            layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 4),
        ],
        name="augment",
    )
