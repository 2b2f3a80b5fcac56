"""docs/API.md says what the service does: its error table and its shell examples."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import cv2

from aistack.errors import all_error_classes

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"
TABLE_ROW = re.compile(r"^\| (\d{3}) \| `([a-z0-9_]+)` \|", re.MULTILINE)


def shell_examples() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", API_DOC.read_text(), re.DOTALL)


def test_the_error_table_lists_exactly_the_codes_the_service_uses():
    documented = {(int(s), c) for s, c in TABLE_ROW.findall(API_DOC.read_text())}
    raised = {(error.status, error.code) for error in all_error_classes()}
    assert documented == raised


def run_example(example: str, server, folder: Path) -> dict:
    """Run a documented shell example against ``server`` in ``folder``; its JSON answer."""
    run = subprocess.run(
        ["bash", "-c", example.replace("http://127.0.0.1:8088", server.url)],
        cwd=folder,
        env={"AISTACK_API_KEY": server.api_key, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_json_curl_example_works_for_an_image_of_any_size(live_server, sample_images, tmp_path):
    """The piped example must not hit the 128 KiB limit of one command-line argument."""
    big = tmp_path / "xray.jpeg"
    picture = cv2.imread(str(sample_images["covid"]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(big), cv2.resize(picture, (2400, 2400)), [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert big.stat().st_size > 300_000
    example = next(e for e in shell_examples() if "base64 -w0" in e)
    body = run_example(example, live_server, tmp_path)
    assert body["label"] in {"covid", "normal", "pneumonia_bac"} and body["overlay_url"]


def test_the_multipart_curl_example_works(live_server, sample_images, tmp_path):
    (tmp_path / "xray.jpeg").write_bytes(sample_images["normal"].read_bytes())
    example = next(e for e in shell_examples() if "-F file=@xray.jpeg" in e)
    assert run_example(example, live_server, tmp_path)["heatmap_url"] is None
