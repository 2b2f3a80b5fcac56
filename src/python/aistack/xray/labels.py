"""Class names in model output order, and their spellings in the 2020 (v1) API."""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("covid", "normal", "pneumonia_bac")
"""Index order of the model's probability vector."""

V1_CLASS_NAMES: tuple[str, ...] = ("Covid19", "Normal_Lung", "Pneumonia_Bacterial_Lung")
"""The same classes as the 2020 service named them (same index order)."""

COVID_INDEX = CLASSES.index("covid")
BACTERIAL_INDEX = CLASSES.index("pneumonia_bac")
