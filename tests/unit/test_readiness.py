"""Live at once, ready only when the model is: /healthz, /readyz and 503 while loading."""

from __future__ import annotations

import base64
import threading

from fastapi.testclient import TestClient

from aistack.api.app import create_app
from aistack.config import Settings
from aistack.runtime import Runtime


def test_not_ready_while_loading_then_failed_with_the_reason(tmp_path):
    release = threading.Event()

    def loader_that_fails(_settings, _version):
        """Stands in for loading a model that turns out broken, after a while."""
        release.wait(10)
        raise FileNotFoundError("no SavedModel versions under /nowhere")

    settings = Settings(var_dir=tmp_path, auth=False)  # readiness, not access, is tested
    runtime = Runtime(settings, engine_factory=loader_that_fails)
    with TestClient(create_app(settings, runtime)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        loading = client.get("/readyz")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        busy = client.post("/covid19/api/v1/predict/", data={"b64": base64.b64encode(b"x")})
        assert busy.status_code == 503
        assert busy.json()["error"]["code"] == "not_ready"

        release.set()
        runtime.wait_ready(10)
        failed = client.get("/readyz")
        assert failed.status_code == 503
        assert failed.json()["status"] == "failed"
        assert "no SavedModel versions" in failed.json()["error"]
        assert (
            "no SavedModel versions"
            in client.post("/api/v2/xray/predictions", json={"image_b64": "eA=="}).json()["error"][
                "message"
            ]
        )
