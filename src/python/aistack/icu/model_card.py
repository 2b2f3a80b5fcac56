"""MODEL_CARD.md of a local ICU model version, written from its ``model.json``.

``aistack icu train`` writes it with the training-side figures; ``aistack icu validate
--record`` adds the cross-validated ones and writes it again. Everything in the card comes
from the record, so the card never disagrees with the model it sits beside.
"""

from __future__ import annotations

import json
from pathlib import Path

from aistack.icu.local import CARD_FILE, read_record
from aistack.icu.predictor import METRIC_NAMES

DISCLAIMER = (
    "> Research demonstration. Not a medical device; not for diagnosis or any clinical decision."
)
TARGET_AUC = 0.85


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _validation_section(record: dict) -> list[str]:
    validation = record.get("validation")
    if not validation:
        return [
            "## Cross-validated performance",
            "",
            "Not yet validated. Run (a few minutes):",
            "",
            "```sh",
            f"aistack icu validate --model-version {record['version']} --record",
            "```",
        ]
    mean, sd = validation["metrics_mean"], validation["metrics_sd"]
    auc = mean["ROC-AUC"]
    verdict = "reached" if auc >= TARGET_AUC else "not reached"
    lines = [
        "## Cross-validated performance (the figures to quote)",
        "",
        f"{validation['method'].capitalize()}; {validation['patients']} patients, "
        f"{validation['admitted_later']} admitted to the ICU later. Each fold ran the whole "
        f"recipe with a {validation['time_budget_s']:g} s search on its training patients.",
        "",
        *_table(
            ["metric", "mean", "sd over folds"],
            [[name, f"{mean[name]:.3f}", f"{sd[name]:.3f}"] for name in METRIC_NAMES],
        ),
        "",
        f"Brier score of the pooled held-out probabilities: {validation['brier_score']:.3f}. "
        f"Target ROC-AUC >= {TARGET_AUC}: **{verdict}** ({auc:.3f}).",
        "",
        *_table(
            ["fold", "patients", "estimator", "threshold", *METRIC_NAMES],
            [
                [f["fold"], f["patients"], f["estimator"], f"{f['threshold']:.3f}"]
                + [f"{f[name]:.3f}" for name in METRIC_NAMES]
                for f in validation["folds"]
            ],
        ),
        "",
        f"Measured with `{validation['command']}` on {validation['validated_at']} "
        f"({validation['seconds']:.0f} s). Calibration plot: "
        "[docs/images/icu-calibration.png](../../../docs/images/icu-calibration.png).",
    ]
    return lines


def render(record: dict) -> str:
    data, training, details = record["data"], record["training"], record["details"]
    metrics = record["training_metrics"]
    libraries = ", ".join(f"{k} {v}" for k, v in details["libraries"].items())
    lines = [
        f"# Model card: ICU admission predictor, version {record['version']}",
        "",
        DISCLAIMER,
        "",
        f"Written by `aistack icu train` on {training['trained_at']}.",
        "",
        "## What it does",
        "",
        "Gives the probability that a hospitalised COVID-19 patient will be admitted to the ICU "
        "later, from the values of their first two hours (window 0-2 h: demographics, disease "
        "groups, blood tests, vital signs), with the features that moved the prediction most "
        f"(TreeSHAP, in log-odds). Label 1 when the probability is >= {record['threshold']:.3f}.",
        "",
        "## Data",
        "",
        f"Hospital Sirio-Libanes (Sao Paulo) COVID-19 workbook `{data['workbook']}` "
        f"(SHA-256 `{data['source_sha256'][:16]}...`), prepared as docs/ICU.md describes "
        f"(`{data['fill']}` fill inside each patient, rows at or after ICU admission dropped, "
        "patients already in the ICU at 0-2 h excluded): "
        f"{data['patients']} patients, {data['admitted_later']} admitted later, "
        f"{data['rows']} pre-admission rows, {data['features']} features. Prepared-table hash "
        f"`{record['training_data_hash']}`.",
        "",
        "## Model",
        "",
        f"FLAML AutoML ({training['config']['time_budget_s']:g} s search over "
        f"{', '.join(training['config']['estimators'])}, patient-grouped "
        f"{training['config']['folds']}-fold CV, log loss on first-window rows, each patient "
        f"weighted once) chose **{details['estimator']}** after {details['trials']} trials:",
        "",
        "```json",
        json.dumps(details["hyperparameters"], indent=2),
        "```",
        "",
        f"Saved as `{record['model_format']}` in its library's own format. Libraries: {libraries}.",
        "",
        "## Threshold and training-side figures",
        "",
        f"Threshold {record['threshold']:.3f}: the highest F-Measure on out-of-fold "
        "probabilities of the training patients. Out-of-fold figures of the chosen "
        "configuration (optimistic: the search saw these patients):",
        "",
        *_table(list(METRIC_NAMES), [[f"{metrics[name]:.3f}" for name in METRIC_NAMES]]),
        "",
        *_validation_section(record),
        "",
        "## Limits",
        "",
        "- One hospital, 2020, 385 patients: no external validation; the cross-validation "
        "spread (sd over folds) is the honest uncertainty.",
        "- Values are the dataset's own scaling to [-1, 1]; raw laboratory units do not fit.",
        "- Predicts from the first window only; later windows change the picture and are not "
        "used for a prediction at 2 h.",
        "",
        "## Reproduce",
        "",
        "```sh",
        training["command"],
        "```",
    ]
    return "\n".join(lines) + "\n"


def write_card(version_dir: Path) -> Path:
    path = version_dir / CARD_FILE
    path.write_text(render(read_record(version_dir)))
    return path
