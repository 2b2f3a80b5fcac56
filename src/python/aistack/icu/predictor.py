"""One interface for ICU-admission predictors, whichever backend answers.

``LocalPredictor`` (``icu.local``, the embedded default: a gradient-boosted tree model found
by FLAML's AutoML and scored in-process) and ``IntegratedMLPredictor`` (``icu.integratedml``:
IRIS IntegratedML scoring with ``PROBABILITY()`` in SQL) both satisfy ``IcuPredictor``; API
routes, the web panel and the IRIS business operation should depend on this module only.

A *row* is one patient's first-window values keyed by the workbook's column names
(``aistack.icu.rows`` says what is accepted); a missing key or ``None`` is a missing value,
as in the workbook. ``predict()`` below combines probabilities, the decision threshold and
explanations into one answer per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol, runtime_checkable

Row = Mapping[str, float | str | None]
"""One patient's values by workbook column name; ``None`` or an absent key is missing."""

METRIC_NAMES = ("ROC-AUC", "Precision", "Recall", "F-Measure", "Accuracy")
"""Metric names as IntegratedML's ``INFORMATION_SCHEMA.ML_VALIDATION_METRICS`` spells them
(``METRIC_NAME``); both backends report under these names."""


@dataclass(frozen=True)
class Contribution:
    """How much one feature moved one prediction, in the predictor's ``contribution_unit``."""

    feature: str
    value: float | None
    """The row's value of the feature (``None``: missing)."""
    contribution: float
    """Positive: towards ICU admission."""


@dataclass(frozen=True)
class ModelMetadata:
    """What a client shows about the model behind the answers."""

    backend: Literal["local", "integratedml"]
    version: str
    training_data_hash: str
    """``PreparedTable.data_hash`` of the rows the model was trained on."""
    threshold: float
    """A probability at or above it is labelled 1 (admission predicted)."""
    features: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    """Under ``METRIC_NAMES``; how they were measured is in ``evaluation``."""
    evaluation: str = ""
    explanation_method: str = ""
    contribution_unit: Literal["log-odds", "probability"] = "log-odds"
    details: dict[str, object] = field(default_factory=dict)
    """Backend-specific facts: estimator, library versions, IRIS model names."""

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "features": list(self.features)}


@dataclass(frozen=True)
class IcuPrediction:
    """One row's answer."""

    probability: float
    """Probability of ICU admission after the first window."""
    label: int
    """1 when ``probability >= threshold``."""
    threshold: float
    top_features: tuple[Contribution, ...]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@runtime_checkable
class IcuPredictor(Protocol):
    """Scores first-window rows; both backends implement it."""

    @property
    def metadata(self) -> ModelMetadata: ...

    def predict_proba(self, rows: Sequence[Row]) -> list[float]:
        """Probability of ICU admission per row, in order.

        Raises ``aistack.errors.InvalidRequest`` (422) for unknown columns or values that are
        not numbers, naming them.
        """
        ...

    def explain(self, row: Row, top: int = 5) -> list[Contribution]:
        """The ``top`` features that moved this row's prediction most, largest first."""
        ...

    def explain_rows(self, rows: Sequence[Row], top: int = 5) -> list[list[Contribution]]:
        """``explain`` for many rows at once (one model call where the backend allows)."""
        ...


def predict(predictor: IcuPredictor, rows: Sequence[Row], top: int = 5) -> list[IcuPrediction]:
    """Probability, label at the model's threshold and top features for each row."""
    threshold = predictor.metadata.threshold
    probabilities = predictor.predict_proba(rows)
    explanations = predictor.explain_rows(rows, top) if top > 0 else [[] for _ in rows]
    return [
        IcuPrediction(
            probability=p, label=int(p >= threshold), threshold=threshold, top_features=tuple(why)
        )
        for p, why in zip(probabilities, explanations, strict=True)
    ]


def strongest(contributions: Sequence[Contribution], top: int) -> list[Contribution]:
    """The ``top`` contributions of largest magnitude, ties broken by feature order."""
    ranked = sorted(enumerate(contributions), key=lambda ic: (-abs(ic[1].contribution), ic[0]))
    return [c for _, c in ranked[:top] if c.contribution != 0.0]
