"""`aistack icu train | validate | predict` run end to end on a small time budget."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aistack.cli import app
from aistack.icu.dataset import LABEL, prepare, read_workbook
from aistack.icu.defaults import WORKBOOK_NAME
from aistack.icu.local import read_record
from tests.conftest import DATA_DIR

WORKBOOK = DATA_DIR / "icu" / WORKBOOK_NAME
runner = CliRunner()


def flat(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


@pytest.fixture(scope="module")
def workbook() -> Path:
    if not WORKBOOK.is_file():
        pytest.skip(f"the ICU workbook is not at {WORKBOOK}")
    return WORKBOOK


@pytest.fixture(scope="module")
def trained(workbook, tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("icu-models")
    done = runner.invoke(
        app,
        ["icu", "train", "--data", str(workbook), "--time-budget", "2", "--out", str(models)],
    )
    assert done.exit_code == 0, done.output
    assert "ROC-AUC" in done.output and "F-Measure" in done.output
    return models


@pytest.fixture(scope="module")
def rows_csv(workbook, tmp_path_factory) -> Path:
    first = prepare(read_workbook(workbook)).first_window().drop(columns=[LABEL]).head(3)
    path = tmp_path_factory.mktemp("icu-rows") / "rows.csv"
    first.to_csv(path, index=False)
    return path


def test_train_writes_a_version_with_model_record_and_card(trained):
    version = trained / "1"
    assert {p.name for p in version.iterdir()} == {
        "model.json",
        "MODEL_CARD.md",
        "model.lgb.txt",
    } or {p.name for p in version.iterdir()} == {"model.json", "MODEL_CARD.md", "model.xgb.json"}
    record = read_record(version)
    assert record["training"]["config"]["time_budget_s"] == 2
    command = record["training"]["command"]  # the default workbook goes without saying
    assert command.startswith("aistack icu train --time-budget 2 --fill forward --seed 2020")
    assert command.endswith(f"--out {trained}")
    assert "Not yet validated" in (version / "MODEL_CARD.md").read_text()


def test_predict_prints_probability_label_and_top_features(trained, rows_csv):
    done = runner.invoke(app, ["icu", "predict", str(rows_csv), "--model-dir", str(trained)])
    assert done.exit_code == 0, done.output
    assert "probability" in done.output and "log-odds" in done.output
    as_json = runner.invoke(
        app, ["icu", "predict", str(rows_csv), "--model-dir", str(trained), "--json", "--top", "2"]
    )
    answers = [json.loads(line) for line in as_json.stdout.splitlines()]
    patients = [row["PATIENT_VISIT_IDENTIFIER"] for row in csv.DictReader(rows_csv.open())]
    assert [a["row"] for a in answers] == patients
    assert all(0 < a["probability"] < 1 and a["label"] in (0, 1) for a in answers)
    assert all(len(a["top_features"]) == 2 for a in answers)


def test_predict_names_unknown_columns(trained, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("PCR_MEDIAN,LACTAT_MAX\n0.1,0.2\n")
    done = runner.invoke(app, ["icu", "predict", str(path), "--model-dir", str(trained)])
    assert done.exit_code == 2
    assert "unknown column 'LACTAT_MAX' (did you mean 'LACTATE_MAX'?)" in flat(done.output)


def test_validate_cross_validates_plots_and_records(trained, workbook, tmp_path):
    plot, figures = tmp_path / "calibration.png", tmp_path / "validation.json"
    args = ["icu", "validate", "--data", str(workbook), "--folds", "2", "--time-budget", "1"]
    args += ["--plot", str(plot), "--json-out", str(figures)]
    args += ["--record", "--model-dir", str(trained), "--model-version", "1"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "mean ± sd" in done.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(figures.read_text())
    assert len(summary["folds"]) == 2 and summary["patients"] == 353
    record = read_record(trained / "1")
    assert record["metrics"] == record["validation"]["metrics_mean"]
    assert "Cross-validated performance" in (trained / "1" / "MODEL_CARD.md").read_text()


def test_validate_refuses_to_record_figures_of_other_data(trained, workbook, tmp_path):
    args = ["icu", "validate", "--data", str(workbook), "--fill", "forward-backward"]
    args += ["--record", "--model-dir", str(trained), "--json-out", str(tmp_path / "v.json")]
    done = runner.invoke(app, args)
    assert done.exit_code == 2 and "trained on other data" in flat(done.output)


def test_integratedml_needs_a_dsn(workbook):
    done = runner.invoke(
        app,
        ["icu", "train", "--backend", "integratedml", "--data", str(workbook)],
        env={"AISTACK_IRIS_DSN": ""},
    )
    assert done.exit_code == 2 and "AISTACK_IRIS_DSN" in flat(done.output)


def test_a_missing_workbook_is_a_usage_error(tmp_path):
    done = runner.invoke(app, ["icu", "train", "--data", str(tmp_path / "none.xlsx")])
    assert done.exit_code == 2 and "not at" in flat(done.output)
