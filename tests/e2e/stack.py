"""Where the running IRIS stack of the end-to-end tests is, and who calls it."""

from __future__ import annotations

import os

import httpx

IRIS_URL = os.environ.get("AISTACK_IRIS_URL", "").rstrip("/")
CREDENTIALS = (os.environ.get("AISTACK_IRIS_USER", ""), os.environ.get("AISTACK_IRIS_PASSWORD", ""))
"""An IRIS user with the AIStackPredict role, e.g. the installer's demonstration user."""
TIMEOUT = httpx.Timeout(120.0, connect=10.0)
"""Generous: the first prediction of a fresh stack loads the model in TF Serving."""
