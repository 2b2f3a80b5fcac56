"""Where the ICU predictor's data and models are by default, and the named choices.

Kept free of numpy and pandas so that the command line can name them in ``--help`` at once.
"""

from __future__ import annotations

from typing import Literal

from aistack.config import PROJECT_ROOT

WORKBOOK_NAME = "Kaggle_Sirio_Libanes_ICU_Prediction.xlsx"
DEFAULT_WORKBOOK = PROJECT_ROOT.parent / "shared" / "data" / "icu" / WORKBOOK_NAME
"""Where a checkout finds the workbook (never committed; see the data README)."""
DEFAULT_MODEL_DIR = PROJECT_ROOT / "models" / "icu"
"""Version folders of the local model (``models/icu/<N>/``)."""

Fill = Literal["forward", "forward-backward"]
FILLS: tuple[Fill, ...] = ("forward", "forward-backward")
"""How missing values are filled inside each patient (``aistack.icu.dataset``)."""
