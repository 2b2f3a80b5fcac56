"""The embedded ICU predictor: a gradient-boosted tree model scored in this process.

A version folder (``models/icu/<N>/``) holds the tree model in its library's own file format
(LightGBM's text model or XGBoost's JSON: no pickle, so loading a model never runs code),
``model.json`` (metadata: version, training data hash, metrics under IntegratedML's names,
threshold, features, library versions, how it was trained and validated) and MODEL_CARD.md.

Explanations are exact TreeSHAP values computed by the tree library itself (LightGBM
``pred_contrib``, XGBoost ``pred_contribs``): per row they sum, with the model's base value,
to the raw score, i.e. the log-odds of the returned probability.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from aistack.icu.defaults import DEFAULT_MODEL_DIR
from aistack.icu.predictor import Contribution, ModelMetadata, Row
from aistack.icu.rows import feature_matrix

METADATA_FILE = "model.json"
CARD_FILE = "MODEL_CARD.md"
EXPLANATION_METHOD = (
    "TreeSHAP (exact Shapley values of the tree ensemble, computed by the tree library); "
    "contributions and the base value sum to the log-odds of the probability"
)

TreeFormat = Literal["lightgbm", "xgboost"]


@dataclass(frozen=True)
class TreeModel:
    """A fitted binary tree ensemble from LightGBM or XGBoost, behind one small interface."""

    format: TreeFormat
    booster: object
    FILES: ClassVar[dict[str, str]] = {"lightgbm": "model.lgb.txt", "xgboost": "model.xgb.json"}

    @classmethod
    def from_estimator(cls, estimator: object) -> TreeModel:
        """From a fitted ``LGBMClassifier`` or ``XGBClassifier``."""
        if hasattr(estimator, "booster_"):
            return cls("lightgbm", estimator.booster_)
        if hasattr(estimator, "get_booster"):
            return cls("xgboost", estimator.get_booster())
        raise TypeError(f"{type(estimator).__name__} is neither LightGBM nor XGBoost")

    @property
    def file_name(self) -> str:
        return self.FILES[self.format]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        if self.format == "lightgbm":
            return np.asarray(self.booster.predict(x, num_threads=1), dtype=float)
        return np.asarray(self.booster.predict(self._dmatrix(x)), dtype=float)

    def log_odds(self, x: np.ndarray) -> np.ndarray:
        if self.format == "lightgbm":
            return np.asarray(self.booster.predict(x, raw_score=True, num_threads=1), dtype=float)
        return np.asarray(self.booster.predict(self._dmatrix(x), output_margin=True), dtype=float)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """``rows x (features + 1)``: TreeSHAP per feature, then the base value (log-odds)."""
        if self.format == "lightgbm":
            values = self.booster.predict(x, pred_contrib=True, num_threads=1)
        else:
            values = self.booster.predict(self._dmatrix(x), pred_contribs=True)
        return np.asarray(values, dtype=float)

    def save(self, folder: Path) -> Path:
        path = folder / self.file_name
        if self.format == "lightgbm":
            path.write_text(self.booster.model_to_string())
        else:
            self.booster.save_model(str(path))
        return path

    @classmethod
    def load(cls, folder: Path, tree_format: TreeFormat) -> TreeModel:
        path = folder / cls.FILES[tree_format]
        if tree_format == "lightgbm":
            import lightgbm  # noqa: PLC0415

            return cls(tree_format, lightgbm.Booster(model_file=str(path)))
        import xgboost  # noqa: PLC0415

        booster = xgboost.Booster()
        booster.load_model(str(path))
        booster.set_param({"nthread": 1})
        return cls(tree_format, booster)

    def feature_count(self) -> int:
        if self.format == "lightgbm":
            return int(self.booster.num_feature())
        return int(self.booster.num_features())

    @staticmethod
    def _dmatrix(x: np.ndarray) -> object:
        import xgboost  # noqa: PLC0415

        return xgboost.DMatrix(x, missing=np.nan)


class LocalPredictor:
    """``IcuPredictor`` over a ``TreeModel`` and its metadata."""

    def __init__(self, model: TreeModel, metadata: ModelMetadata) -> None:
        if model.feature_count() != len(metadata.features):
            raise ValueError(
                f"the model has {model.feature_count()} features, its metadata "
                f"{len(metadata.features)}"
            )
        self.model = model
        self._metadata = metadata

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict_proba(self, rows: Sequence[Row]) -> list[float]:
        x = feature_matrix(rows, self.metadata.features)
        return self.model.probabilities(x).tolist() if len(x) else []

    def explain(self, row: Row, top: int = 5) -> list[Contribution]:
        return self.explain_rows([row], top)[0]

    def explain_rows(self, rows: Sequence[Row], top: int = 5) -> list[list[Contribution]]:
        x = feature_matrix(rows, self.metadata.features)
        if not len(x):
            return []
        values = self.model.contributions(x)[:, :-1]
        # largest magnitude first, ties in feature order (as ``predictor.strongest``)
        order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :top]
        features = self.metadata.features
        return [
            [
                Contribution(features[j], None if math.isnan(x[i, j]) else float(x[i, j]), c)
                for j in order[i]
                if (c := float(values[i, j])) != 0.0
            ]
            for i in range(len(x))
        ]

    # --- version folders

    @classmethod
    def load(cls, version_dir: Path) -> LocalPredictor:
        """The predictor saved in ``version_dir`` (``model.json`` and the tree model file)."""
        record = read_record(version_dir)
        model = TreeModel.load(version_dir, record["model_format"])
        return cls(model, metadata_from_record(record))

    def save(self, version_dir: Path, record: dict[str, object]) -> Path:
        """Write the tree model and ``model.json`` (``record`` plus the metadata) into a new
        folder; an existing folder is refused, versions are never overwritten."""
        version_dir.mkdir(parents=True, exist_ok=False)
        self.model.save(version_dir)
        full = {**record, **self.metadata.to_dict(), "model_format": self.model.format}
        write_record(version_dir, full)
        return version_dir


def read_record(version_dir: Path) -> dict:
    path = version_dir / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no ICU model at {version_dir} ({METADATA_FILE} is missing)")
    return json.loads(path.read_text())


def write_record(version_dir: Path, record: dict) -> None:
    text = json.dumps(record, indent=2, sort_keys=False, allow_nan=False)
    (version_dir / METADATA_FILE).write_text(text + "\n")


def record_validation(version_dir: Path, validation: dict[str, object]) -> dict:
    """Store cross-validated figures in ``model.json``; they become the version's metrics."""
    record = read_record(version_dir)
    record["validation"] = validation
    record["metrics"] = dict(validation["metrics_mean"])
    record["evaluation"] = str(validation["method"]) + " (mean over folds)"
    write_record(version_dir, record)
    return record


def metadata_from_record(record: dict) -> ModelMetadata:
    return ModelMetadata(
        backend="local",
        version=str(record["version"]),
        training_data_hash=record["training_data_hash"],
        threshold=float(record["threshold"]),
        features=tuple(record["features"]),
        metrics={k: float(v) for k, v in record.get("metrics", {}).items()},
        evaluation=record.get("evaluation", ""),
        explanation_method=record.get("explanation_method", EXPLANATION_METHOD),
        contribution_unit="log-odds",
        details=dict(record.get("details", {})),
    )


def icu_versions(model_dir: Path) -> list[int]:
    """Integer version folders holding ``model.json``, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.name.isdigit() and (p / METADATA_FILE).is_file()
    )


def version_dir(model_dir: Path = DEFAULT_MODEL_DIR, version: int | None = None) -> Path:
    """The version asked for, else the one labelled ``stable``, else the highest."""
    from aistack.inference.versions import SERVED_LABEL, read_labels  # noqa: PLC0415

    versions = icu_versions(model_dir)
    if version is None:
        version = read_labels(model_dir).get(SERVED_LABEL) or (versions[-1] if versions else None)
    if version is None or version not in versions:
        found = ", ".join(map(str, versions)) or "none"
        raise FileNotFoundError(
            f"no ICU model version {version or ''} in {model_dir} (versions: {found}); "
            "train one with `aistack icu train`"
        )
    return model_dir / str(version)


def load_local(model_dir: Path = DEFAULT_MODEL_DIR, version: int | None = None) -> LocalPredictor:
    """The embedded default predictor (see ``version_dir`` for which version)."""
    return LocalPredictor.load(version_dir(model_dir, version))
