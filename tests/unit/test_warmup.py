"""TF Serving warm-up records: read back as TF Serving reads them and replayed on the model.

TF Serving parses each TFRecord as a ``PredictionLog`` and runs its ``PredictRequest``
against the signature it names; a record that fails makes it refuse the version. The same
is done here with the real SavedModel, for the committed version and for a fresh export.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2
from typer.testing import CliRunner

from aistack.cli import app
from aistack.xray.export import export_saved_model
from aistack.xray.labels import CLASSES
from aistack.xray.model import build_classifier
from aistack.xray.warmup import (
    WARMUP_BATCH_SIZES,
    WARMUP_FILE,
    WARMUP_SIGNATURES,
    write_warmup_requests,
)
from tests.conftest import MODEL_DIR

COMMITTED = MODEL_DIR / "1"
SIZE = 64


def read_records(version_dir: Path) -> list[prediction_log_pb2.PredictionLog]:
    path = version_dir / WARMUP_FILE
    assert path.is_file(), f"no warm-up requests at {path}: run `aistack models warmup`"
    records = []
    for raw in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(raw.numpy())
        records.append(log)
    return records


def replay(version_dir: Path, records: list) -> list[tuple[str, int, dict]]:
    """Each request through its signature, checked against the signature def first."""
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    signature_defs = saved_model.meta_graphs[0].signature_def
    loaded = tf.saved_model.load(str(version_dir))
    results = []
    for log in records:
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == version_dir.parent.name
        signature = request.model_spec.signature_name
        inputs = signature_defs[signature].inputs
        assert set(request.inputs) == set(inputs)
        for key, tensor in request.inputs.items():
            assert tensor.dtype == inputs[key].dtype
        feed = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        batch = len(next(iter(feed.values())))
        results.append((signature, batch, loaded.signatures[signature](**feed)))
    return results


def check_outputs(results: list[tuple[str, int, dict]], cam_side: int) -> None:
    assert sorted((s, b) for s, b, _ in results) == sorted(
        (s, b) for s in WARMUP_SIGNATURES for b in WARMUP_BATCH_SIZES
    )
    for signature, batch, outputs in results:
        assert outputs["probabilities"].shape == (batch, len(CLASSES)), signature
        if signature == "gradcam":
            assert outputs["heatmap"].shape == (batch, cam_side, cam_side)
        else:
            assert set(outputs) == {"probabilities"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras.utils.set_random_seed(7)
    model = build_classifier(image_size=SIZE, width=4)
    return export_saved_model(model, tmp_path_factory.mktemp("warmup") / "m", version=1)


def test_committed_version_has_replayable_warmup_requests():
    path = COMMITTED / WARMUP_FILE
    assert 0 < path.stat().st_size < 1_000_000
    records = read_records(COMMITTED)
    assert len(records) <= 1000  # TF Serving's limit
    check_outputs(replay(COMMITTED, records), cam_side=14)


def test_every_export_has_replayable_warmup_requests(exported: Path):
    check_outputs(replay(exported, read_records(exported)), cam_side=SIZE // 16)


def test_warmup_command_writes_the_file_and_nothing_else(exported: Path):
    def digests() -> dict[str, str]:
        return {
            str(p.relative_to(exported)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(exported.rglob("*"))
            if p.is_file()
        }

    (exported / WARMUP_FILE).unlink()
    before = digests()
    result = CliRunner().invoke(app, ["models", "warmup", "1", "--model-dir", str(exported.parent)])
    assert result.exit_code == 0, result.output
    assert f"{len(WARMUP_SIGNATURES) * len(WARMUP_BATCH_SIZES)} warm-up requests" in result.stdout
    after = digests()
    assert after.pop(WARMUP_FILE)
    assert after == before

    missing = CliRunner().invoke(
        app, ["models", "warmup", "2", "--model-dir", str(exported.parent)]
    )
    assert missing.exit_code != 0
    assert not (exported.parent / "2").exists()


def save_module(version_dir: Path, spec: tf.TensorSpec) -> Path:
    """A SavedModel whose only signature, serving_default, takes ``spec``."""
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": tf.identity(x)}, input_signature=[spec])
    tf.saved_model.save(module, str(version_dir), signatures={"serving_default": module.f})
    return version_dir


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (tf.TensorSpec([None], tf.float32, name="image_bytes"), "does not take image_bytes"),
        (tf.TensorSpec([None], tf.string, name="images"), "does not take image_bytes"),
        (tf.TensorSpec([None], tf.string, name="image_bytes"), "no signature 'gradcam'"),
    ],
)
def test_a_model_without_the_signatures_gets_no_warmup_file(
    tmp_path: Path, spec: tf.TensorSpec, error: str
):
    version_dir = save_module(tmp_path / "m" / "1", spec)
    with pytest.raises(ValueError, match=error):
        write_warmup_requests(version_dir, image_size=SIZE)
    assert not (version_dir / WARMUP_FILE).exists()
