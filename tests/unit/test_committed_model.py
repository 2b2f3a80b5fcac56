"""The model committed under models/covid19/1: size, metadata, and its heatmaps.

The model is part of the repository, so its absence is a failure, not a skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from aistack.inference.savedmodel import SavedModelEngine
from aistack.xray.dataset import TRAINING_MAX_PIXELS
from aistack.xray.export import MODEL_INFO_FILE
from aistack.xray.service import run_model
from tests.conftest import MODEL_DIR

VERSION_DIR = MODEL_DIR / "1"
MAX_BYTES = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def version_dir() -> Path:
    if not (VERSION_DIR / "saved_model.pb").is_file():
        pytest.fail(f"the committed model is missing: no saved_model.pb in {VERSION_DIR}")
    if not (VERSION_DIR / MODEL_INFO_FILE).is_file():
        pytest.fail(f"the committed model has no {MODEL_INFO_FILE} in {VERSION_DIR}")
    return VERSION_DIR


@pytest.fixture(scope="module")
def engine(version_dir: Path) -> SavedModelEngine:
    return SavedModelEngine(version_dir)


@pytest.fixture(scope="module")
def runs(engine: SavedModelEngine, sample_images: dict[str, Path]) -> dict:
    return {
        name: run_model(engine, path.read_bytes(), TRAINING_MAX_PIXELS, heatmap=True)
        for name, path in sample_images.items()
    }


def test_saved_model_is_at_most_20_mb(version_dir: Path):
    size = sum(p.stat().st_size for p in version_dir.rglob("*") if p.is_file())
    assert 0 < size <= MAX_BYTES, f"{version_dir} holds {size / 1e6:.1f} MB"


def test_model_info_names_the_three_classes(version_dir: Path):
    info = json.loads((version_dir / MODEL_INFO_FILE).read_text())
    assert info["classes"] == ["covid", "normal", "pneumonia_bac"]
    assert info["version"] == 1
    assert info["image_size"] == 224
    assert info.get("members", 1) >= 1


def test_engine_loads_the_committed_model(engine: SavedModelEngine):
    assert engine.warmed_up
    assert engine.info.version == 1
    assert engine.info.classes == ("covid", "normal", "pneumonia_bac")
    assert engine.info.image_size == 224


def test_sample_heatmaps_are_14x14_normalised_and_not_constant(runs: dict):
    assert set(runs) == {"covid", "normal", "pneumonia_bac"}
    for name, run in runs.items():
        assert run.heatmap is not None, name
        assert run.heatmap.shape == (14, 14), name
        assert np.isfinite(run.heatmap).all(), name
        assert run.heatmap.min() >= 0.0, name
        assert run.heatmap.max() <= 1.0 + 1e-6, name
        assert run.heatmap.max() == pytest.approx(1.0, abs=1e-6), name
        assert np.ptp(run.heatmap) > 0.1, f"{name}: heatmap is (nearly) constant"
        assert run.probabilities.shape == (3,)
        assert run.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_gradcam_bytes_signature_agrees_with_the_in_process_path(
    version_dir: Path, runs: dict, sample_images: dict[str, Path]
):
    loaded = tf.saved_model.load(str(version_dir))
    for name, path in sample_images.items():
        out = loaded.signatures["gradcam"](image_bytes=tf.constant([path.read_bytes()]))
        probabilities = out["probabilities"].numpy()[0]
        heatmap = out["heatmap"].numpy()[0]
        assert heatmap.shape == (14, 14), name
        in_process = runs[name].probabilities
        assert int(probabilities.argmax()) == int(in_process.argmax()), (
            f"{name}: signature {probabilities.round(3)} vs in-process {in_process.round(3)}"
        )
        # Decoders and resizers differ slightly (tf vs OpenCV), the model must not care much.
        np.testing.assert_allclose(probabilities, in_process, atol=0.05, err_msg=name)
        np.testing.assert_allclose(heatmap, runs[name].heatmap, atol=0.1, err_msg=name)
