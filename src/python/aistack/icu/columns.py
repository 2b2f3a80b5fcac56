"""The workbook's columns as people read them, and which of them a short form should ask for.

``column_label`` turns ``"RESPIRATORY_RATE_MAX"`` into "Respiratory rate (max)";
``WORKBOOK_FEATURES`` lists the 228 features in the workbook's order (what the published
request schema names); ``most_informative`` picks the web form's fields from the model's
gain importance.
"""

from __future__ import annotations

from typing import Any

from aistack.icu.dataset import AGE_PERCENTILE
from aistack.icu.local import LocalPredictor
from aistack.icu.predictor import IcuPredictor

FORM_FIELD_COUNT = 8

STATISTICS = {
    "_DIFF_REL": "relative range",
    "_MEDIAN": "median",
    "_MEAN": "mean",
    "_MIN": "min",
    "_MAX": "max",
    "_DIFF": "range",
}
"""The workbook's per-window statistics (``DIFF`` is max - min; ``DIFF_REL`` relative to the
median), longest suffix first so that ``_DIFF_REL`` is not read as ``_DIFF``."""
VITAL_SIGNS = {
    "BLOODPRESSURE_DIASTOLIC": "Diastolic blood pressure",
    "BLOODPRESSURE_SISTOLIC": "Systolic blood pressure",
    "HEART_RATE": "Heart rate",
    "RESPIRATORY_RATE": "Respiratory rate",
    "TEMPERATURE": "Temperature",
    "OXYGEN_SATURATION": "Oxygen saturation",
}
LABS = {
    "ALBUMIN": "Albumin",
    "BE_ARTERIAL": "Arterial base excess",
    "BE_VENOUS": "Venous base excess",
    "BIC_ARTERIAL": "Arterial bicarbonate",
    "BIC_VENOUS": "Venous bicarbonate",
    "BILLIRUBIN": "Bilirubin",
    "BLAST": "Blasts",
    "CALCIUM": "Calcium",
    "CREATININ": "Creatinine",
    "FFA": "Free fatty acids",
    "GGT": "Gamma-GT",
    "GLUCOSE": "Glucose",
    "HEMATOCRITE": "Hematocrit",
    "HEMOGLOBIN": "Hemoglobin",
    "INR": "INR",
    "LACTATE": "Lactate",
    "LEUKOCYTES": "Leukocytes",
    "LINFOCITOS": "Lymphocytes",
    "NEUTROPHILES": "Neutrophils",
    "P02_ARTERIAL": "Arterial pO2",
    "P02_VENOUS": "Venous pO2",
    "PC02_ARTERIAL": "Arterial pCO2",
    "PC02_VENOUS": "Venous pCO2",
    "PCR": "C-reactive protein",
    "PH_ARTERIAL": "Arterial pH",
    "PH_VENOUS": "Venous pH",
    "PLATELETS": "Platelets",
    "POTASSIUM": "Potassium",
    "SAT02_ARTERIAL": "Arterial O2 saturation",
    "SAT02_VENOUS": "Venous O2 saturation",
    "SODIUM": "Sodium",
    "TGO": "AST (TGO)",
    "TGP": "ALT (TGP)",
    "TTPA": "aPTT (TTPA)",
    "UREA": "Urea",
    "DIMER": "D-dimer",
}
"""The workbook's lab names (Portuguese spellings, abbreviations) as a reader knows them, in
the workbook's order."""
OTHER_COLUMNS = {
    "AGE_ABOVE65": "Age above 65",
    "AGE_PERCENTIL": "Age percentile",
    "HTN": "Hypertension",
    "OTHER": "Other diseases",
}

LAB_STATISTICS = ("_MEDIAN", "_MEAN", "_MIN", "_MAX", "_DIFF")
VITAL_STATISTICS = ("_MEAN", "_MEDIAN", "_MIN", "_MAX", "_DIFF", "_DIFF_REL")
WORKBOOK_FEATURES: tuple[str, ...] = (
    "AGE_ABOVE65",
    AGE_PERCENTILE,
    "GENDER",
    *(f"DISEASE GROUPING {n}" for n in range(1, 7)),
    "HTN",
    "IMMUNOCOMPROMISED",
    "OTHER",
    *(lab + statistic for lab in LABS for statistic in LAB_STATISTICS),
    *(vital + statistic for statistic in VITAL_STATISTICS for vital in VITAL_SIGNS),
)
"""The workbook's 228 features in its order (labs by lab, vitals by statistic): what the
published request schema names; a test keeps it equal to the committed model's features."""

FALLBACK_FORM_FIELDS = (
    "AGE_PERCENTIL",
    "LINFOCITOS_MEDIAN",
    "HEART_RATE_DIFF_REL",
    "PCR_MEDIAN",
    "UREA_MEDIAN",
    "RESPIRATORY_RATE_MIN",
    "CREATININ_MEDIAN",
    "NEUTROPHILES_MEDIAN",
)
"""The form's fields for a predictor that reports no importances (IntegratedML): what
``form_fields`` gives for the committed local model, version 1 (its gain ranking, one field
per measurement), so the web form looks the same whichever backend answers."""


def measurement(column: str) -> tuple[str, str] | None:
    """``"RESPIRATORY_RATE_MAX"`` → ``("RESPIRATORY_RATE", "max")``; None for other columns."""
    for suffix, statistic in STATISTICS.items():
        base = column.removesuffix(suffix)
        if base != column and (base in LABS or base in VITAL_SIGNS):
            return base, statistic
    return None


def is_lab_or_vital(column: str) -> bool:
    """Measured in the window (a lab or a vital sign), not a demographic or a disease group."""
    return measurement(column) is not None


def column_label(column: str) -> str:
    """A human label: ``"RESPIRATORY_RATE_MAX"`` → ``"Respiratory rate (max)"``."""
    if (found := measurement(column)) is not None:
        base, statistic = found
        return f"{LABS.get(base) or VITAL_SIGNS[base]} ({statistic})"
    if column in OTHER_COLUMNS:
        return OTHER_COLUMNS[column]
    words = column.replace("_", " ").strip().lower()
    return words[:1].upper() + words[1:]


def gain_importance(predictor: IcuPredictor) -> dict[str, float] | None:
    """Total gain per feature of a local tree model; None when the predictor has none."""
    if not isinstance(predictor, LocalPredictor):
        return None
    features = predictor.metadata.features
    booster: Any = predictor.model.booster
    if predictor.model.format == "lightgbm":
        gains = booster.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(features, gains, strict=True)}
    scores = booster.get_score(importance_type="total_gain")  # keys f0, f1, ... or names
    by_index = {f"f{i}": name for i, name in enumerate(features)}
    return {by_index.get(key, key): float(value) for key, value in scores.items()}


def most_informative(predictor: IcuPredictor, count: int = FORM_FIELD_COUNT) -> list[str]:
    """The ``count`` most informative features, one per measurement, most informative first.

    By gain importance when the model has it (a form needs one C-reactive protein field, not
    its median, min and mean), else :data:`FALLBACK_FORM_FIELDS`.
    """
    features = predictor.metadata.features
    gains = gain_importance(predictor)
    if gains is None:
        ranked = [f for f in FALLBACK_FORM_FIELDS if f in features]
    else:
        ranked = sorted((f for f in features if gains.get(f, 0.0) > 0.0), key=lambda f: -gains[f])
    chosen: list[str] = []
    seen: set[str] = set()
    for column in ranked:
        kind = (measurement(column) or (column, ""))[0]
        if kind not in seen:
            seen.add(kind)
            chosen.append(column)
    return chosen[:count]
