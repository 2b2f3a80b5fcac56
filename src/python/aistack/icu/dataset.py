"""The Sirio-Libanes ICU workbook, prepared for "will this patient need the ICU?".

The question asked at the end of a patient's first window (0-2 h after admission to the
hospital): will they be admitted to the ICU later? Preparation, in this order:

1. **Encode** ``AGE_PERCENTIL`` ("10th" ... "90th", "Above 90th") as a number (10 ... 90,
   100); every other column is already numeric (labs and vitals scaled to [-1, 1]).
2. **Drop every row at or after the patient's ICU admission** (the first window with
   ``ICU = 1``): what happens in the ICU never describes the patient before it.
3. **Exclude patients already in the ICU in the first window**: nothing is left to predict.
4. **Fill missing values inside each patient's own remaining windows**, in time order:
   forward (a value carries over into later windows: the patient's last known state), and,
   only with ``fill="forward-backward"``, backward as well, as the dataset's authors suggest.
   Backward filling puts later measurements into earlier windows; with post-admission rows
   removed, patients admitted early have fewer windows to borrow from, so what stays missing
   tells the label (docs/ICU.md measures it). ``"forward"`` is the default for that reason.
5. **Label** each remaining row ``ICU = 1`` when the patient is admitted to the ICU later.

The prepared table keeps one row per remaining (patient, window): every row describes a
patient before any ICU admission, so every row is a legitimate training example. Questions
are asked of first-window rows only (``first_window()``); splits keep each patient's rows on
one side (``patient_folds``). Feature names are the workbook's column names.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from aistack.icu.defaults import DEFAULT_WORKBOOK, FILLS, Fill

PATIENT = "PATIENT_VISIT_IDENTIFIER"
WINDOW = "WINDOW"
LABEL = "ICU"
AGE_PERCENTILE = "AGE_PERCENTIL"
WINDOWS = ("0-2", "2-4", "4-6", "6-12", "ABOVE_12")
"""Hours since admission to the hospital, in time order."""
FIRST_WINDOW = WINDOWS[0]
NOT_FEATURES = (PATIENT, WINDOW, LABEL)

_PERCENTILE = re.compile(r"^\s*(above\s+)?(\d{1,2})\s*(st|nd|rd|th)?\s*$", re.IGNORECASE)


def encode_age_percentile(value: object) -> float:
    """``"60th"`` → 60.0, ``"Above 90th"`` → 100.0, numbers (or numeric text) as they are,
    missing → NaN.

    One encoding for the workbook and for rows sent to a predictor (which may send either).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        pass
    match = _PERCENTILE.match(str(value))
    if match is None:
        raise ValueError(f"{AGE_PERCENTILE} must be like '60th' or 'Above 90th', not {value!r}")
    above, number = match.group(1), float(match.group(2))
    return number + 10.0 if above else number


@lru_cache(maxsize=2)
def _parsed(path: Path, size: int, mtime_ns: int) -> pd.DataFrame:
    """Parsing the workbook takes seconds: once per process and file version is enough."""
    return pd.read_excel(path)


def read_workbook(path: Path = DEFAULT_WORKBOOK) -> pd.DataFrame:
    """The workbook as published, ``AGE_PERCENTIL`` encoded; checks the columns it relies on."""
    if not path.is_file():
        raise FileNotFoundError(f"the ICU workbook is not at {path}")
    stat = path.stat()
    raw = _parsed(path.resolve(), stat.st_size, stat.st_mtime_ns).copy()
    missing = [c for c in (*NOT_FEATURES, AGE_PERCENTILE) if c not in raw.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}")
    unknown_windows = sorted(set(raw[WINDOW].astype(str)) - set(WINDOWS))
    if unknown_windows:
        raise ValueError(f"{path} has windows {unknown_windows}; expected {list(WINDOWS)}")
    raw[AGE_PERCENTILE] = raw[AGE_PERCENTILE].map(encode_age_percentile)
    return raw


def feature_names(raw: pd.DataFrame) -> tuple[str, ...]:
    """Every workbook column but the patient, the window and the label, in workbook order."""
    return tuple(str(c) for c in raw.columns if c not in NOT_FEATURES)


def window_position(windows: pd.Series) -> pd.Series:
    return windows.astype(str).map({w: i for i, w in enumerate(WINDOWS)})


def admission_positions(raw: pd.DataFrame) -> pd.Series:
    """Per patient, the position of the first window in the ICU; absent when never admitted."""
    in_icu = raw[raw[LABEL] == 1]
    return window_position(in_icu[WINDOW]).groupby(in_icu[PATIENT]).min()


@dataclass(frozen=True)
class PreparedTable:
    """Rows before any ICU admission, filled and labelled; see the module docstring."""

    frame: pd.DataFrame
    """Columns: PATIENT_VISIT_IDENTIFIER, WINDOW, the features, ICU (admitted later)."""
    features: tuple[str, ...]
    fill: Fill
    source_sha256: str
    """SHA-256 of the workbook file the table was prepared from."""

    @cached_property
    def data_hash(self) -> str:
        """SHA-256 of the prepared table itself (canonical CSV): what a model was trained on."""
        text = self.frame.to_csv(index=False, float_format="%.10g", na_rep="", lineterminator="\n")
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def x(self) -> np.ndarray:
        return self.frame[list(self.features)].to_numpy(dtype=float)

    @property
    def y(self) -> np.ndarray:
        return self.frame[LABEL].to_numpy(dtype=int)

    @property
    def patients(self) -> np.ndarray:
        return self.frame[PATIENT].to_numpy()

    @property
    def is_first_window(self) -> np.ndarray:
        return (self.frame[WINDOW] == FIRST_WINDOW).to_numpy()

    def first_window(self) -> pd.DataFrame:
        """One row per patient: the rows questions are asked of."""
        return self.frame[self.is_first_window]

    def subset(self, patients: Sequence[object]) -> PreparedTable:
        """The rows of these patients only (a training side of a split)."""
        keep = self.frame[PATIENT].isin(set(patients))
        return PreparedTable(
            self.frame[keep].reset_index(drop=True), self.features, self.fill, self.source_sha256
        )

    def summary(self) -> dict[str, object]:
        first = self.first_window()
        return {
            "patients": len(first),
            "admitted_later": int(first[LABEL].sum()),
            "rows": len(self.frame),
            "features": len(self.features),
            "fill": self.fill,
            "data_hash": self.data_hash,
            "source_sha256": self.source_sha256,
        }


def prepare(raw: pd.DataFrame, fill: Fill = "forward", source_sha256: str = "") -> PreparedTable:
    """The prepared table from the raw workbook (see the module docstring for the steps)."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, not {fill!r}")
    features = feature_names(raw)
    frame = raw.assign(_position=window_position(raw[WINDOW]))
    frame = frame.sort_values([PATIENT, "_position"], kind="stable")
    admitted_at = frame[PATIENT].map(admission_positions(raw))
    frame = frame[admitted_at.isna() | (frame["_position"] < admitted_at)]
    admitted_at = admitted_at.loc[frame.index]
    # Patients in the ICU at 0-2 h have no row left: step 3 follows from step 2.
    filled = frame.groupby(PATIENT, sort=False)[list(features)].ffill()
    if fill == "forward-backward":
        filled = filled.groupby(frame[PATIENT], sort=False).bfill()
    table = pd.DataFrame({PATIENT: frame[PATIENT], WINDOW: frame[WINDOW].astype(str)})
    table = pd.concat([table, filled.astype(float)], axis=1)
    table[LABEL] = admitted_at.notna().astype(int)
    return PreparedTable(table.reset_index(drop=True), features, fill, source_sha256)


def load_prepared(path: Path = DEFAULT_WORKBOOK, fill: Fill = "forward") -> PreparedTable:
    """Read and prepare the workbook at ``path``."""
    source = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return prepare(read_workbook(path), fill, source)


def patient_folds(
    table: PreparedTable, n_splits: int = 5, seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(training rows, evaluation rows) per fold, both as positions in ``table.frame``.

    Folds are drawn over patients (``StratifiedGroupKFold`` on the first-window rows, so each
    fold has about the same share admitted later). Training rows are every row of the other
    folds' patients; evaluation rows are the fold's patients' first-window rows only.
    """
    from sklearn.model_selection import StratifiedGroupKFold  # noqa: PLC0415

    first = np.flatnonzero(table.is_first_window)
    patients = table.patients
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for _, held_out in splitter.split(first, table.y[first], patients[first]):
        held_out_patients = patients[first[held_out]]
        in_fold = np.isin(patients, held_out_patients)
        yield np.flatnonzero(~in_fold), first[held_out]
