"""Dependencies of the routes: the loaded artifacts, once per app."""

from __future__ import annotations

import logging
import threading
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from core.artifacts import Artifacts, load_artifacts

log = logging.getLogger(__name__)

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


def get_artifacts(request: Request) -> Artifacts:
    """The artifacts of the app serving ``request``."""
    # Loads if no lifespan ran (an ASGI client that skips it, such as schemathesis's).
    return load_once(request.app)


ArtifactsDep = Annotated[Artifacts, Depends(get_artifacts)]
