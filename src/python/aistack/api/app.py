"""The standalone runtime's ASGI app: one process, the committed model in-process."""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from aistack import __version__
from aistack.api import v1, v2
from aistack.api.deps import get_runtime
from aistack.api.errors import install_error_handlers
from aistack.api.limits import BodySizeLimit
from aistack.config import Settings, get_settings
from aistack.runtime import Runtime

DESCRIPTION = """Chest X-ray classification (covid / normal / bacterial pneumonia) with Grad-CAM
heatmaps. A research demonstration, not a medical device: not for diagnosis."""


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or get_settings()
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime.start_loading()
        yield
        runtime.close()

    app = FastAPI(title="aistack", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.mount("/static", StaticFiles(directory=runtime.files.root), name="static")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the model is loaded and warmed up."""
        current = get_runtime(request)
        if not current.ready:
            status = "failed" if current.load_error else "loading"
            return JSONResponse({"status": status, "error": current.load_error}, status_code=503)
        info = current.service.engine.info
        return JSONResponse(
            {
                "status": "ready",
                "ready_after_s": current.ready_after_s,
                "model": {"name": info.name, "version": info.version},
            }
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        page = resources.files("aistack.api").joinpath("static/index.html").read_text()
        return HTMLResponse(page)

    return app
