"""The web page at `/`, driven by a headless Chromium against the real server."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from tests.browser.helpers import PNG_MAGIC, by_id, enter_key, percent  # noqa: E402

LABEL_WORDS = {"Covid-19", "Normal", "Bacterial pneumonia"}
CLASSES = ("covid", "normal", "pneumonia_bac")
RESULT_TIMEOUT_MS = 90_000
SCREENSHOT_COPY = os.environ.get("AISTACK_SCREENSHOT")  # keep a copy to look at, if set


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
    assert by_id(page, "backend").inner_text().strip() == "inprocess"  # the inference backend

    for test_id in ("original-image", "heatmap-image"):
        width = by_id(page, test_id).evaluate("img => img.naturalWidth")
        assert width > 0, f"{test_id} did not load"

    heatmap = by_id(page, "heatmap-image")
    opacity = "img => getComputedStyle(img).opacity"
    assert float(heatmap.evaluate(opacity)) == pytest.approx(0.5)
    by_id(page, "opacity").fill("80")
    assert float(heatmap.evaluate(opacity)) == pytest.approx(0.8)
    sync_api.expect(page.locator("#opacity-value")).to_have_text("80%")


def test_server_error_is_shown(page, api, tmp_path) -> None:
    fake = tmp_path / "x.png"
    fake.write_text("this is plain text, not a PNG image\n")
    # What the API itself says about this file; the page must show that message.
    response = api.post(
        "/api/v2/xray/predictions",
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


def test_key_is_asked_for_once_and_kept_for_the_tab_only(
    bare_page, browser, live_server, predict_key, sample_images
):
    sync_api.expect(by_id(bare_page, "key-panel")).to_be_visible()
    sync_api.expect(by_id(bare_page, "auth-off")).to_be_hidden()
    by_id(bare_page, "file-input").set_input_files(str(sample_images["normal"]))
    sync_api.expect(by_id(bare_page, "error")).to_contain_text("API key")

    enter_key(bare_page, predict_key)
    bare_page.reload()
    sync_api.expect(by_id(bare_page, "key-status")).to_be_visible()  # kept across reloads
    upload_and_wait(bare_page, sample_images["normal"])
    stored = bare_page.evaluate("() => sessionStorage.getItem('aistack.apiKey')")
    assert stored == predict_key
    assert bare_page.evaluate("() => localStorage.length") == 0  # never persisted

    other = browser.new_context().new_page()
    other.goto(f"{live_server.url}/")
    sync_api.expect(by_id(other, "key-form")).to_be_visible()  # another tab: asked again
    other.context.close()


def test_a_refused_key_is_forgotten_and_asked_again(bare_page, sample_images):
    enter_key(bare_page, "ask_" + "0" * 12 + "_" + "A" * 43)
    by_id(bare_page, "file-input").set_input_files(str(sample_images["normal"]))
    sync_api.expect(by_id(bare_page, "error")).to_contain_text("refused", timeout=RESULT_TIMEOUT_MS)
    sync_api.expect(by_id(bare_page, "key-form")).to_be_visible()


def test_a_rejected_upload_clears_the_previous_result(page, sample_images, tmp_path):
    upload_and_wait(page, sample_images["covid"])
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    by_id(page, "file-input").set_input_files(str(text))
    sync_api.expect(by_id(page, "result")).to_be_hidden()
    assert by_id(page, "original-image").get_attribute("src") is None


def test_result_shows_legend_and_a_consistent_covid_badge(page, sample_images):
    upload_and_wait(page, sample_images["covid"])
    sync_api.expect(by_id(page, "legend")).to_be_visible()
    label = by_id(page, "label").inner_text().strip()
    badge = by_id(page, "covid-flag").inner_text().strip()
    if label != "Covid-19":
        assert badge == "Covid-19 negative"
    else:
        assert badge in {"Covid-19 positive", "Covid-19 not confirmed (below threshold)"}


def test_page_has_a_content_security_policy_and_favicon(live_server):
    response = httpx.get(f"{live_server.url}/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert (
        httpx.get(f"{live_server.url}/favicon.ico").headers["content-type"].startswith("image/svg")
    )


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """What `make run` starts: auth off, loopback only."""
    from aistack.bench.local_server import start_local_server  # noqa: PLC0415

    server = start_local_server(tmp_path_factory.mktemp("demo"), env={"AISTACK_AUTH": "off"})
    yield server
    server.stop()


def test_auth_off_is_said_loudly_on_the_page_and_in_the_log(browser, demo_server, sample_images):
    page = browser.new_context().new_page()
    page.goto(f"{demo_server.url}/")
    sync_api.expect(by_id(page, "auth-off")).to_be_visible()
    sync_api.expect(by_id(page, "auth-off")).to_contain_text("Authentication is OFF")
    sync_api.expect(by_id(page, "key-panel")).to_be_hidden()
    upload_and_wait(page, sample_images["normal"])  # no key needed
    page.context.close()
    assert "AUTHENTICATION IS OFF" in demo_server.log()


def test_a_near_tie_shows_the_low_confidence_cue(page, api, xray_test_dir):
    """The first test image the service calls low-confidence gets the cue on the page."""
    for path in sorted((xray_test_dir / "normal").iterdir()):
        answer = api.post(
            "/api/v2/xray/predictions",
            files={"file": (path.name, path.read_bytes(), "image/jpeg")},
            data={"heatmap": "false"},
        ).json()
        if answer["low_confidence"]:
            break
    else:
        pytest.fail("no test image is low-confidence for the committed model")
    sync_api.expect(by_id(page, "low-confidence")).to_be_hidden()
    upload_and_wait(page, path)
    sync_api.expect(by_id(page, "low-confidence")).to_be_visible()
    sync_api.expect(by_id(page, "low-confidence")).to_contain_text("Low confidence")
