"""The web page's ICU-admission panel, driven by a headless Chromium against the real server.

What the panel shows is compared with what the API itself answers for the same input, so the
page can neither invent nor lose a figure.
"""

from __future__ import annotations

import csv
import io
import os
import shutil

import httpx
import pytest

from tests.browser.helpers import PNG_MAGIC, by_id, enter_key, percent

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

pytestmark = pytest.mark.browser

ICU = "/icu/api/v1"
ANSWER_TIMEOUT_MS = 60_000
SCREENSHOT_COPY = os.environ.get("AISTACK_ICU_SCREENSHOT")  # keep a copy to look at, if set
CSV_HEADERS = {"Content-Type": "text/csv"}


@pytest.fixture(scope="module")
def icu_model(api) -> dict:
    response = api.get(f"{ICU}/model")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def icu_page(page):
    """The page with a predict key, once the panel has built its form from the model."""
    sync_api.expect(by_id(page, "icu-form")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    return page


def form_row(model: dict) -> dict[str, float]:
    """Values for every form field but the last, which stays empty (a missing value)."""
    fields = [f["name"] for f in model["form_fields"]]
    values = [0.35, -0.4, 0.1, -0.75, 0.6, -0.2, 0.05, 0.5]
    row = {name: values[i % len(values)] for i, name in enumerate(fields[:-1])}
    if "AGE_PERCENTIL" in row:
        row["AGE_PERCENTIL"] = 80
    return row


def fill(page, row: dict) -> None:
    for name, value in row.items():
        by_id(page, f"icu-input-{name}").fill(str(value))


def csv_text(header: list[str], rows: list[list[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def three_rows(model: dict) -> str:
    """Three patients by form-field columns, with an identifier and a missing cell."""
    names = [f["name"] for f in model["form_fields"]][:4]
    rows = [
        [101, 0.35, -0.4, 0.1, -0.75],
        [102, -0.2, "", 0.6, 0.3],
        [103, 0.8, 0.5, -0.9, 0.05],
    ]
    return csv_text(["PATIENT_VISIT_IDENTIFIER", *names], rows)


def upload_csv(page, tmp_path, text: str, name: str = "patients.csv") -> None:
    path = tmp_path / name
    path.write_text(text)
    by_id(page, "icu-csv-input").set_input_files(str(path))


def share(locator, of) -> float:
    """A drawn element's width as a share of its container's inner width."""
    return locator.evaluate("e => e.getBoundingClientRect().width") / of.evaluate(
        "e => e.clientWidth"
    )


def test_the_form_has_the_fields_the_model_reports(icu_page, icu_model) -> None:
    fields = icu_model["form_fields"]
    assert fields
    names = icu_page.locator("#icu-fields input").evaluate_all("boxes => boxes.map(b => b.name)")
    assert names == [f["name"] for f in fields]  # most informative first, as reported
    for field in fields:
        box = icu_page.get_by_label(field["label"], exact=True)  # the label is tied to it
        assert box.get_attribute("name") == field["name"]
        assert box.get_attribute("type") == "number"
        assert box.get_attribute("step") == "any"
        hint = icu_page.locator(f"#{box.get_attribute('aria-describedby')}")
        assert hint.inner_text() == field["name"]  # the workbook's column name
    panel = by_id(icu_page, "icu-panel")
    sync_api.expect(by_id(icu_page, "icu-disclaimer")).to_contain_text(
        "Research demonstration — not for diagnosis"
    )
    info = by_id(icu_page, "icu-model-info")
    sync_api.expect(info).to_contain_text(f"{icu_model['backend']} model v{icu_model['version']}")
    sync_api.expect(info).to_contain_text(f"{100 * icu_model['threshold']:.1f}%")
    sync_api.expect(panel.get_by_text("column names", exact=False).first).to_be_visible()
    sync_api.expect(by_id(icu_page, "icu-result")).to_be_hidden()


def test_predict_shows_what_the_api_answers(icu_page, icu_model, api) -> None:
    row = form_row(icu_model)
    expected = api.post(f"{ICU}/predict", json=row)
    assert expected.status_code == 200, expected.text
    answer = expected.json()

    fill(icu_page, row)
    by_id(icu_page, "icu-predict").click()
    result = by_id(icu_page, "icu-result")
    result.wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)

    shown = by_id(icu_page, "icu-probability")
    assert float(shown.get_attribute("data-probability")) == answer["probability"]
    assert percent(shown.inner_text()) == pytest.approx(100 * answer["probability"], abs=0.05)
    assert by_id(icu_page, "icu-label").inner_text() == answer["prediction"]
    threshold = f"{100 * answer['threshold']:.1f}%"
    sync_api.expect(by_id(icu_page, "icu-threshold")).to_contain_text(threshold)
    model = by_id(icu_page, "icu-model").inner_text()
    assert f"{answer['model']['backend']} v{answer['model']['version']}" in model

    # The gauge is drawn to scale through the CSSOM, which the page's CSP allows.
    gauge = by_id(icu_page, "icu-gauge")
    assert share(icu_page.locator("#icu-gauge-fill"), gauge) == pytest.approx(
        answer["probability"], abs=0.01
    )
    mark_left = by_id(icu_page, "icu-gauge-mark").evaluate(
        "m => m.getBoundingClientRect().left - m.parentElement.getBoundingClientRect().left"
    )
    width = gauge.evaluate("g => g.getBoundingClientRect().width")
    assert mark_left / width == pytest.approx(answer["threshold"], abs=0.01)
    assert float(gauge.get_attribute("aria-valuenow")) == pytest.approx(
        100 * answer["probability"], abs=0.05
    )

    items = by_id(icu_page, "icu-contribs").locator("li")
    top = answer["top_features"]
    assert top, "the API gave no contributing features"
    assert items.evaluate_all("li => li.map(i => i.dataset.feature)") == [c["feature"] for c in top]
    for item, contribution in zip(items.all(), top, strict=True):
        text = item.inner_text()
        if contribution["contribution"] > 0:  # said in words and sign, not colour alone
            assert "+" in text and "towards admission" in text
        else:
            assert "\u2212" in text and "against admission" in text
    bars = items.locator(".bar")
    assert bars.count() == len(top)
    assert share(bars.first, bars.first.locator("xpath=..")) > 0.99  # the largest: a full half
    assert icu_page.csp_violations == []


def test_keyboard_alone_gets_an_announced_prediction(icu_page, icu_model) -> None:
    first = icu_model["form_fields"][0]
    icu_page.get_by_label(first["label"], exact=True).focus()
    icu_page.keyboard.type("0.5" if first["name"] != "AGE_PERCENTIL" else "70")
    icu_page.keyboard.press("Tab")
    focused = icu_page.evaluate("() => document.activeElement.name")
    assert focused == icu_model["form_fields"][1]["name"]  # fields in reading order
    icu_page.keyboard.press("Enter")  # submits the form from any field
    by_id(icu_page, "icu-result").wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    live = by_id(icu_page, "icu-label").locator("xpath=..")
    assert live.get_attribute("aria-live") == "polite"
    assert by_id(icu_page, "icu-label").inner_text().startswith("ICU admission")


def test_an_empty_form_is_explained_without_asking_the_server(icu_page) -> None:
    asked = []
    icu_page.on("request", lambda r: asked.append(r.url) if "/predict" in r.url else None)
    by_id(icu_page, "icu-predict").click()
    sync_api.expect(by_id(icu_page, "icu-error")).to_contain_text("at least one value")
    assert asked == []
    sync_api.expect(by_id(icu_page, "icu-result")).to_be_hidden()


def test_a_csv_of_three_rows_shows_three_results(icu_page, icu_model, api, tmp_path) -> None:
    text = three_rows(icu_model)
    expected = api.post(f"{ICU}/predict/batch", content=text.encode(), headers=CSV_HEADERS)
    assert expected.status_code == 200, expected.text
    answers = expected.json()["predictions"]
    assert len(answers) == 3

    upload_csv(icu_page, tmp_path, text)
    by_id(icu_page, "icu-batch-result").wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    rows = by_id(icu_page, "icu-batch-rows").locator("tr")
    sync_api.expect(rows).to_have_count(3)
    for row, answer in zip(rows.all(), answers, strict=True):
        cells = row.locator("th, td")
        assert cells.nth(0).inner_text() == str(answer["row"])
        assert float(cells.nth(1).get_attribute("data-probability")) == answer["probability"]
        assert percent(cells.nth(1).inner_text()) == pytest.approx(
            100 * answer["probability"], abs=0.05
        )
        word = "Admission predicted" if answer["label"] == 1 else "Not predicted"
        assert cells.nth(2).inner_text() == word
        top = answer["top_features"][0]
        direction = "towards admission" if top["contribution"] > 0 else "against admission"
        assert direction in cells.nth(3).inner_text()
    sync_api.expect(by_id(icu_page, "icu-batch-summary")).to_contain_text("3 rows")

    with icu_page.expect_download() as download:
        by_id(icu_page, "icu-batch-download").click()
    saved = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [float(r["probability"]) for r in saved] == [a["probability"] for a in answers]
    assert icu_page.csp_violations == []


def test_an_unknown_csv_column_shows_the_422_message(icu_page, api, tmp_path) -> None:
    text = csv_text(["AGE_PERCENTIL", "NOT_A_WORKBOOK_COLUMN"], [[70, 1]])
    response = api.post(f"{ICU}/predict/batch", content=text.encode(), headers=CSV_HEADERS)
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "NOT_A_WORKBOOK_COLUMN" in message

    upload_csv(icu_page, tmp_path, text)
    error = by_id(icu_page, "icu-batch-error")
    sync_api.expect(error).to_contain_text(message, timeout=ANSWER_TIMEOUT_MS)
    assert error.get_attribute("role") == "alert"
    sync_api.expect(by_id(icu_page, "icu-batch-result")).to_be_hidden()


def test_too_many_rows_show_the_413_message(icu_page, api, tmp_path) -> None:
    limit = 10_000  # the default icu_max_batch_rows, which the test server keeps
    text = csv_text(["AGE_PERCENTIL"], [[50]] * (limit + 1))
    response = api.post(f"{ICU}/predict/batch", content=text.encode(), headers=CSV_HEADERS)
    assert response.status_code == 413
    message = response.json()["error"]["message"]
    assert str(limit) in message

    upload_csv(icu_page, tmp_path, text, "big.csv")
    sync_api.expect(by_id(icu_page, "icu-batch-error")).to_contain_text(
        message, timeout=ANSWER_TIMEOUT_MS
    )


def test_a_key_without_predict_permission_sees_the_403_message(
    bare_page, live_server, icu_model
) -> None:
    read_key = live_server.create_key(f"browser-read-{os.getpid()}", "read")
    row = form_row(icu_model)
    response = httpx.post(
        f"{live_server.url}{ICU}/predict",
        json=row,
        headers={"Authorization": f"Bearer {read_key}"},
        timeout=30,
    )
    assert response.status_code == 403
    message = response.json()["error"]["message"]

    enter_key(bare_page, read_key)  # may read the model, may not ask for predictions
    sync_api.expect(by_id(bare_page, "icu-form")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    fill(bare_page, row)
    by_id(bare_page, "icu-predict").click()
    sync_api.expect(by_id(bare_page, "icu-error")).to_contain_text(
        message, timeout=ANSWER_TIMEOUT_MS
    )
    sync_api.expect(by_id(bare_page, "key-status")).to_be_visible()  # refused an action, kept


def test_without_a_key_the_panel_asks_for_one_then_builds_its_form(bare_page, predict_key):
    sync_api.expect(by_id(bare_page, "icu-model-info")).to_contain_text("API key")
    sync_api.expect(by_id(bare_page, "icu-form")).to_be_hidden()
    enter_key(bare_page, predict_key)
    sync_api.expect(by_id(bare_page, "icu-form")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)


def test_screenshot_of_the_panel_with_a_result(icu_page, icu_model, tmp_path) -> None:
    fill(icu_page, form_row(icu_model))
    by_id(icu_page, "icu-predict").click()
    by_id(icu_page, "icu-result").wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    upload_csv(icu_page, tmp_path, three_rows(icu_model))
    by_id(icu_page, "icu-batch-result").wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    icu_page.wait_for_timeout(600)  # the gauge's width transition
    shot = tmp_path / "icu-panel.png"
    by_id(icu_page, "icu-panel").screenshot(path=str(shot))
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000
    if SCREENSHOT_COPY:
        shutil.copyfile(shot, SCREENSHOT_COPY)
