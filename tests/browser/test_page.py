"""The web page at `/`, driven by a headless Chromium against the real server."""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

CHROMIUM_PATHS = (Path("/usr/bin/chromium"), Path("/usr/bin/chromium-browser"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LABEL_WORDS = {"Covid-19", "Normal", "Bacterial pneumonia"}
CLASSES = ("covid", "normal", "pneumonia_bac")
RESULT_TIMEOUT_MS = 90_000
SCREENSHOT_COPY = os.environ.get("AISTACK_SCREENSHOT")  # keep a copy to look at, if set
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chromium_path() -> Path | None:
    return next((p for p in CHROMIUM_PATHS if p.is_file()), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium not installed: apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server) -> Iterator[sync_api.Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{live_server.url}/")
    yield page
    context.close()


def by_id(page, test_id: str):
    return page.get_by_test_id(test_id)


def upload_and_wait(page, image: Path) -> None:
    by_id(page, "file-input").set_input_files(str(image))
    by_id(page, "result").wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
    for test_id in ("original-image", "heatmap-image"):
        page.wait_for_function(
            "id => { const img = document.getElementById(id);"
            " return img.complete && img.naturalWidth > 0; }",
            arg=test_id,
            timeout=RESULT_TIMEOUT_MS,
        )


def percent(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", text)
    assert match, f"not a percentage: {text!r}"
    return float(match.group(1))


def test_page_basics(page) -> None:
    assert page.title() == "aistack — chest X-ray classifier"
    sync_api.expect(
        page.get_by_text("Research demonstration — not for diagnosis").first
    ).to_be_visible()
    assert page.locator("a[href='/docs']").count() >= 1
    file_input = by_id(page, "file-input")
    assert file_input.get_attribute("type") == "file"
    assert file_input.get_attribute("accept") == "image/jpeg,image/png"
    sync_api.expect(by_id(page, "drop-zone")).to_be_visible()
    sync_api.expect(by_id(page, "result")).to_be_hidden()


def test_upload_shows_prediction_and_heatmap(page, sample_images) -> None:
    upload_and_wait(page, sample_images["covid"])

    assert by_id(page, "label").inner_text().strip() in LABEL_WORDS
    probabilities = [percent(by_id(page, f"prob-{c}").inner_text()) for c in CLASSES]
    assert all(0 <= p <= 100 for p in probabilities)
    assert sum(probabilities) == pytest.approx(100, abs=0.5)

    for test_id in ("original-image", "heatmap-image"):
        width = by_id(page, test_id).evaluate("img => img.naturalWidth")
        assert width > 0, f"{test_id} did not load"

    heatmap = by_id(page, "heatmap-image")
    opacity = "img => getComputedStyle(img).opacity"
    assert float(heatmap.evaluate(opacity)) == pytest.approx(0.5)
    by_id(page, "opacity").fill("80")
    assert float(heatmap.evaluate(opacity)) == pytest.approx(0.8)
    sync_api.expect(page.locator("#opacity-value")).to_have_text("80%")


def test_server_error_is_shown(page, live_server, tmp_path) -> None:
    fake = tmp_path / "x.png"
    fake.write_text("this is plain text, not a PNG image\n")
    # What the API itself says about this file; the page must show that message.
    response = httpx.post(
        f"{live_server.url}/api/v2/xray/predictions",
        files={"file": ("x.png", fake.read_bytes(), "image/png")},
        data={"heatmap": "true"},
        timeout=60,
    )
    assert 400 <= response.status_code < 500
    message = response.json()["error"]["message"]
    assert message

    by_id(page, "file-input").set_input_files(str(fake))
    error = by_id(page, "error")
    sync_api.expect(error).to_contain_text(message, timeout=RESULT_TIMEOUT_MS)
    assert error.get_attribute("role") == "alert"
    sync_api.expect(by_id(page, "result")).to_be_hidden()


def test_client_rejects_other_file_types(page, tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    by_id(page, "file-input").set_input_files(str(text))
    sync_api.expect(by_id(page, "error")).to_contain_text("not a JPEG or PNG")
    sync_api.expect(by_id(page, "result")).to_be_hidden()


def test_drop_on_drop_zone_uploads(page, sample_images) -> None:
    image = sample_images["normal"]
    payload = base64.b64encode(image.read_bytes()).decode("ascii")
    page.evaluate(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: "image/jpeg"}));
            const zone = document.getElementById("drop-zone");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true,
                                                      cancelable: true}));
        }""",
        [payload, image.name],
    )
    by_id(page, "result").wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
    assert by_id(page, "label").inner_text().strip() in LABEL_WORDS


def test_screenshot_of_result(page, sample_images, tmp_path) -> None:
    upload_and_wait(page, sample_images["pneumonia_bac"])
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000
    if SCREENSHOT_COPY:
        shutil.copyfile(shot, SCREENSHOT_COPY)
