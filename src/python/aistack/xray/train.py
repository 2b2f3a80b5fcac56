"""Train the classifier from scratch: k-fold cross-validation on train/, one member per fold.

Each member sees 1 - 1/k of the training folder, with augmentation, and keeps the weights of
its best epoch on its own validation fold. The members are averaged into one model. Each
image is also scored by the one member that never trained on it; those out-of-fold
predictions estimate how well the recipe generalises, using train/ alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
from sklearn.model_selection import StratifiedKFold

from aistack.xray.dataset import LabelledImages, load_images
from aistack.xray.model import (
    DEFAULT_IMAGE_SIZE,
    build_augmenter,
    build_classifier,
    build_ensemble,
)

ProgressReport = Callable[[int, int, dict], None]
"""(fold index from 0, epoch from 1, Keras logs)"""


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 120
    folds: int = 5
    batch_size: int = 16
    image_size: int = DEFAULT_IMAGE_SIZE
    learning_rate: float = 2e-3
    seed: int = 2020
    width: int = 16
    limit_per_class: int | None = None  # for smoke tests


@dataclass
class FoldResult:
    fold: int
    best_epoch: int
    val_accuracy: float
    val_loss: float
    train_images: int
    val_images: int
    history: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class TrainingResult:
    config: TrainingConfig
    folds: list[FoldResult]
    out_of_fold_accuracy: float
    out_of_fold_confusion: list[list[int]]
    images: int
    seconds: float

    def summary(self) -> dict:
        """What the model card and ``model_info.json`` record (no per-epoch history)."""
        return {
            "config": asdict(self.config),
            "images": self.images,
            "out_of_fold_accuracy": self.out_of_fold_accuracy,
            "out_of_fold_confusion": self.out_of_fold_confusion,
            "folds": [{k: v for k, v in asdict(f).items() if k != "history"} for f in self.folds],
            "seconds": self.seconds,
        }


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
    def __init__(self, fold: int, report: ProgressReport) -> None:
        super().__init__()
        self.fold = fold
        self.report = report

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.report(self.fold, epoch + 1, dict(logs or {}))


def limit_per_class(images: LabelledImages, per_class: int | None) -> LabelledImages:
    if per_class is None:
        return images
    keep = np.concatenate(
        [np.flatnonzero(images.labels == c)[:per_class] for c in np.unique(images.labels)]
    )
    return LabelledImages(
        images.pixels[keep], images.labels[keep], tuple(images.paths[i] for i in keep)
    )


def fold_indices(labels: np.ndarray, config: TrainingConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, seeded (train, validation) index pairs; every image validates once."""
    smallest = int(np.bincount(labels).min())
    if config.folds < 2 or config.folds > smallest:
        raise ValueError(
            f"folds must be between 2 and the smallest class size ({smallest}), got {config.folds}"
        )
    splitter = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def _train_member(
    fold: int, x_train, y_train, x_val, y_val, config: TrainingConfig, report: ProgressReport | None
) -> tuple[keras.Model, FoldResult]:
    import tensorflow as tf  # noqa: PLC0415 - keeps `aistack --help` fast

    seed = config.seed + 1000 * fold
    keras.utils.set_random_seed(seed)
    augment = build_augmenter(seed)
    model = build_classifier(config.image_size, width=config.width, name=f"xray_cnn_{fold}")
    steps = max(1, int(np.ceil(len(x_train) / config.batch_size))) * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train.astype("float32"), y_train))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    val_ds = tf.data.Dataset.from_tensor_slices((x_val.astype("float32"), y_val)).batch(64)
    best = BestWeights()
    callbacks: list[keras.callbacks.Callback] = [best]
    if report is not None:
        callbacks.append(EpochReporter(fold, report))
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,
    )
    return model, FoldResult(
        fold=fold,
        best_epoch=best.best_epoch,
        val_accuracy=best.best_accuracy,
        val_loss=best.best_loss,
        train_images=len(x_train),
        val_images=len(x_val),
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
    )


def train(
    data_dir: Path,
    config: TrainingConfig,
    report: ProgressReport | None = None,
    fold_done: Callable[[FoldResult], None] | None = None,
) -> tuple[keras.Model, TrainingResult]:
    """Train one member per fold; return their average and the cross-validation record.

    ``report`` hears every epoch, ``fold_done`` every finished fold: a long run shows progress.
    """
    started = time.perf_counter()
    images = limit_per_class(load_images(data_dir, config.image_size), config.limit_per_class)
    x, y = images.pixels, images.labels
    members: list[keras.Model] = []
    folds: list[FoldResult] = []
    out_of_fold = np.full(len(y), -1)
    for fold, (train_idx, val_idx) in enumerate(fold_indices(y, config)):
        member, result = _train_member(
            fold, x[train_idx], y[train_idx], x[val_idx], y[val_idx], config, report
        )
        scores = member(x[val_idx].astype("float32"), training=False)
        out_of_fold[val_idx] = np.asarray(scores).argmax(axis=1)
        members.append(member)
        folds.append(result)
        if fold_done is not None:
            fold_done(result)
    classes = int(y.max()) + 1
    confusion = np.zeros((classes, classes), int)
    np.add.at(confusion, (y, out_of_fold), 1)
    return build_ensemble(members), TrainingResult(
        config=config,
        folds=folds,
        out_of_fold_accuracy=float((out_of_fold == y).mean()),
        out_of_fold_confusion=confusion.tolist(),
        images=len(y),
        seconds=round(time.perf_counter() - started, 1),
    )
