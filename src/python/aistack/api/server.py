"""Run the standalone app under uvicorn with the settings' network protections."""

from __future__ import annotations

import uvicorn

from aistack.config import Settings


def run(settings: Settings, log_level: str = "info") -> None:
    """Serve ``create_app(settings)`` on ``settings.host``:``settings.port`` until stopped."""
    from aistack.api.app import create_app  # noqa: PLC0415 - imports the whole app

    trusted = [a.strip() for a in settings.trusted_proxies.split(",") if a.strip()]
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        timeout_graceful_shutdown=10,
    )
