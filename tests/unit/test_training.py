"""Training smoke test through the CLI (train → evaluate → predict), and the fold split.

The CLI run trains on the real training folder, limited to 4 images per class at 64 px for
one epoch with 2 folds, so it checks the wiring, not the accuracy: a new version beside the
served one, its card, its recorded evaluation, and serving only once it is labelled.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps
from sklearn.model_selection import StratifiedKFold
from typer.testing import CliRunner

from aistack.cli import app
from aistack.xray.dataset import LabelledImages
from aistack.xray.labels import CLASSES
from aistack.xray.train import TrainingConfig, fold_indices, limit_per_class
from tests.conftest import MODEL_DIR

OVERLAY_MAX_SIDE = 768


def expected_overlay_size(path: Path) -> tuple[int, int]:
    """(height, width) of the image, upright, scaled to fit within 768 px (never enlarged)."""
    with Image.open(path) as image:
        width, height = ImageOps.exif_transpose(image).size
    longer = max(width, height)
    if longer <= OVERLAY_MAX_SIDE:
        return height, width
    scale = OVERLAY_MAX_SIDE / longer
    return max(1, round(height * scale)), max(1, round(width * scale))


def flat(output: str) -> str:
    """CLI output without the error box's borders and line breaks."""
    return " ".join(output.replace("│", " ").split())


# --------------------------------------------------------------------------- CLI


def invoke(runner: CliRunner, *args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_train_evaluate_predict_through_the_cli(
    tmp_path: Path, xray_train_dir: Path, xray_test_dir: Path, sample_images: dict[str, Path]
):
    """Training adds version 2 beside a served version 1, which stays served until labelled."""
    runner = CliRunner()
    models = tmp_path / "models"
    shutil.copytree(MODEL_DIR / "1", models / "1")  # served: the only version, no label file
    served_before = (models / "1" / "saved_model.pb").read_bytes()
    train_args = ["train", "xray", "--data", xray_train_dir, "--out", models, "--epochs", 1]
    train_args += ["--folds", 2, "--limit-per-class", 4, "--image-size", 64]

    trained = invoke(runner, *train_args)
    assert trained.exit_code == 0, trained.output
    # Off a terminal, progress is plain stderr lines: every epoch, every finished fold.
    assert "fold 1/2 epoch 1/1 loss=" in trained.stderr
    assert "fold 2/2 done: best epoch 1" in trained.stderr
    assert "served: version 1 (label stable)" in trained.stdout
    assert json.loads((models / "version_labels.json").read_text()) == {"stable": 1}
    assert (models / "1" / "saved_model.pb").read_bytes() == served_before
    version_dir = models / "2"
    assert (version_dir / "saved_model.pb").is_file()
    info = json.loads((version_dir / "assets.extra" / "model_info.json").read_text())
    assert info["classes"] == list(CLASSES)
    assert info["image_size"] == 64
    assert info["version"] == 2
    assert info["members"] == 2
    training = info["training"]
    assert training["config"]["epochs"] == 1
    assert training["config"]["limit_per_class"] == 4
    assert training["images"] == 4 * len(CLASSES)
    assert len(training["folds"]) == 2
    assert all(fold["val_images"] > 0 for fold in training["folds"])
    assert sum(fold["val_images"] for fold in training["folds"]) == training["images"]
    assert 0.0 <= training["out_of_fold_accuracy"] <= 1.0
    assert np.sum(training["out_of_fold_confusion"]) == training["images"]
    assert training["trained_at"].endswith("+00:00")
    assert training["command"].startswith("aistack train xray --data ")
    card = (version_dir / "MODEL_CARD.md").read_text()
    assert "version 2" in card.splitlines()[0]
    assert training["command"] in card
    assert f"Out-of-fold accuracy {training['out_of_fold_accuracy']:.3f}" in card
    assert "Not yet evaluated" in card
    assert "--model-version 2 --record" in card

    again = invoke(runner, *train_args, "--model-version", 2)
    assert again.exit_code != 0
    assert "exists and versions are never overwritten" in flat(again.output)
    assert (version_dir / "MODEL_CARD.md").read_text() == card

    eval_json = tmp_path / "eval.json"
    evaluated = invoke(
        runner,
        *("evaluate", "xray", "--data", xray_test_dir, "--model-dir", models),
        *("--model-version", 2, "--json-out", eval_json, "--record"),
    )
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads(eval_json.read_text())
    test_images = sum(
        1
        for c in CLASSES
        for p in (xray_test_dir / c).iterdir()
        if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    assert test_images == 27
    assert result["images"] == test_images
    assert 0.0 <= result["accuracy"] <= 1.0
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (3, 3)
    assert matrix.sum() == test_images
    assert np.trace(matrix) == result["correct"]
    assert result["accuracy"] == pytest.approx(result["correct"] / test_images)
    assert set(result["per_class"]) == set(CLASSES)
    for name, row in result["per_class"].items():
        for key in ("precision", "recall", "f1-score"):
            assert 0.0 <= row[key] <= 1.0, (name, key)
        assert row["support"] == matrix[CLASSES.index(name)].sum()
    assert result["roc_auc_ovr"] is not None
    assert 0.0 <= result["roc_auc_ovr"] <= 1.0
    assert result["model"] == {"name": "models", "version": 2}
    recorded = (version_dir / "MODEL_CARD.md").read_text()
    assert "Not yet evaluated" not in recorded
    assert f"**{result['correct']}/27 correct (accuracy {result['accuracy']:.3f})**" in recorded
    assert recorded.count("## Test") == 1
    assert recorded.startswith(card[: card.index("<!-- aistack:evaluation:start -->")])

    image = sample_images["covid"]
    served = invoke(runner, "predict", image, "--model-dir", models)
    assert served.exit_code == 0, served.output
    assert json.loads(served.stdout)["model"]["version"] == 1, "not served until labelled"

    labelled = invoke(runner, "models", "label", "stable", 2, "--model-dir", models)
    assert labelled.exit_code == 0, labelled.output
    overlay = tmp_path / "h.png"
    predicted = invoke(runner, "predict", image, "--model-dir", models, "--heatmap", overlay)
    assert predicted.exit_code == 0, predicted.output
    line = json.loads(predicted.stdout)
    assert line["model"] == {"name": "models", "version": 2}
    assert line["heatmap"] == str(overlay)
    written = cv2.imread(str(overlay), cv2.IMREAD_UNCHANGED)
    assert written is not None, "the heatmap file is not a decodable image"
    assert overlay.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert written.shape[:2] == expected_overlay_size(image)
    assert written.shape[:2] != Image.open(image).size[::-1], "the sample should be downscaled"
    assert written.ndim == 3 and written.shape[2] == 3


def test_train_rejects_a_missing_data_folder(tmp_path: Path):
    result = CliRunner().invoke(
        app,
        [
            "train",
            "xray",
            "--data",
            "/nonexistent",
            "--out",
            str(tmp_path / "models"),
        ],
    )
    assert result.exit_code != 0
    assert "/nonexistent is not a folder" in flat(result.output)
    assert not (tmp_path / "models").exists()


# --------------------------------------------------------------------------- folds


def labelled(per_class: tuple[int, ...]) -> LabelledImages:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)]).astype(np.int64)
    # Each image's pixels hold its own index, so images can be told apart.
    pixels = np.broadcast_to(
        np.arange(len(labels), dtype=np.uint8)[:, None, None, None], (len(labels), 4, 4, 1)
    ).copy()
    return LabelledImages(pixels, labels, tuple(Path(f"{i}.png") for i in range(len(labels))))


def test_folds_are_stratified_and_cover_every_image_once():
    images = labelled((20, 30, 25))
    config = TrainingConfig(folds=5, seed=2020)
    folds = fold_indices(images.labels, config)
    assert len(folds) == 5
    validated = np.concatenate([val for _, val in folds])
    np.testing.assert_array_equal(np.sort(validated), np.arange(len(images.labels)))
    for train, val in folds:
        assert len(np.intersect1d(train, val)) == 0
        assert len(train) + len(val) == len(images.labels)
        counts = np.bincount(images.labels[val], minlength=len(CLASSES))
        # Every class in every validation fold, in proportion (20/5, 30/5, 25/5).
        np.testing.assert_array_equal(counts, [4, 6, 5])


def test_folds_are_deterministic_per_seed_and_shuffled():
    labels = labelled((20, 30, 25)).labels
    first = fold_indices(labels, TrainingConfig(folds=4, seed=7))
    again = fold_indices(labels, TrainingConfig(folds=4, seed=7))
    other = fold_indices(labels, TrainingConfig(folds=4, seed=8))
    for (t1, v1), (t2, v2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(t1, t2)
        np.testing.assert_array_equal(v1, v2)
    assert any(not np.array_equal(v1, v2) for (_, v1), (_, v2) in zip(first, other, strict=True))
    # Shuffled: not the folds of consecutive images an unshuffled split would give.
    unshuffled = StratifiedKFold(n_splits=4).split(np.zeros(len(labels)), labels)
    assert any(
        not np.array_equal(v1, v2) for (_, v1), (_, v2) in zip(first, unshuffled, strict=True)
    )


def test_folds_need_every_class_in_every_fold():
    labels = labelled((4, 4, 4)).labels
    assert len(fold_indices(labels, TrainingConfig(folds=4))) == 4
    with pytest.raises(ValueError, match="smallest class"):
        fold_indices(labels, TrainingConfig(folds=5))
    with pytest.raises(ValueError):
        fold_indices(labels, TrainingConfig(folds=1))


def test_limit_per_class_keeps_the_first_images_of_each_class():
    images = labelled((6, 3, 5))
    limited = limit_per_class(images, 4)
    np.testing.assert_array_equal(limited.labels, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(limited.pixels[:, 0, 0, 0], [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12])
    assert limited.paths[4] == Path("6.png")
    assert limit_per_class(images, None) is images


def test_train_explains_too_many_folds_for_the_limit(tmp_path: Path, xray_train_dir: Path):
    """5 folds (the default) cannot be stratified over 4 images per class: a clear error."""
    result = CliRunner().invoke(
        app,
        [
            "train",
            "xray",
            "--data",
            str(xray_train_dir),
            "--out",
            str(tmp_path / "models"),
            "--epochs",
            "1",
            "--limit-per-class",
            "4",
            "--image-size",
            "64",
        ],
    )
    assert result.exit_code != 0
    assert "smallest class size (4), got 5" in flat(result.output)
    assert not (tmp_path / "models" / "1").exists()
