"""The FastAPI application: the artifacts, the routes and the middleware put together."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi_offline import FastAPIOffline

import core
from api import metrics, middleware, settings
from api.deps import Scorer, load_once
from api.routes import router

# The docs' favicon, shipped with fastapi-offline beside the Swagger UI and ReDoc assets.
FAVICON = Path(fastapi_offline.__file__).resolve().parent / "static" / "favicon.png"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the artifacts before the first request (once per worker process)."""
    metrics.record_models(load_once(app))  # once: later lifespans (e.g. a test client per request) reuse them
    # The loaded models and tables are a few hundred thousand objects that live as long as the
    # worker: a full garbage collection would walk them all in the middle of some request (a
    # pause of hundreds of milliseconds under load). Frozen, the collector skips them.
    gc.collect()
    gc.freeze()
    yield
    metrics.worker_exit()


def _document_keys(app: FastAPI) -> None:
    """Show the Bearer key of the scoring routes (and their 401) in the OpenAPI schema and /docs."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        """The generated schema plus the key scheme, built once."""
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
                "type": "http",
                "scheme": "bearer",
                "description": f"Needed only when the server sets {settings.KEYS_ENV}.",
            }
            for path in sorted(middleware.SCORING_PATHS):
                for operation in schema["paths"].get(path, {}).values():
                    operation["security"] = [{"apiKey": []}, {}]  # the key, or none on an open server
                    operation["responses"]["401"] = {"description": "Missing or unknown API key (keys are set)."}
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(artifact_dir: str | Path | None = None, limits: settings.Settings | None = None) -> FastAPI:
    """Build the API over ``artifact_dir``, passed to ``load_artifacts`` as is.

    None means the loader's default: $RECSYS_ARTIFACT_DIR, else recsys_artifacts/. ``limits``
    defaults to ``settings.from_env()``.
    """
    limits = limits or settings.from_env()
    # /docs and /redoc with their scripts, styles and favicon served from the package: no CDN.
    app = FastAPIOffline(
        title="Recommendation analytics API",
        version=core.__version__,
        description="Next-category ranking (task 1) and user anomaly scores (task 2).",
        lifespan=lifespan,
        # No "/rank/" -> "/rank" redirects: Starlette builds them from the Host header.
        redirect_slashes=False,
    )
    app.state.artifact_dir = artifact_dir
    app.state.artifacts = None
    app.state.scorer = Scorer(limits.scoring_threads)
    middleware.install(app, limits)
    app.include_router(router)
    app.include_router(metrics.router)
    _document_keys(app)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        """The docs' favicon, for browsers that ask for it at the root."""
        return FileResponse(FAVICON, media_type="image/png")

    return app
