"""The local ICU predictor: real TreeSHAP contributions, input checks, version folders, and
the committed model (models/icu) loading and scoring the workbook's first-window rows."""

from __future__ import annotations

import json
import math

import lightgbm
import numpy as np
import pytest
import xgboost

from aistack.errors import InvalidRequest
from aistack.icu.dataset import AGE_PERCENTILE, PATIENT, WINDOW, prepare, read_workbook
from aistack.icu.defaults import DEFAULT_MODEL_DIR, WORKBOOK_NAME
from aistack.icu.local import (
    LocalPredictor,
    TreeModel,
    icu_versions,
    load_local,
    read_record,
    version_dir,
)
from aistack.icu.metrics import choose_threshold, classification_metrics
from aistack.icu.predictor import (
    METRIC_NAMES,
    Contribution,
    IcuPredictor,
    ModelMetadata,
    predict,
    strongest,
)
from aistack.icu.rows import feature_matrix
from tests.conftest import DATA_DIR

WORKBOOK = DATA_DIR / "icu" / WORKBOOK_NAME
FEATURES = ("AGE_PERCENTIL", "GENDER", "DISEASE GROUPING 1", "PCR_MEDIAN", "LACTATE_MAX")


def synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, len(FEATURES)))
    x[:, 0] = rng.choice([10, 20, 50, 90, 100], size=n)
    x[rng.random((n, len(FEATURES))) < 0.2] = np.nan
    logit = 2 * np.nan_to_num(x[:, 3]) - np.nan_to_num(x[:, 4]) + (x[:, 0] > 50)
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def metadata(threshold: float = 0.5) -> ModelMetadata:
    return ModelMetadata("local", "0", "f" * 64, threshold, FEATURES)


@pytest.fixture(scope="module", params=["lightgbm", "xgboost"])
def tree(request) -> TreeModel:
    x, y = synthetic()
    if request.param == "lightgbm":
        fitted = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=8, verbose=-1).fit(x, y)
    else:
        fitted = xgboost.XGBClassifier(n_estimators=30, max_leaves=8, n_jobs=1).fit(x, y)
    return TreeModel.from_estimator(fitted)


def test_contributions_are_treeshap_values_that_add_up_to_the_log_odds(tree):
    x, _ = synthetic(50, seed=1)
    contributions = tree.contributions(x)
    assert contributions.shape == (50, len(FEATURES) + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), tree.log_odds(x), atol=1e-5)
    np.testing.assert_allclose(1 / (1 + np.exp(-tree.log_odds(x))), tree.probabilities(x), 1e-5)
    # a feature the trees never split on contributes nothing: GENDER is pure noise here
    assert np.abs(contributions[:, 1]).max() < np.abs(contributions[:, 3]).max()


def test_a_saved_model_loads_back_without_pickle_and_scores_the_same(tree, tmp_path):
    x, _ = synthetic(20, seed=2)
    path = tree.save(tmp_path)
    assert path.name == TreeModel.FILES[tree.format] and path.read_bytes()[:1] in b"{t"
    again = TreeModel.load(tmp_path, tree.format)
    np.testing.assert_allclose(again.probabilities(x), tree.probabilities(x), atol=1e-7)


def test_the_local_predictor_answers_through_the_interface(tree, tmp_path):
    predictor = LocalPredictor(tree, metadata(threshold=0.5))
    assert isinstance(predictor, IcuPredictor)
    rows = [
        {"AGE_PERCENTIL": "Above 90th", "PCR_MEDIAN": 0.9, "LACTATE_MAX": "-0.5"},
        {"AGE_PERCENTIL": 10, "PCR_MEDIAN": -0.9, "GENDER": None, PATIENT: 7, WINDOW: "0-2"},
    ]
    probabilities = predictor.predict_proba(rows)
    assert len(probabilities) == 2 and all(0 < p < 1 for p in probabilities)
    assert probabilities[0] > probabilities[1]
    answers = predict(predictor, rows, top=2)
    assert [a.label for a in answers] == [int(p >= 0.5) for p in probabilities]
    assert all(len(a.top_features) <= 2 for a in answers)
    why = answers[0].top_features[0]
    assert isinstance(why, Contribution) and why.feature in FEATURES
    row_values = dict(zip(FEATURES, feature_matrix(rows[:1], FEATURES)[0], strict=True))
    expected = row_values[why.feature]
    assert (why.value is None and math.isnan(expected)) or why.value == expected
    # the full explanation adds up: contributions + base value = log-odds of the probability
    full = predictor.explain(rows[0], top=len(FEATURES))
    base = tree.contributions(feature_matrix(rows[:1], FEATURES))[0, -1]
    logit = math.log(probabilities[0] / (1 - probabilities[0]))
    assert sum(c.contribution for c in full) + base == pytest.approx(logit, abs=1e-5)
    assert predictor.predict_proba([]) == [] and predictor.explain_rows([]) == []


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"PCR_MEDIN": 0.1}, "unknown column 'PCR_MEDIN' (did you mean 'PCR_MEDIAN'?)"),
        ({"PCR_MEDIAN": "high"}, "row 1 PCR_MEDIAN='high'"),
        ({"PCR_MEDIAN": [1]}, "list is not a number"),
        ({"PCR_MEDIAN": float("inf")}, "infinite"),
        ({AGE_PERCENTILE: "elderly"}, "AGE_PERCENTIL must be like"),
    ],
)
def test_bad_rows_are_refused_with_a_422_naming_the_column(tree, row, message):
    predictor = LocalPredictor(tree, metadata())
    with pytest.raises(InvalidRequest) as caught:
        predictor.predict_proba([row])
    assert caught.value.status == 422 and message in caught.value.message


def test_strongest_orders_by_magnitude_and_drops_zeros():
    values = [Contribution(f, 0.0, c) for f, c in zip("abcd", [0.1, -0.5, 0.0, 0.3], strict=True)]
    assert [c.feature for c in strongest(values, 3)] == ["b", "d", "a"]
    assert [c.feature for c in strongest(values, 10)] == ["b", "d", "a"]


def test_threshold_is_the_best_f_measure_cut_off():
    y, p = [0, 0, 1, 1, 0, 1, 1, 0], [0.1, 0.4, 0.35, 0.8, 0.2, 0.6, 0.7, 0.65]
    threshold = choose_threshold(y, p)
    best = max(classification_metrics(y, p, t)["F-Measure"] for t in p)
    assert classification_metrics(y, p, threshold)["F-Measure"] == pytest.approx(best)
    assert list(classification_metrics(y, p, threshold)) == list(METRIC_NAMES)


def test_versions_are_chosen_explicitly_else_stable_else_highest(tree, tmp_path):
    for number in (1, 2):
        LocalPredictor(tree, metadata()).save(tmp_path / str(number), {"version": number})
    assert icu_versions(tmp_path) == [1, 2]
    assert version_dir(tmp_path).name == "2" and version_dir(tmp_path, 1).name == "1"
    (tmp_path / "version_labels.json").write_text(json.dumps({"stable": 1}))
    assert version_dir(tmp_path).name == "1"
    with pytest.raises(FileNotFoundError, match="versions: 1, 2"):
        version_dir(tmp_path, 3)
    with pytest.raises(FileExistsError):
        LocalPredictor(tree, metadata()).save(tmp_path / "1", {})
    assert read_record(tmp_path / "2")["model_format"] == tree.format


# --- the committed model


@pytest.fixture(scope="module")
def committed() -> LocalPredictor:
    if not icu_versions(DEFAULT_MODEL_DIR):
        pytest.fail(f"no committed ICU model in {DEFAULT_MODEL_DIR}: run `aistack icu train`")
    return load_local()


def test_the_committed_model_is_small_documented_and_consistent(committed):
    folder = version_dir()
    record = read_record(folder)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2_000_000
    assert {p.name for p in folder.iterdir()} == {
        "model.json",
        "MODEL_CARD.md",
        TreeModel.FILES[record["model_format"]],
    }
    meta = committed.metadata
    assert set(meta.metrics) == set(METRIC_NAMES) and 0 < meta.threshold < 1
    assert len(meta.training_data_hash) == 64 and len(meta.features) == 228
    assert record["validation"]["metrics_mean"] == meta.metrics
    card = (folder / "MODEL_CARD.md").read_text()
    assert meta.training_data_hash in card and "Not a medical device" in card


def test_the_committed_model_scores_the_workbook_rows(committed):
    if not WORKBOOK.is_file():
        pytest.skip(f"the ICU workbook is not at {WORKBOOK}")
    table = prepare(read_workbook(WORKBOOK))
    assert table.data_hash == committed.metadata.training_data_hash
    first = table.first_window()
    rows = first.drop(columns=["ICU"]).to_dict("records")
    answers = predict(committed, rows, top=3)
    probabilities = np.array([a.probability for a in answers])
    assert ((probabilities > 0) & (probabilities < 1)).all()
    # it has learnt something (these are its training patients: a floor, not a measure)
    assert classification_metrics(first["ICU"], probabilities, 0.5)["ROC-AUC"] > 0.75
    assert all(a.top_features for a in answers)
