"""`aistack bench` against the real server: every request answered, reports written."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from aistack.cli import app


def test_bench_cli_against_the_live_server(live_server, xray_test_dir, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("covid", "normal", "pneumonia_bac"):
        source = sorted((xray_test_dir / name).iterdir())[0]
        shutil.copy(source, images / source.name)
    report, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--url",
            live_server.url,
            "--images",
            str(images),
            "--clients",
            "2",
            "--endpoint",
            "v1-heatmap",
            "--json-out",
            str(report),
            "--plot",
            str(plot),
            "--api-key",
            live_server.create_key(f"bench-{tmp_path.name}", "predict"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(report.read_text())["summary"]
    assert summary["requests"] == 6 and summary["ok"] == 6 and summary["errors"] == 0
    assert summary["throughput_images_per_s"] > 0
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_bench_cli_rejects_an_unknown_endpoint(live_server, tmp_path):
    result = CliRunner().invoke(
        app, ["bench", "--url", live_server.url, "--images", str(tmp_path), "--endpoint", "v3"]
    )
    assert result.exit_code != 0
    assert "v1-heatmap" in result.output


def test_bench_without_a_key_reports_every_request_refused(live_server, xray_test_dir, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    source = sorted((xray_test_dir / "normal").iterdir())[0]
    shutil.copy(source, images / source.name)
    report = tmp_path / "bench.json"
    args = ["bench", "--url", live_server.url, "--images", str(images), "--clients", "1"]
    result = CliRunner().invoke(app, [*args, "--json-out", str(report)])
    assert result.exit_code == 0, result.output
    summary = json.loads(report.read_text())["summary"]
    assert summary["ok"] == 0 and summary["requests"] == 1
