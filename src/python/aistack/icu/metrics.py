"""Metrics under IntegratedML's names, the decision threshold, and calibration.

One home for how a predictor is scored, so that training, cross-validation, the model card
and the IntegratedML backend's readings line up under the same names (``METRIC_NAMES``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

from aistack.icu.predictor import METRIC_NAMES


def classification_metrics(
    y_true: Sequence[int], probabilities: Sequence[float], threshold: float
) -> dict[str, float]:
    """ROC-AUC of the probabilities, and the label metrics at ``threshold`` (positive class 1)."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probabilities, dtype=float)
    predicted = (p >= threshold).astype(int)
    values = {
        "ROC-AUC": roc_auc_score(y, p) if len(set(y.tolist())) == 2 else float("nan"),
        "Precision": precision_score(y, predicted, zero_division=0),
        "Recall": recall_score(y, predicted, zero_division=0),
        "F-Measure": f1_score(y, predicted, zero_division=0),
        "Accuracy": accuracy_score(y, predicted),
    }
    return {name: float(values[name]) for name in METRIC_NAMES}


def choose_threshold(y_true: Sequence[int], probabilities: Sequence[float]) -> float:
    """The probability cut-off with the highest F-Measure on these (training-side) predictions.

    Call it with out-of-fold predictions of training patients only; the threshold is then
    applied unchanged to anyone else. Among equal F-Measures the highest cut-off wins (fewer
    false alarms for the same balance).
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probabilities, dtype=float)
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        f_measure = np.where(
            precision + recall > 0, 2 * precision * recall / (precision + recall), 0
        )
    best = np.flatnonzero(f_measure >= f_measure.max() - 1e-12)
    return float(thresholds[best[-1]])


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    count: int
    mean_predicted: float
    observed_rate: float


def calibration_bins(
    y_true: Sequence[int], probabilities: Sequence[float], bins: int = 10
) -> list[CalibrationBin]:
    """Equal-width probability bins with the predicted mean and observed rate in each."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return [
        CalibrationBin(
            float(edges[b]),
            float(edges[b + 1]),
            int((which == b).sum()),
            float(p[which == b].mean()),
            float(y[which == b].mean()),
        )
        for b in range(bins)
        if (which == b).any()
    ]


def brier_score(y_true: Sequence[int], probabilities: Sequence[float]) -> float:
    y = np.asarray(y_true, dtype=float)
    return float(np.mean((np.asarray(probabilities, dtype=float) - y) ** 2))
