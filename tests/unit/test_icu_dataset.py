"""The ICU workbook's preparation: no row at or after ICU admission reaches any training set.

The leakage checks are built from the raw workbook, independently of the preparation code:
which (patient, window) pairs are at or after admission, and which values each patient had
before it. Skipped, with the reason, when the workbook is not in ../shared/data.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from aistack.icu.dataset import (
    AGE_PERCENTILE,
    FIRST_WINDOW,
    LABEL,
    PATIENT,
    WINDOW,
    WINDOWS,
    encode_age_percentile,
    feature_names,
    patient_folds,
    prepare,
    read_workbook,
)
from aistack.icu.defaults import WORKBOOK_NAME
from aistack.icu.training import FirstWindowFolds
from tests.conftest import DATA_DIR

WORKBOOK = DATA_DIR / "icu" / WORKBOOK_NAME


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    if not WORKBOOK.is_file():
        pytest.skip(f"the ICU workbook is not at {WORKBOOK}")
    return read_workbook(WORKBOOK)


@pytest.fixture(scope="module")
def table(raw):
    return prepare(raw)


def post_admission_pairs(raw: pd.DataFrame) -> set[tuple[int, str]]:
    """(patient, window) at or after each patient's first ICU window, from the raw rows."""
    pairs = set()
    for patient, rows in raw.groupby(PATIENT):
        in_icu = [
            WINDOWS.index(w) for w, icu in zip(rows[WINDOW], rows[LABEL], strict=True) if icu == 1
        ]
        if in_icu:
            pairs |= {(patient, w) for w in WINDOWS[min(in_icu) :]}
    return pairs


def test_the_workbook_has_the_documented_shape(raw):
    assert raw.shape == (1925, 231)
    assert raw[PATIENT].nunique() == 385
    assert raw.groupby(PATIENT)[LABEL].max().sum() == 195
    features = feature_names(raw)
    assert len(features) == 228 and features[:3] == ("AGE_ABOVE65", AGE_PERCENTILE, "GENDER")
    assert {PATIENT, WINDOW, LABEL}.isdisjoint(features)


def test_the_prepared_cohort_and_label(raw, table):
    first = table.first_window()
    assert len(first) == 353 and first[LABEL].sum() == 163  # 32 in the ICU at 0-2 h excluded
    in_icu_at_start = set(raw[(raw[WINDOW] == FIRST_WINDOW) & (raw[LABEL] == 1)][PATIENT])
    assert len(in_icu_at_start) == 32 and in_icu_at_start.isdisjoint(table.patients)
    ever = raw.groupby(PATIENT)[LABEL].max()
    assert (table.frame[LABEL].to_numpy() == ever.loc[table.patients].to_numpy()).all()
    assert list(table.frame.columns) == [PATIENT, WINDOW, *table.features, LABEL]


def test_no_row_at_or_after_admission_is_kept(raw, table):
    post = post_admission_pairs(raw)
    kept = set(zip(table.frame[PATIENT], table.frame[WINDOW], strict=True))
    assert len(post) > 0 and kept.isdisjoint(post)
    # and every pre-admission row of an included patient is kept
    included = set(table.patients)
    pre = {(p, w) for p, w in zip(raw[PATIENT], raw[WINDOW], strict=True) if p in included}
    assert kept == pre - post


@pytest.mark.parametrize("fill", ["forward", "forward-backward"])
def test_filled_values_come_from_the_patients_own_earlier_pre_admission_rows(raw, fill):
    """Forward fill takes values from the same patient's earlier pre-admission windows only;
    forward-backward may also take later ones, but never from at or after admission."""
    table = prepare(raw, fill)
    post = post_admission_pairs(raw)
    by_pair = raw.set_index([PATIENT, WINDOW])
    features = list(table.features)
    for patient, rows in table.frame.groupby(PATIENT):
        windows = list(rows[WINDOW])
        source = by_pair.loc[[(patient, w) for w in windows], features].to_numpy()
        assert not any((patient, w) in post for w in windows)
        for i, filled in enumerate(rows[features].to_numpy()):
            allowed = source[: i + 1] if fill == "forward" else source
            for j, value in enumerate(filled):
                if math.isnan(value):
                    assert np.isnan(allowed[:, j]).all()
                else:
                    assert value in allowed[:, j], (patient, windows[i], features[j])


def test_forward_fill_keeps_the_first_window_as_measured(raw, table):
    first = table.first_window().set_index(PATIENT)[list(table.features)]
    measured = raw[raw[WINDOW] == FIRST_WINDOW].set_index(PATIENT).loc[first.index]
    assert first.equals(measured[list(table.features)].astype(float))


def test_backward_fill_leaks_the_label_through_what_stays_missing(raw):
    """Why forward fill is the default: after forward-backward fill, patients admitted later
    have many more missing values in their first window than the others."""
    table = prepare(raw, "forward-backward")
    first = table.first_window()
    missing = first[list(table.features)].isna().mean(axis=1).groupby(first[LABEL]).mean()
    assert missing[1] > 10 * missing[0]


def test_patient_folds_keep_patients_apart_and_score_first_windows_only(raw, table):
    post = post_admission_pairs(raw)
    pairs = list(zip(table.frame[PATIENT], table.frame[WINDOW], strict=True))
    seen_held_out: list = []
    for train_rows, held_out in patient_folds(table, 5, seed=0):
        assert post.isdisjoint(pairs[i] for i in train_rows)  # no training set sees the ICU
        train_patients = set(table.patients[train_rows])
        held_out_patients = set(table.patients[held_out])
        assert train_patients.isdisjoint(held_out_patients)
        assert (table.frame[WINDOW].to_numpy()[held_out] == FIRST_WINDOW).all()
        seen_held_out += list(held_out_patients)
        share = table.y[held_out].mean()
        assert 0.35 < share < 0.57  # stratified: 163/353 = 0.46
    assert sorted(seen_held_out) == sorted(set(table.patients))
    splitter = FirstWindowFolds(table, 5, seed=0)
    assert splitter.get_n_splits() == 5 and len(list(splitter.split())) == 5


def test_subset_and_hash(table):
    some = sorted(set(table.patients))[:10]
    part = table.subset(some)
    assert set(part.patients) == set(some) and part.features == table.features
    assert len(table.data_hash) == 64 and part.data_hash != table.data_hash
    assert prepare(read_workbook(WORKBOOK)).data_hash == table.data_hash  # deterministic


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10th", 10.0),
        ("Above 90th", 100.0),
        (" 60th ", 60.0),
        (70, 70.0),
        ("60.0", 60.0),
        (None, math.nan),
    ],
)
def test_age_percentile_encoding(value, expected):
    got = encode_age_percentile(value)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


def test_age_percentile_refuses_other_text():
    with pytest.raises(ValueError, match="AGE_PERCENTIL"):
        encode_age_percentile("old")
