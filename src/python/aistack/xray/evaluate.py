"""Score a model on a labelled folder: accuracy, per-class P/R/F1, ROC AUC, confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    roc_auc_score,
)

from aistack.inference.engine import InferenceEngine
from aistack.xray.dataset import TRAINING_MAX_PIXELS, list_images
from aistack.xray.labels import CLASSES
from aistack.xray.service import run_model


def evaluate(engine: InferenceEngine, data_dir: Path) -> dict:
    """Runs every image of ``data_dir/<class>/`` through the engine, as the service would."""
    items = list_images(data_dir)
    probabilities = np.stack(
        [
            run_model(engine, path.read_bytes(), TRAINING_MAX_PIXELS, heatmap=False).probabilities
            for path, _ in items
        ]
    )
    truth = np.array([label for _, label in items])
    predicted = probabilities.argmax(axis=1)
    labels = list(range(len(CLASSES)))
    report = classification_report(
        truth,
        predicted,
        labels=labels,
        target_names=list(CLASSES),
        output_dict=True,
        zero_division=0,
    )
    present = np.unique(truth)
    auc = (
        float(roc_auc_score(truth, probabilities, multi_class="ovr", labels=labels))
        if len(present) == len(CLASSES)
        else None
    )
    return {
        "data": str(data_dir),
        "model": {"name": engine.info.name, "version": engine.info.version},
        "images": len(items),
        "correct": int((predicted == truth).sum()),
        "accuracy": float(accuracy_score(truth, predicted)),
        "per_class": {name: {k: float(v) for k, v in report[name].items()} for name in CLASSES},
        "roc_auc_ovr": auc,
        "confusion_matrix": confusion_matrix(truth, predicted, labels=labels).tolist(),
        "classes": list(CLASSES),
        "predictions": [
            {
                "image": str(path.relative_to(data_dir)),
                "truth": CLASSES[t],
                "predicted": CLASSES[p],
                "probabilities": [round(float(x), 5) for x in probs],
            }
            for (path, t), p, probs in zip(items, predicted, probabilities, strict=True)
        ],
    }


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))


def format_text(result: dict) -> str:
    lines = [
        f"model {result['model']['name']} v{result['model']['version']} on {result['data']}",
        f"accuracy {result['accuracy']:.3f} ({result['correct']}/{result['images']})",
        "ROC AUC one-vs-rest: "
        + (f"{result['roc_auc_ovr']:.3f}" if result["roc_auc_ovr"] is not None else "n/a"),
        "",
        f"{'class':<15}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for name, row in result["per_class"].items():
        lines.append(
            f"{name:<15}{row['precision']:>10.3f}{row['recall']:>10.3f}"
            f"{row['f1-score']:>10.3f}{int(row['support']):>10d}"
        )
    lines += [
        "",
        "confusion matrix (rows = truth, columns = predicted):",
        " " * 15 + "".join(f"{c:>15}" for c in result["classes"]),
    ]
    for name, row in zip(result["classes"], result["confusion_matrix"], strict=True):
        lines.append(f"{name:<15}" + "".join(f"{v:>15d}" for v in row))
    return "\n".join(lines)
