"""The end-to-end tests' clients of a running IRIS stack; without one, every test skips."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.stack import CREDENTIALS, IRIS_URL, TIMEOUT


@pytest.fixture(scope="module")
def stack() -> Iterator[httpx.Client]:
    """A client of the stack without credentials (the 2020 clients sent none)."""
    if not IRIS_URL:
        pytest.skip(
            "AISTACK_IRIS_URL is not set: these tests need a running IRIS stack "
            "(docker compose up), e.g. AISTACK_IRIS_URL=http://localhost:8088"
        )
    with httpx.Client(base_url=IRIS_URL, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
def caller(stack: httpx.Client) -> Iterator[httpx.Client]:
    """A client that authenticates as an IRIS user with the AIStackPredict role."""
    if not all(CREDENTIALS):
        pytest.skip(
            "AISTACK_IRIS_USER and AISTACK_IRIS_PASSWORD are not set: name an IRIS user "
            "with the AIStackPredict role (e.g. the installer's demo user)"
        )
    with httpx.Client(base_url=IRIS_URL, auth=CREDENTIALS, timeout=TIMEOUT) as client:
        yield client
