"""Dependencies of the routes: the loaded artifacts and the scoring threadpool, once per app."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, FastAPI, Request

from core.store.artifacts import Artifacts, load_artifacts

log = logging.getLogger(__name__)

T = TypeVar("T")

_load_lock = threading.Lock()


def load_once(app: FastAPI) -> Artifacts:
    """The app's artifacts, loaded from ``app.state.artifact_dir`` on the first call only."""
    arts = getattr(app.state, "artifacts", None)
    if arts is None:
        with _load_lock:
            arts = getattr(app.state, "artifacts", None)
            if arts is None:
                arts = load_artifacts(app.state.artifact_dir)
                app.state.artifacts = arts
                log.info("artifacts loaded from %s: %s", arts.path, arts.status)
    return arts


async def get_artifacts(request: Request) -> Artifacts:
    """The artifacts of the app serving ``request``."""
    # async: a sync dependency would wait for a worker thread, and /health must not.
    # Loads if no lifespan ran (an ASGI client that skips it, such as schemathesis's).
    return load_once(request.app)


class Scorer:
    """Runs scoring work on a bounded number of worker threads, off the event loop; a small
    request (a few ms of work) runs on the event loop itself.

    Handing a small request to a thread costs more than it saves: the thread switch, and the
    event loop and the scoring thread taking turns on the GIL. Bodies are complete before a
    request gets here (``RequestGuard``), so a slow client still holds nothing.
    """

    def __init__(self, threads: int) -> None:
        self.limiter = anyio.CapacityLimiter(threads)

    async def run(self, func: Callable[..., T], *args: Any, inline: bool = False) -> T:
        """``func(*args)`` on a scoring thread, or on the event loop itself when ``inline``."""
        if inline:
            return func(*args)
        return await anyio.to_thread.run_sync(func, *args, limiter=self.limiter)


async def get_scorer(request: Request) -> Scorer:
    """The app's scorer."""
    return request.app.state.scorer


ArtifactsDep = Annotated[Artifacts, Depends(get_artifacts)]
ScorerDep = Annotated[Scorer, Depends(get_scorer)]
