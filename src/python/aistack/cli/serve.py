"""`aistack serve`: the HTTP server, refusing unauthenticated access beyond loopback."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[str | None, typer.Option(help="interface to bind [AISTACK_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [AISTACK_PORT]")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=32, help="server processes sharing the port [AISTACK_WORKERS]"),
    ] = None,
) -> None:
    """Serve the model with the v1 (2020) and v2 APIs and the web page."""
    from aistack.api.server import run  # noqa: PLC0415
    from aistack.config import get_settings  # noqa: PLC0415

    settings = get_settings()
    given = (("host", host), ("port", port), ("workers", workers))
    overrides = {k: v for k, v in given if v is not None}
    settings = settings.model_copy(update=overrides)
    if not settings.auth and not _is_loopback(settings.host):
        raise typer.BadParameter(
            f"AISTACK_AUTH=off serves every prediction and stored X-ray to anyone who can "
            f"connect; it is allowed on a loopback address only, not {settings.host!r}",
            param_hint="--host",
        )
    from aistack.inference.backends import BackendSpecError, parse_backends  # noqa: PLC0415

    try:
        parse_backends(settings.backends)
    except BackendSpecError as error:
        raise typer.BadParameter(str(error), param_hint="AISTACK_BACKENDS") from error
    run(settings, log_level)


def _is_loopback(host: str) -> bool:
    import ipaddress  # noqa: PLC0415

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
