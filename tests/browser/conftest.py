"""The browser tests' fixtures: one headless Chromium per module, and the page as a new
visitor sees it (``bare_page``) or with a predict key entered (``page``); any Content Security
Policy report fails the test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.helpers import CHROMIUM_ARGS, chromium_path, enter_key


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium not installed: apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def predict_key(live_server, request) -> str:
    """A key of the predict role for this module (key names are unique on the one server)."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    return live_server.create_key(f"browser-{module}-{os.getpid()}", "predict")


@pytest.fixture
def bare_page(browser, live_server) -> Iterator[Any]:
    """The page as a new visitor sees it (no key yet); CSP violations are collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.csp_violations = []
    page.on(
        "console",
        lambda m: (
            page.csp_violations.append(m.text) if "Content Security Policy" in m.text else None
        ),
    )
    page.goto(f"{live_server.url}/")
    yield page
    assert page.csp_violations == []
    context.close()


@pytest.fixture
def page(bare_page, predict_key) -> Any:
    """The page with a predict key entered once."""
    enter_key(bare_page, predict_key)
    return bare_page
