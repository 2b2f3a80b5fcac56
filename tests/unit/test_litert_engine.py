"""The LiteRT engine on the committed model: TensorFlow's answers, without TensorFlow.

Its file (``assets.extra/model.tflite``) is converted from the version's SavedModel; the
checks here prove it is that model (the same bytes when converted again, the same outputs as
the SavedModel engine), that the engine is safe to share between request threads, that the
server picks it by default and falls back to TensorFlow without it, and that serving with it
never imports TensorFlow.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from aistack.cli import app
from aistack.config import Settings
from aistack.inference.backends import (
    DEFAULT_CONCURRENCY,
    BackendSpec,
    build_engine,
    inprocess_runtime,
)
from aistack.inference.engine import EngineOutput
from aistack.inference.litert import LITERT_MODEL_FILE, LiteRtEngine, litert_model_path
from aistack.inference.savedmodel import SavedModelEngine
from aistack.xray.export import export_saved_model
from aistack.xray.litert_export import litert_model_bytes
from aistack.xray.model import build_classifier
from tests.conftest import MODEL_DIR, ROOT
from tests.doubles.helpers import model_inputs

VERSION_DIR = MODEL_DIR / "1"
TOLERANCE = 1e-5
INPROCESS = BackendSpec("inprocess", "inprocess")


@pytest.fixture(scope="module")
def committed_model() -> bytes:
    path = litert_model_path(VERSION_DIR)
    if not path.is_file():
        pytest.fail(
            f"the committed model has no LiteRT model: run `aistack models litert` ({path})"
        )
    return path.read_bytes()


@pytest.fixture(scope="module")
def engine(committed_model: bytes) -> LiteRtEngine:
    return LiteRtEngine(VERSION_DIR)


@pytest.fixture(scope="module")
def synthetic_pixels() -> np.ndarray:
    """Six (224, 224, 1) inputs the model never saw: noise, smooth ramps, blank, saturated."""
    rng = np.random.default_rng(2020)
    yy, xx = np.mgrid[0:224, 0:224] / 224
    ramps = [np.clip(255 * (a * xx + (1 - a) * yy), 0, 255) for a in (0.2, 0.7)]
    images = [
        rng.integers(0, 256, (224, 224)),
        rng.normal(120, 40, (224, 224)).clip(0, 255),
        *ramps,
        np.zeros((224, 224)),
        np.full((224, 224), 255),
    ]
    return np.stack(images).astype(np.uint8)[..., np.newaxis]


@pytest.fixture
def copy_without_litert(tmp_path: Path) -> Path:
    """The committed version copied as ``<tmp>/covid19/1``, its LiteRT model left out."""
    target = tmp_path / "covid19" / "1"
    shutil.copytree(
        VERSION_DIR, target, ignore=shutil.ignore_patterns(Path(LITERT_MODEL_FILE).name)
    )
    assert not litert_model_path(target).exists()
    return target


def assert_same(got: EngineOutput, expected: EngineOutput) -> None:
    np.testing.assert_allclose(got.probabilities, expected.probabilities, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(
        got.probabilities.argmax(axis=1), expected.probabilities.argmax(axis=1)
    )
    if expected.heatmaps is None:
        assert got.heatmaps is None
    else:
        assert got.heatmaps is not None
        assert got.heatmaps.shape == expected.heatmaps.shape
        np.testing.assert_allclose(got.heatmaps, expected.heatmaps, rtol=0, atol=TOLERANCE)


def test_converting_the_committed_savedmodel_gives_the_committed_file(committed_model):
    """Conversion is byte-deterministic, so the committed file is provably the SavedModel's.

    A new TensorFlow may convert differently: then `aistack models litert --force` rewrites it,
    and the parity checks below say whether the outputs still agree.
    """
    assert litert_model_bytes(VERSION_DIR) == committed_model


def test_every_export_writes_a_litert_model_of_its_savedmodel(tmp_path: Path):
    """A small model of another input size: the file, its signatures and its outputs."""
    keras.utils.set_random_seed(7)
    version_dir = export_saved_model(build_classifier(image_size=64, width=4), tmp_path / "m", 1)
    assert litert_model_path(version_dir).is_file()
    pixels = np.random.default_rng(7).integers(0, 256, (3, 64, 64, 1), dtype=np.uint8)
    lite = LiteRtEngine(version_dir, concurrency=1)
    saved = SavedModelEngine(version_dir, warmup_batch_sizes=())
    assert lite.info == saved.info
    for heatmap in (True, False):
        assert_same(lite.infer(pixels, heatmap), saved.infer(pixels, heatmap))
    assert lite.infer(pixels, True).heatmaps.shape == (3, 4, 4)


def test_engine_reads_the_versions_info(engine: LiteRtEngine, reference: SavedModelEngine):
    assert engine.warmed_up
    assert engine.backend == "inprocess"
    assert engine.info == reference.info


@pytest.mark.parametrize("heatmap", [True, False])
def test_matches_tensorflow_on_the_test_images(engine, reference, xray_test_dir, heatmap):
    paths = sorted(p for p in xray_test_dir.rglob("*") if p.is_file())
    assert len(paths) == 27
    pixels = model_inputs(paths, engine.info.image_size)
    assert_same(engine.infer(pixels, heatmap), reference.infer(pixels, heatmap))


@pytest.mark.parametrize("heatmap", [True, False])
def test_matches_tensorflow_on_synthetic_inputs(engine, reference, synthetic_pixels, heatmap):
    """Runs without the data set: the parity check never skips entirely."""
    got = engine.infer(synthetic_pixels, heatmap)
    assert_same(got, reference.infer(synthetic_pixels, heatmap))
    assert got.probabilities.shape == (6, 3)
    if heatmap:
        assert got.heatmaps.shape == (6, 14, 14)
        assert got.heatmaps.dtype == np.float32


def test_probabilities_are_the_same_with_and_without_the_heatmap(engine, synthetic_pixels):
    with_map, without = engine.infer(synthetic_pixels, True), engine.infer(synthetic_pixels, False)
    assert without.heatmaps is None
    np.testing.assert_allclose(without.probabilities, with_map.probabilities, atol=TOLERANCE)


def test_a_batch_equals_its_images_one_by_one(engine, synthetic_pixels):
    batch = synthetic_pixels[:3]
    whole = engine.infer(batch, heatmap=True)
    singles = [engine.infer(batch[i : i + 1], heatmap=True) for i in range(3)]
    np.testing.assert_array_equal(
        whole.probabilities, np.concatenate([s.probabilities for s in singles])
    )
    np.testing.assert_array_equal(whole.heatmaps, np.concatenate([s.heatmaps for s in singles]))


def test_an_empty_batch_gives_empty_outputs_of_the_right_shape(engine, synthetic_pixels):
    out = engine.infer(synthetic_pixels[:0], heatmap=True)
    assert out.probabilities.shape == (0, 3)
    assert out.heatmaps.shape == (0, 14, 14)


def test_two_threads_get_what_one_thread_gets(engine, synthetic_pixels):
    """Each call borrows its own interpreter: 2 threads x 20 calls, no answer mixed up."""
    images = [synthetic_pixels[i % 6 : i % 6 + 1] for i in range(40)]
    serial = [engine.infer(image, heatmap=i % 2 == 0) for i, image in enumerate(images)]
    results: dict[int, EngineOutput] = {}
    errors: list[BaseException] = []

    def run(indices: range) -> None:
        try:
            for i in indices:
                results[i] = engine.infer(images[i], heatmap=i % 2 == 0)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(range(k, 40, 2),)) for k in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results) == list(range(40))
    for i, expected in enumerate(serial):
        np.testing.assert_array_equal(results[i].probabilities, expected.probabilities)
        if expected.heatmaps is None:
            assert results[i].heatmaps is None
        else:
            np.testing.assert_array_equal(results[i].heatmaps, expected.heatmaps)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((1, 224, 224, 1), np.float32),
        np.zeros((1, 224, 224), np.uint8),
        np.zeros((1, 200, 200, 1), np.uint8),
        np.zeros((224, 224, 1), np.uint8),
    ],
    ids=["float32", "no-channel-axis", "wrong-size", "no-batch-axis"],
)
def test_bad_input_is_refused_by_both_engines_with_one_message(engine, reference, bad):
    messages = []
    for candidate in (engine, reference):
        with pytest.raises(ValueError, match=r"expected uint8 \(N, 224, 224, 1\)") as raised:
            candidate.infer(bad, heatmap=True)
        messages.append(str(raised.value))
    assert messages[0] == messages[1]


def test_the_default_settings_serve_the_committed_model_with_litert(monkeypatch, committed_model):
    for name in ("INPROCESS_RUNTIME", "MAX_BATCH_SIZE", "TF_INTRA_OP_THREADS"):
        monkeypatch.delenv(f"AISTACK_{name}", raising=False)
    settings = Settings(model_dir=MODEL_DIR)
    assert settings.inprocess_runtime == "litert"
    built = build_engine(INPROCESS, settings, 1)
    assert isinstance(built, LiteRtEngine)
    assert built.concurrency == INPROCESS.concurrency == DEFAULT_CONCURRENCY["inprocess"]
    assert built.threads == settings.tf_intra_op_threads == 1
    wider = BackendSpec("inprocess", "inprocess", options={"concurrency": 3})
    tuned = build_engine(wider, Settings(model_dir=MODEL_DIR, tf_intra_op_threads=0), 1)
    assert (tuned.concurrency, tuned.threads) == (3, 0)
    chosen = Settings(model_dir=MODEL_DIR, inprocess_runtime="tensorflow")
    assert inprocess_runtime(chosen, VERSION_DIR) == "tensorflow"


def test_a_version_without_the_file_is_served_by_tensorflow_with_a_warning(
    copy_without_litert: Path, caplog, reference, synthetic_pixels
):
    settings = Settings(model_dir=copy_without_litert.parent, inprocess_runtime="litert")
    with caplog.at_level(logging.WARNING, logger="aistack.inference.backends"):
        built = build_engine(INPROCESS, settings, 1)
    assert isinstance(built, SavedModelEngine)
    (warning,) = [r for r in caplog.records if r.name == "aistack.inference.backends"]
    assert warning.levelno == logging.WARNING
    assert "has no LiteRT model" in warning.getMessage()
    assert f"aistack models litert --model-dir {copy_without_litert.parent}" in warning.getMessage()
    assert_same(built.infer(synthetic_pixels, True), reference.infer(synthetic_pixels, True))


def test_the_command_writes_the_file_and_never_changes_a_different_one_silently(
    copy_without_litert: Path, committed_model: bytes
):
    runner = CliRunner()
    command = ["models", "litert", "--model-dir", str(copy_without_litert.parent)]
    target = litert_model_path(copy_without_litert)

    written = runner.invoke(app, command)
    assert written.exit_code == 0, written.output
    assert target.read_bytes() == committed_model
    assert str(target) in written.stdout

    altered = bytearray(committed_model)
    altered[len(altered) // 2] ^= 0x01
    target.write_bytes(bytes(altered))
    refused = runner.invoke(app, command)
    assert refused.exit_code == 1
    assert "--force" in refused.stderr
    assert target.read_bytes() == bytes(altered)

    forced = runner.invoke(app, [*command, "--version", "1", "--force"])
    assert forced.exit_code == 0, forced.output
    assert target.read_bytes() == committed_model
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []


SERVE_WITHOUT_TENSORFLOW = """
import json, sys
from pathlib import Path
from aistack.config import Settings
from aistack.inference.backends import BackendSpec, build_engine
import numpy as np

settings = Settings(model_dir=Path(sys.argv[1]))
engine = build_engine(BackendSpec("inprocess", "inprocess"), settings, 1)
out = engine.infer(np.zeros((1, 224, 224, 1), np.uint8), heatmap=True)
print(json.dumps({
    "engine": type(engine).__name__,
    "heatmap": list(out.heatmaps.shape),
    "imported": sorted(m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules),
}))
"""


def test_serving_with_litert_never_imports_tensorflow(committed_model):
    """Built the way the server builds it, in a fresh interpreter with the default settings."""
    unset = ("AISTACK_INPROCESS_RUNTIME", "AISTACK_MAX_BATCH_SIZE")
    done = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_TENSORFLOW, str(MODEL_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in unset},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"engine": "LiteRtEngine", "heatmap": [1, 14, 14], "imported": []}
