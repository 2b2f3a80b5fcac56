"""Patient-grouped cross-validation of the whole training recipe, and the calibration plot.

Each outer fold holds out a fifth of the patients. The recipe (``training.train``: AutoML
search, refit, threshold from out-of-fold predictions) runs on the other patients only; the
held-out patients' first-window rows are then scored once, at that fold's own threshold. So
neither the hyperparameters nor the threshold ever see the patients they are measured on.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aistack.icu.dataset import PreparedTable, patient_folds
from aistack.icu.metrics import (
    brier_score,
    calibration_bins,
    classification_metrics,
)
from aistack.icu.predictor import METRIC_NAMES
from aistack.icu.training import Progress, TrainingConfig, train


@dataclass(frozen=True)
class FoldResult:
    fold: int
    patients: int
    estimator: str
    threshold: float
    metrics: dict[str, float]


@dataclass(frozen=True)
class CrossValidation:
    folds: list[FoldResult]
    labels: np.ndarray
    probabilities: np.ndarray
    """Pooled held-out first-window predictions (each patient once)."""
    seconds: float

    def mean_sd(self) -> dict[str, tuple[float, float]]:
        return {
            name: (
                statistics.fmean(f.metrics[name] for f in self.folds),
                statistics.stdev(f.metrics[name] for f in self.folds),
            )
            for name in METRIC_NAMES
        }

    def summary(self) -> dict[str, object]:
        """What ``model.json`` and the model card record."""
        return {
            "method": (
                f"patient-grouped {len(self.folds)}-fold cross-validation of the whole recipe "
                "(search, refit, threshold on training patients only); first-window rows"
            ),
            "metrics_mean": {k: round(m, 4) for k, (m, _) in self.mean_sd().items()},
            "metrics_sd": {k: round(s, 4) for k, (_, s) in self.mean_sd().items()},
            "brier_score": round(brier_score(self.labels, self.probabilities), 4),
            "patients": len(self.labels),
            "admitted_later": int(self.labels.sum()),
            "folds": [
                {
                    "fold": f.fold,
                    "patients": f.patients,
                    "estimator": f.estimator,
                    "threshold": round(f.threshold, 4),
                    **{k: round(v, 4) for k, v in f.metrics.items()},
                }
                for f in self.folds
            ],
            "seconds": round(self.seconds, 1),
        }


def cross_validate(
    table: PreparedTable,
    config: TrainingConfig,
    folds: int = 5,
    seed: int = 0,
    progress: Progress | None = None,
) -> CrossValidation:
    """Outer patient folds (``seed`` draws them apart from the recipe's own inner folds)."""
    started = time.monotonic()
    results, labels, probabilities = [], [], []
    x, y = table.x, table.y
    for k, (train_rows, held_out) in enumerate(patient_folds(table, folds, seed)):
        if progress:
            progress(f"fold {k + 1}/{folds}: training on {len(train_rows)} rows")
        training_patients = np.unique(table.patients[train_rows])
        recipe = train(table.subset(training_patients), config)
        p = recipe.model.probabilities(x[held_out])
        metrics = classification_metrics(y[held_out], p, recipe.threshold)
        results.append(
            FoldResult(k + 1, len(held_out), recipe.estimator, recipe.threshold, metrics)
        )
        labels.append(y[held_out])
        probabilities.append(p)
        if progress:
            progress(f"fold {k + 1}/{folds}: ROC-AUC {metrics['ROC-AUC']:.3f} ({recipe.estimator})")
    return CrossValidation(
        results, np.concatenate(labels), np.concatenate(probabilities), time.monotonic() - started
    )


def calibration_plot(result: CrossValidation, path: Path, title: str) -> Path:
    """Reliability diagram of the pooled held-out predictions, with their distribution."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    bins = calibration_bins(result.labels, result.probabilities)
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    top.plot(
        [b.mean_predicted for b in bins],
        [b.observed_rate for b in bins],
        marker="o",
        label=f"held-out patients (Brier {brier_score(result.labels, result.probabilities):.3f})",
    )
    for b in bins:
        top.annotate(
            str(b.count),
            (b.mean_predicted, b.observed_rate),
            fontsize=7,
            textcoords="offset points",
            xytext=(4, -10),
        )
    top.set_ylabel("observed share admitted to ICU")
    top.set_ylim(0, 1)
    top.set_title(title, fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    bottom.hist(
        [result.probabilities[result.labels == 0], result.probabilities[result.labels == 1]],
        bins=20,
        range=(0, 1),
        stacked=True,
        label=["not admitted", "admitted later"],
    )
    bottom.set_xlabel("predicted probability of ICU admission")
    bottom.set_ylabel("patients")
    bottom.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
