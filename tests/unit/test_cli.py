"""The command line: `predict` output for pipes, version choice, `models`, `--version`.

Version resolution runs on fake version folders (an empty ``saved_model.pb`` is enough for
it); `predict` runs the committed model.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

import aistack
from aistack.cli import app, tf_notice
from aistack.cli import train as cli_train
from aistack.config import get_settings
from aistack.inference import versions
from aistack.inference.versions import (
    LABELS_FILE,
    VersionNotChosen,
    available_versions,
    choose_version,
    next_version,
    read_labels,
    resolve_version_dir,
    set_label,
)
from aistack.xray.labels import CLASSES
from aistack.xray.service import is_covid_positive, is_low_confidence
from aistack.xray.train import FoldResult
from tests.conftest import MODEL_DIR, ROOT

ONEDNN_NOTICE = "oneDNN custom operations are on"


def fake_versions(base: Path, *numbers: int, info: dict | None = None) -> Path:
    """Version folders that count as SavedModels for resolution (not loadable)."""
    for number in numbers:
        (base / str(number)).mkdir(parents=True)
        (base / str(number) / "saved_model.pb").write_bytes(b"")
        if info is not None:
            info_path = base / str(number) / versions.MODEL_INFO_FILE
            info_path.parent.mkdir()
            info_path.write_text(json.dumps({"version": number, **info}))
    return base


def flat(output: str) -> str:
    """CLI output without the error box's borders and line breaks."""
    return " ".join(output.replace("│", " ").split())


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch):
    """Settings read afresh from an environment without AISTACK_MODEL_* variables."""
    monkeypatch.delenv("AISTACK_MODEL_DIR", raising=False)
    monkeypatch.delenv("AISTACK_MODEL_VERSION", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


# --------------------------------------------------------------------------- resolution


def test_a_lone_version_is_served_without_labels(tmp_path: Path):
    fake_versions(tmp_path, 4)
    assert choose_version(tmp_path).version == 4
    assert choose_version(tmp_path).reason == "only version"


def test_several_versions_and_no_choice_is_an_error_that_says_how_to_choose(tmp_path: Path):
    fake_versions(tmp_path, 1, 2)
    with pytest.raises(VersionNotChosen) as caught:
        resolve_version_dir(tmp_path)
    message = str(caught.value)
    assert "versions 1, 2" in message
    assert "aistack models label stable N" in message
    assert "AISTACK_MODEL_VERSION" in message


def test_the_stable_label_wins_over_the_highest_version(tmp_path: Path):
    fake_versions(tmp_path, 1, 2, 3)
    (tmp_path / LABELS_FILE).write_text('{"stable": 2, "canary": 3}')
    assert resolve_version_dir(tmp_path) == tmp_path / "2"
    assert choose_version(tmp_path).reason == "label stable"
    assert resolve_version_dir(tmp_path, 3) == tmp_path / "3", "an explicit version wins"


def test_a_label_or_request_for_a_missing_version_is_refused(tmp_path: Path):
    fake_versions(tmp_path, 1)
    (tmp_path / LABELS_FILE).write_text('{"stable": 2}')
    with pytest.raises(FileNotFoundError, match="labels version 2 stable"):
        resolve_version_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="version 5 not in"):
        resolve_version_dir(tmp_path, 5)


@pytest.mark.parametrize("content", ["{not json", '["stable", 1]', '{"stable": "1"}'])
def test_a_malformed_label_file_is_refused(tmp_path: Path, content: str):
    fake_versions(tmp_path, 1, 2)
    (tmp_path / LABELS_FILE).write_text(content)
    with pytest.raises(ValueError, match=LABELS_FILE):
        read_labels(tmp_path)


def test_unfinished_folders_do_not_count_but_are_never_reused(tmp_path: Path):
    fake_versions(tmp_path, 1)
    (tmp_path / "3").mkdir()  # a folder without saved_model.pb, e.g. an interrupted export
    assert available_versions(tmp_path) == [1]
    assert next_version(tmp_path) == 4
    assert next_version(tmp_path / "missing") == 1


def test_set_label_checks_the_version_and_keeps_other_labels(tmp_path: Path):
    fake_versions(tmp_path, 1, 2)
    set_label(tmp_path, "canary", 2)
    set_label(tmp_path, "stable", 1)
    assert json.loads((tmp_path / LABELS_FILE).read_text()) == {"canary": 2, "stable": 1}
    with pytest.raises(FileNotFoundError):
        set_label(tmp_path, "stable", 9)
    with pytest.raises(ValueError):
        set_label(tmp_path, "Not A Label", 1)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_committed_model_folder_labels_version_1_stable_and_cards_each_version():
    assert read_labels(MODEL_DIR) == {"stable": 1}
    assert resolve_version_dir(MODEL_DIR) == MODEL_DIR / "1"
    assert not (MODEL_DIR / "MODEL_CARD.md").exists()
    card = MODEL_DIR / "1" / "MODEL_CARD.md"
    for link in re.findall(r"\]\(([^)#]+)\)", card.read_text()):
        if "://" not in link:
            assert (card.parent / link).exists(), f"broken link {link} in {card}"


# --------------------------------------------------------------------------- models


def test_models_list_shows_versions_and_what_is_served(tmp_path: Path, clean_settings):
    info = {"training": {"trained_at": "2026-01-02T03:04:05+00:00", "out_of_fold_accuracy": 0.9}}
    fake_versions(tmp_path, 1, 2, info=info)
    set_label(tmp_path, "stable", 1)
    result = CliRunner().invoke(app, ["models", "list", "--model-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "yes" in rows["1"] and "stable" in rows["1"]
    assert "yes" not in rows["2"]
    assert "2026-01-02 03:04" in rows["2"] and "0.900" in rows["2"]
    assert "served: version 1 (label stable)" in result.stdout


def test_models_list_follows_aistack_model_version_for_the_served_folder(
    tmp_path: Path, clean_settings
):
    fake_versions(tmp_path, 1, 2)
    clean_settings.setenv("AISTACK_MODEL_DIR", str(tmp_path))
    clean_settings.setenv("AISTACK_MODEL_VERSION", "2")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["models", "list", "--model-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "served: version 2 (AISTACK_MODEL_VERSION)" in result.stdout


def test_models_list_says_how_to_choose_when_nothing_is(tmp_path: Path, clean_settings):
    fake_versions(tmp_path, 1, 2)
    result = CliRunner().invoke(app, ["models", "list", "--model-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "nothing is served" in result.stdout
    assert "aistack models label stable N" in result.stdout


def test_models_label_chooses_the_served_version(tmp_path: Path, clean_settings):
    fake_versions(tmp_path, 1, 2)
    runner = CliRunner()
    result = runner.invoke(app, ["models", "label", "stable", "2", "--model-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "served: version 2 (label stable)" in result.stdout
    assert read_labels(tmp_path) == {"stable": 2}
    missing = runner.invoke(app, ["models", "label", "stable", "7", "--model-dir", str(tmp_path)])
    assert missing.exit_code != 0
    assert "version 7 not in" in flat(missing.output)
    assert read_labels(tmp_path) == {"stable": 2}


def test_train_refuses_an_existing_version_before_training(tmp_path: Path, xray_train_dir: Path):
    fake_versions(tmp_path, 1)
    result = CliRunner().invoke(
        app,
        [
            *("train", "xray", "--data", str(xray_train_dir), "--out", str(tmp_path)),
            *("--model-version", "1", "--epochs", "1"),
        ],
    )
    assert result.exit_code != 0
    assert "exists and versions are never overwritten" in flat(result.output)
    assert "write version 2" in flat(result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]


def test_version_flag_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == aistack.__version__


# --------------------------------------------------------------------------- train progress


def fold_result(fold: int) -> FoldResult:
    return FoldResult(fold, 3, 0.75, 0.5, train_images=8, val_images=4)


def test_training_progress_is_plain_stderr_lines_off_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(cli_train, "err_console", Console(stderr=True, force_terminal=False))
    with cli_train._training_progress(epochs=2, folds=2) as (report, fold_done):
        report(0, 1, {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.25})
        fold_done(fold_result(0))
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert re.fullmatch(
        r"fold 1/2 epoch 1/2 loss=1\.000 accuracy=0\.500 val_loss=1\.100 "
        r"val_accuracy=0\.250 \(\d+ s\)",
        lines[1],
    )
    assert lines[2] == "fold 1/2 done: best epoch 3, validation accuracy 0.750 on 4 images"


def test_training_progress_is_a_bar_on_a_terminal(capsys, monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(cli_train, "err_console", Console(file=screen, force_terminal=True))
    with cli_train._training_progress(epochs=2, folds=2) as (report, fold_done):
        report(0, 1, {"loss": 1.0})
        fold_done(fold_result(0))
    assert capsys.readouterr().err == ""
    assert "training" in screen.getvalue()


# --------------------------------------------------------------------------- predict


@pytest.fixture
def bad_image(tmp_path: Path) -> Path:
    path = tmp_path / "bad.png"
    path.write_bytes(b"not an image at all")
    return path


def ndjson(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_predict_several_images_one_json_line_each_errors_inline_exit_2(
    tmp_path: Path, sample_images: dict[str, Path], bad_image: Path, clean_settings
):
    images = [
        sample_images["covid"],
        bad_image,
        sample_images["normal"],
        tmp_path / "missing.jpg",
        sample_images["pneumonia_bac"],
    ]
    heatmaps = tmp_path / "heatmaps"
    result = CliRunner().invoke(app, ["predict", *map(str, images), "--heatmap", str(heatmaps)])
    assert result.exit_code == 2, result.output
    lines = ndjson(result.stdout)
    assert [line["image"] for line in lines] == [str(p) for p in images]

    assert lines[1]["error"]["code"] == "not_an_image"
    assert lines[3]["error"] == {"code": "not_found", "message": "no such file"}
    assert set(lines[1]) == {"image", "error"}
    assert f"{bad_image}: " in result.stderr
    assert "missing.jpg: no such file" in result.stderr
    assert "2 of 5 images failed" in result.stderr

    settings = get_settings()
    for index in (0, 2, 4):
        line, image = lines[index], images[index]
        assert set(line["probabilities"]) == set(CLASSES)
        assert line["label"] == max(line["probabilities"], key=line["probabilities"].get)
        probabilities = np.array([line["probabilities"][c] for c in CLASSES])
        assert line["covid_positive"] == is_covid_positive(probabilities, settings.covid_threshold)
        assert line["threshold"] == settings.covid_threshold
        assert line["low_confidence"] == is_low_confidence(
            probabilities, settings.low_confidence_margin
        )
        assert line["model"] == {"name": "covid19", "version": 1}
        overlay = heatmaps / f"{image.stem}.heatmap.jpg"
        assert line["heatmap"] == str(overlay)
        assert overlay.read_bytes().startswith(b"\xff\xd8"), "a JPEG"
        assert cv2.imread(str(overlay)) is not None
    assert lines[0]["label"] == "covid" and lines[0]["covid_positive"] is True
    assert sorted(p.name for p in heatmaps.iterdir()) == sorted(
        f"{p.stem}.heatmap.jpg" for p in (images[0], images[2], images[4])
    )


def test_predict_one_image_writes_only_json_to_stdout(
    sample_images: dict[str, Path], clean_settings
):
    result = CliRunner().invoke(app, ["predict", str(sample_images["covid"])])
    assert result.exit_code == 0, result.output
    (line,) = ndjson(result.stdout)
    assert line["label"] == "covid"
    assert "heatmap" not in line
    assert "{" not in result.stderr


@pytest.mark.parametrize(
    ("heatmap", "message"),
    [("out.png", "must be a folder"), ("", "would both write")],
)
def test_predict_checks_heatmap_targets_before_loading_the_model(
    tmp_path: Path, sample_images: dict[str, Path], heatmap: str, message: str
):
    first = sample_images["covid"]
    twin = tmp_path / "twin" / first.name
    twin.parent.mkdir()
    twin.write_bytes(first.read_bytes())
    others = [sample_images["normal"]] if heatmap else [twin]
    target = tmp_path / (heatmap or "maps")
    result = CliRunner().invoke(
        app, ["predict", str(first), *map(str, others), "--heatmap", str(target)]
    )
    assert result.exit_code == 2
    assert message in flat(result.output)
    assert result.stdout == ""


def test_predict_refuses_an_unchosen_version(
    tmp_path: Path, sample_images: dict[str, Path], clean_settings
):
    fake_versions(tmp_path, 1, 2)
    result = CliRunner().invoke(
        app, ["predict", str(sample_images["covid"]), "--model-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "none is chosen" in flat(result.output)
    assert result.stdout == ""


def test_predict_in_a_real_process_pipes_json_and_prints_tensorflow_notices_once(
    sample_images: dict[str, Path], bad_image: Path
):
    """What a shell pipe sees: stdout is NDJSON only; TF's start-up notice is not doubled."""
    images = [str(sample_images["normal"]), str(bad_image)]
    done = subprocess.run(
        [sys.executable, "-m", "aistack.cli", "predict", *images],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = ndjson(done.stdout)
    assert [line["image"] for line in lines] == images
    assert "error" in lines[1]
    assert done.stderr.count(ONEDNN_NOTICE) <= 1, done.stderr
    assert done.stderr.count("absl::InitializeLog") <= 1, done.stderr


@pytest.mark.slow
def test_serve_prints_tensorflow_notices_once(live_server):
    log = live_server.log()
    assert log.count(ONEDNN_NOTICE) <= 1, log
    assert log.count("absl::InitializeLog") <= 1, log


def test_the_deferred_tensorflow_profiler_library_still_loads_when_used():
    import tensorflow as tf  # noqa: PLC0415, F401 - after aistack.cli, as the commands do
    from tensorflow.python.profiler import profiler_client  # noqa: PLC0415

    assert callable(profiler_client._pywrap_profiler_plugin.trace)
    assert not isinstance(sys.modules[tf_notice.TF_PROFILER_PLUGIN], tf_notice._LoadOnFirstUse)


def test_serve_refuses_auth_off_on_a_public_address(monkeypatch):
    from typer.testing import CliRunner  # noqa: PLC0415

    from aistack.cli import app  # noqa: PLC0415
    from aistack.config import get_settings  # noqa: PLC0415

    monkeypatch.setenv("AISTACK_AUTH", "off")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code != 0
    assert "loopback" in result.output
