"""Train the classifier from scratch with augmentation and a validation split from train/."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
from sklearn.model_selection import train_test_split

from aistack.xray.dataset import LabelledImages, load_images
from aistack.xray.model import DEFAULT_IMAGE_SIZE, build_augmenter, build_classifier


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 120
    batch_size: int = 16
    image_size: int = DEFAULT_IMAGE_SIZE
    learning_rate: float = 2e-3
    validation_fraction: float = 0.2
    seed: int = 2020
    width: int = 16
    limit_per_class: int | None = None  # for smoke tests


@dataclass
class TrainingResult:
    config: TrainingConfig
    best_epoch: int
    val_accuracy: float
    val_loss: float
    train_images: int
    val_images: int
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest validation loss, restored at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.best_loss = np.inf
        self.best_epoch = -1
        self.best_accuracy = 0.0
        self.weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        loss = logs.get("val_loss", np.inf)
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = float(loss), epoch + 1
            self.best_accuracy = float(logs.get("val_accuracy", 0.0))
            self.weights = self.model.get_weights()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.weights is not None:
            self.model.set_weights(self.weights)


class EpochReporter(keras.callbacks.Callback):
    """Forwards per-epoch metrics to a progress display."""

    def __init__(self, report: Callable[[int, dict], None]) -> None:
        super().__init__()
        self.report = report

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.report(epoch + 1, dict(logs or {}))


def _limit(images: LabelledImages, per_class: int | None) -> LabelledImages:
    if per_class is None:
        return images
    keep = np.concatenate([np.flatnonzero(images.labels == c)[:per_class]
                           for c in np.unique(images.labels)])
    return LabelledImages(images.pixels[keep], images.labels[keep],
                          tuple(images.paths[i] for i in keep))


def split(images: LabelledImages, config: TrainingConfig):
    """Stratified, seeded train/validation split of the training folder."""
    return train_test_split(
        images.pixels, images.labels, test_size=config.validation_fraction,
        random_state=config.seed, stratify=images.labels,
    )


def train(data_dir: Path, config: TrainingConfig,
          report: Callable[[int, dict], None] | None = None) -> tuple[keras.Model, TrainingResult]:
    """Train and return the model with its best-validation weights restored."""
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    images = _limit(load_images(data_dir, config.image_size), config.limit_per_class)
    x_train, x_val, y_train, y_val = split(images, config)

    augment = build_augmenter(config.seed)
    model = build_classifier(config.image_size, width=config.width)
    steps = max(1, int(np.ceil(len(x_train) / config.batch_size))) * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=steps, warmup_target=None, alpha=0.05)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    import tensorflow as tf  # noqa: PLC0415 - keeps `aistack --help` fast

    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train.astype("float32"), y_train))
        .shuffle(len(x_train), seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    val_ds = tf.data.Dataset.from_tensor_slices((x_val.astype("float32"), y_val)).batch(64)

    best = BestWeights()
    callbacks: list[keras.callbacks.Callback] = [best]
    if report is not None:
        callbacks.append(EpochReporter(report))
    history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                        callbacks=callbacks, verbose=0, shuffle=False)
    result = TrainingResult(
        config=config,
        best_epoch=best.best_epoch,
        val_accuracy=best.best_accuracy,
        val_loss=best.best_loss,
        train_images=len(x_train),
        val_images=len(x_val),
        seconds=round(time.perf_counter() - started, 1),
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
    )
    return model, result


def write_training_record(result: TrainingResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2))
