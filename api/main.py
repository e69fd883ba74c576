"""The FastAPI application: the artifacts, the routes and the middleware put together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

import core
from api import middleware, settings
from api.deps import Scorer, load_once
from api.routes import router


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the artifacts before the first request."""
    load_once(app)  # once: later lifespans (e.g. a test client per request) reuse them
    yield


def create_app(artifact_dir: str | Path | None = None, limits: settings.Settings | None = None) -> FastAPI:
    """Build the API over ``artifact_dir``, passed to ``load_artifacts`` as is.

    None means the loader's default: $RECSYS_ARTIFACT_DIR, else recsys_artifacts/. ``limits``
    defaults to ``settings.from_env()``.
    """
    limits = limits or settings.from_env()
    app = FastAPI(
        title="Recommendation analytics API",
        version=core.__version__,
        description="Next-category ranking (task 1) and user anomaly scores (task 2).",
        lifespan=lifespan,
    )
    app.state.artifact_dir = artifact_dir
    app.state.artifacts = None
    app.state.scorer = Scorer(limits.scoring_threads)
    middleware.install(
        app, body_timeout=limits.body_timeout_s, max_pending=max(limits.max_pending, limits.scoring_threads)
    )
    app.include_router(router)
    return app
