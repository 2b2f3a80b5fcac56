"""Training the local ICU predictor: FLAML's AutoML over gradient-boosted trees.

Recipe (the same for the committed model, for each fold of cross-validation and in tests):

1. FLAML searches LightGBM and XGBoost hyperparameters within ``time_budget_s``, scoring each
   candidate by patient-grouped 5-fold CV on the training patients. Every fold trains on all
   prepared rows of its training patients and is scored on the first-window rows of its
   held-out patients: the question the model answers. The score is the log loss, a proper
   scoring rule, steadier than ROC AUC on folds of ~70 patients and good for calibration.
2. Each patient weighs the same in training (every row ``1 / rows of that patient``): patients
   never admitted have five windows, patients admitted early one or two, and unweighted rows
   would bias the probabilities low.
3. The chosen configuration is refitted on all training patients; its out-of-fold
   probabilities on the same patient folds give the decision threshold (highest F-Measure)
   and the training-side metrics. Nothing here looks at patients outside ``table``.

Only LightGBM and XGBoost are searched: both handle missing values natively, save to their
own non-executable file formats, and compute exact TreeSHAP contributions themselves. Their
search spaces (``search_space()``) are narrowed from FLAML's defaults to what ~300 training
patients can support: small trees (4-32 leaves), 50-1000 boosting rounds, learning rates
0.01-0.2, subsampled rows and columns (docs/ICU.md gives the figures that led there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aistack.icu.dataset import PATIENT, PreparedTable, patient_folds
from aistack.icu.local import TreeModel
from aistack.icu.metrics import choose_threshold, classification_metrics

if TYPE_CHECKING:
    from aistack.icu.local import LocalPredictor

ESTIMATORS = ("lgbm", "xgboost")
Progress = Callable[[str], None]


def search_space() -> dict[str, dict[str, dict[str, object]]]:
    """FLAML ``custom_hp``: per estimator, the hyperparameters searched and where to start."""
    from flaml import tune  # noqa: PLC0415

    shared = {
        "n_estimators": {
            "domain": tune.lograndint(50, 1000),
            "init_value": 100,
            "low_cost_init_value": 50,
        },
        "learning_rate": {"domain": tune.loguniform(0.01, 0.2), "init_value": 0.05},
        "subsample": {"domain": tune.uniform(0.5, 1.0), "init_value": 0.8},
        "colsample_bytree": {"domain": tune.uniform(0.2, 1.0), "init_value": 0.5},
        "reg_lambda": {"domain": tune.loguniform(0.01, 100.0), "init_value": 1.0},
        "reg_alpha": {"domain": tune.loguniform(1 / 1024, 10.0), "init_value": 1 / 1024},
    }
    return {
        "lgbm": {
            **shared,
            "num_leaves": {"domain": tune.lograndint(4, 32), "init_value": 8},
            "min_child_samples": {"domain": tune.lograndint(10, 60), "init_value": 20},
            "subsample_freq": {"domain": 1},
            "log_max_bin": {"domain": 8},
        },
        "xgboost": {
            **shared,
            "max_leaves": {"domain": tune.lograndint(4, 32), "init_value": 8},
            "min_child_weight": {"domain": tune.loguniform(0.01, 10.0), "init_value": 1.0},
            "colsample_bylevel": {"domain": 1.0},
        },
    }


@dataclass(frozen=True)
class TrainingConfig:
    time_budget_s: float = 60.0
    """FLAML's search budget (the refit and out-of-fold fits come on top: a few seconds)."""
    folds: int = 5
    seed: int = 2020
    estimators: tuple[str, ...] = ESTIMATORS
    n_jobs: int = 1
    """Threads per fit. One is faster here: ~1,100 rows are too few to share out, and with
    two threads a busy machine made each fit ~3x slower (OpenMP waits)."""

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "estimators": list(self.estimators)}


@dataclass(frozen=True)
class TrainedRecipe:
    """What the search chose and how it scored on the training patients."""

    estimator: str
    hyperparameters: dict[str, object]
    model: TreeModel
    threshold: float
    out_of_fold_metrics: dict[str, float]
    out_of_fold: tuple[np.ndarray, np.ndarray]
    """(labels, probabilities) of the training patients' first-window rows, out of fold."""
    search_log_loss: float
    seconds: float
    trials: int


class FirstWindowFolds:
    """A scikit-learn style splitter FLAML accepts: ``patient_folds`` of one table, fixed."""

    shuffle = False  # FLAML reads it: our folds are already what we want

    def __init__(self, table: PreparedTable, n_splits: int, seed: int) -> None:
        self.folds = list(patient_folds(table, n_splits, seed))

    def get_n_splits(self, *args: object, **kwargs: object) -> int:
        return len(self.folds)

    def split(self, *args: object, **kwargs: object) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        yield from self.folds


def patient_weights(table: PreparedTable) -> np.ndarray:
    """``1 / rows of the patient`` for each row, so that every patient weighs the same."""
    rows_of_patient = table.frame.groupby(PATIENT)[PATIENT].transform("size")
    return 1.0 / rows_of_patient.to_numpy(dtype=float)


class FirstWindowLogLoss:
    """FLAML metric: log loss of held-out first-window rows, each patient counted once (the
    row weights shape training only). Counts its calls, hence the trials run."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x_val, y_val, estimator, labels, *args, **kwargs) -> tuple[float, dict]:
        from sklearn.metrics import log_loss  # noqa: PLC0415

        self.calls += 1
        probabilities = estimator.predict_proba(x_val)[:, 1]
        loss = float(log_loss(y_val, probabilities, labels=[0, 1]))
        return loss, {"log_loss": loss}


def search(
    table: PreparedTable, config: TrainingConfig, progress: Progress | None = None
) -> tuple[str, dict[str, object], float, int]:
    """FLAML's choice: (estimator, hyperparameters, its CV log loss, trials run)."""
    from flaml import AutoML  # noqa: PLC0415

    logging.getLogger("flaml.automl.logger").setLevel(logging.WARNING)
    if progress:
        progress(f"searching {', '.join(config.estimators)} for {config.time_budget_s:g} s")
    automl, metric = AutoML(), FirstWindowLogLoss()
    automl.fit(
        table.x,
        table.y,
        task="classification",
        metric=metric,
        time_budget=config.time_budget_s,
        eval_method="cv",
        split_type=FirstWindowFolds(table, config.folds, config.seed),
        estimator_list=list(config.estimators),
        sample_weight=patient_weights(table),
        custom_hp=search_space(),
        seed=config.seed,
        n_jobs=config.n_jobs,
        retrain_full=False,
        verbose=0,
    )
    trials = metric.calls // config.folds
    return automl.best_estimator, _plain(automl.best_config), float(automl.best_loss), trials


def library_versions() -> dict[str, str]:
    """The versions a trained model depends on (recorded in ``model.json``)."""
    from importlib.metadata import version  # noqa: PLC0415

    names = ("flaml", "lightgbm", "xgboost", "scikit-learn", "numpy", "pandas")
    return {name: version(name) for name in names}


def _plain(config: dict[str, object]) -> dict[str, object]:
    """numpy scalars → Python numbers, so the configuration goes into JSON as is."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in config.items()}


def fit_estimator(
    table: PreparedTable,
    estimator: str,
    hyperparameters: dict[str, object],
    config: TrainingConfig,
    rows: np.ndarray | None = None,
) -> TreeModel:
    """Fit FLAML's estimator class with these hyperparameters on ``rows`` (default all)."""
    from flaml.automl.task.factory import task_factory  # noqa: PLC0415

    rows = np.arange(len(table.frame)) if rows is None else rows
    learner = task_factory("classification").estimators[estimator](
        task="binary", n_jobs=config.n_jobs, **hyperparameters
    )
    learner.fit(table.x[rows], table.y[rows], sample_weight=patient_weights(table)[rows])
    return TreeModel.from_estimator(learner.model)


def out_of_fold(
    table: PreparedTable, estimator: str, hyperparameters: dict[str, object], config: TrainingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """First-window labels and out-of-fold probabilities of a fixed configuration."""
    labels, probabilities = [], []
    x, y = table.x, table.y
    for train_rows, held_out in patient_folds(table, config.folds, config.seed):
        model = fit_estimator(table, estimator, hyperparameters, config, train_rows)
        labels.append(y[held_out])
        probabilities.append(model.probabilities(x[held_out]))
    return np.concatenate(labels), np.concatenate(probabilities)


def train(
    table: PreparedTable, config: TrainingConfig, progress: Progress | None = None
) -> TrainedRecipe:
    """Search, refit on all of ``table``, and choose the threshold out of fold (see above)."""
    started = time.monotonic()
    estimator, hyperparameters, loss, trials = search(table, config, progress)
    if progress:
        progress(f"chose {estimator} after {trials} trials (CV log loss {loss:.3f}); refitting")
    model = fit_estimator(table, estimator, hyperparameters, config)
    labels, probabilities = out_of_fold(table, estimator, hyperparameters, config)
    threshold = choose_threshold(labels, probabilities)
    return TrainedRecipe(
        estimator=estimator,
        hyperparameters=hyperparameters,
        model=model,
        threshold=threshold,
        out_of_fold_metrics=classification_metrics(labels, probabilities, threshold),
        out_of_fold=(labels, probabilities),
        search_log_loss=loss,
        seconds=time.monotonic() - started,
        trials=trials,
    )


def save_version(
    recipe: TrainedRecipe,
    table: PreparedTable,
    config: TrainingConfig,
    version_dir: Path,
    *,
    workbook: str,
    command: str,
) -> LocalPredictor:
    """Write a new version folder: the model, ``model.json`` and MODEL_CARD.md."""
    from aistack.icu.local import EXPLANATION_METHOD, LocalPredictor  # noqa: PLC0415
    from aistack.icu.model_card import write_card  # noqa: PLC0415
    from aistack.icu.predictor import ModelMetadata  # noqa: PLC0415
    from aistack.xray.model_card import now_utc  # noqa: PLC0415

    metadata = ModelMetadata(
        backend="local",
        version=version_dir.name,
        training_data_hash=table.data_hash,
        threshold=round(recipe.threshold, 6),
        features=table.features,
        metrics={k: round(v, 4) for k, v in recipe.out_of_fold_metrics.items()},
        evaluation=(
            "out-of-fold on the training patients' first-window rows, patient-grouped "
            f"{config.folds}-fold; the search saw these patients, so it is optimistic"
        ),
        explanation_method=EXPLANATION_METHOD,
        details={
            "estimator": recipe.estimator,
            "hyperparameters": recipe.hyperparameters,
            "trials": recipe.trials,
            "search_log_loss": round(recipe.search_log_loss, 4),
            "libraries": library_versions(),
        },
    )
    predictor = LocalPredictor(recipe.model, metadata)
    record = {
        "name": "icu-admission",
        "data": {"workbook": workbook, **table.summary()},
        "training": {
            "command": command,
            "trained_at": now_utc(),
            "seconds": round(recipe.seconds, 1),
            "config": config.to_dict(),
        },
        "training_metrics": metadata.metrics,
    }
    predictor.save(version_dir, record)
    write_card(version_dir)
    return predictor
