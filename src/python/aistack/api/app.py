"""The standalone runtime's ASGI app: one process, the committed model in-process."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from aistack import __version__
from aistack.api import fhir, files, icu, jobs, metrics, models, oip, v1, v2
from aistack.api.context import RequestContext
from aistack.api.deps import runtime_of
from aistack.api.errors import install_error_handlers
from aistack.api.limits import BodySizeLimit
from aistack.api.shedding import ShedWhenFull
from aistack.config import Settings, get_settings
from aistack.metrics import process_exiting
from aistack.runtime import Runtime

log = logging.getLogger(__name__)

DESCRIPTION = """Chest X-ray classification (covid / normal / bacterial pneumonia) with Grad-CAM
heatmaps. A research demonstration, not a medical device: not for diagnosis.

Authentication: send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`
(create one with `aistack keys create`). Every error has the body
`{"error": {"code", "message"}}`."""

UI_ASSETS = resources.files("aistack.api").joinpath("static")
AUTH_OFF_WARNING = (
    "AUTHENTICATION IS OFF: anyone who can reach this port can run predictions and read "
    "every stored X-ray. Keep it to 127.0.0.1 (AISTACK_AUTH=on for anything else)."
)


class ModelStatus(BaseModel):
    name: str
    version: int


class Readiness(BaseModel):
    status: str
    ready_after_s: float | None = None
    model: ModelStatus | None = None
    error: str | None = None


def page_security_policy(settings: Settings) -> str:
    """The web page runs only its own script; images may come from the public base URL."""
    images = f"'self' {settings.resolved_public_base_url} blob: data:"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def truthful_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The generated document, with security as configured (off, or v1 open)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = FastAPI.openapi(app)
    icu.add_row_schema(schema)
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if "security" not in operation:
                continue
            if not settings.auth:
                del operation["security"]
            elif settings.v1_open and path.startswith(v1.router.prefix):
                operation["security"].append({})
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or get_settings()
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not settings.auth:
            log.warning(AUTH_OFF_WARNING)
        runtime.start_loading()
        runtime.job_runner.start()  # unfinished jobs resume once the models are loaded
        if settings.workers > 1:
            # Workers sharing a port: one takes connections only once its model is loaded,
            # so no request or readiness probe reaches it while it loads (the others answer).
            await asyncio.to_thread(runtime.wait_ready)
        yield
        runtime.close()  # waits for running jobs
        process_exiting()

    app = FastAPIOffline(
        title="aistack",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url="/docs-assets",
        favicon_url="/favicon.ico",
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, settings=settings)
    fhir.mount(app)  # wraps the body limits and the error handlers above
    app.add_middleware(ShedWhenFull, runtime=runtime)
    app.add_middleware(RequestContext)
    app.add_middleware(metrics.HttpMetrics)
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.include_router(jobs.router)
    app.include_router(models.router)
    app.include_router(models.tf_serving)
    app.include_router(oip.router)
    app.include_router(files.router)
    app.include_router(icu.router)
    app.include_router(metrics.router)
    app.mount("/ui", StaticFiles(directory=str(UI_ASSETS)), name="ui")
    app.openapi = lambda: truthful_openapi(app, settings)

    @app.get("/healthz", tags=["health"], operation_id="healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (open)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        operation_id="readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "loading, or failed to load"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the model is loaded and warmed up (open)."""
        current = runtime_of(request)
        if not current.ready:
            status = "failed" if current.load_error else "loading"
            body = Readiness(status=status, error=current.load_error)
            return JSONResponse(body.model_dump(), status_code=503)
        info = current.service.engine.info
        body = Readiness(
            status="ready",
            ready_after_s=current.ready_after_s,
            model=ModelStatus(name=info.name, version=info.version),
        )
        return JSONResponse(body.model_dump())

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        page = UI_ASSETS.joinpath("index.html").read_text()
        page = page.replace("{{AUTH}}", "on" if settings.auth else "off")
        return HTMLResponse(
            page, headers={"Content-Security-Policy": page_security_policy(settings)}
        )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        icon = UI_ASSETS.joinpath("favicon.svg").read_bytes()
        return Response(icon, media_type="image/svg+xml")

    return app
