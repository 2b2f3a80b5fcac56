"""What the browser tests share: where Chromium is, how it starts, and small page helpers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chromium_path() -> Path | None:
    return next((p for p in CHROMIUM_PATHS if p.is_file()), None)


def enter_key(page: Any, key: str) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415 - only where playwright is

    by_id(page, "key-input").fill(key)
    by_id(page, "key-save").click()
    expect(by_id(page, "key-status")).to_be_visible()


def by_id(page: Any, test_id: str) -> Any:
    return page.get_by_test_id(test_id)


def percent(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", text)
    assert match, f"not a percentage: {text!r}"
    return float(match.group(1))
