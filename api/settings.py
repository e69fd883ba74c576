"""The server's limits, with their environment overrides: the only place the API reads the environment.

``RECSYS_API_SCORING_THREADS``  scoring requests run at once per worker (default 2)
``RECSYS_API_QUEUE``            scoring requests that may wait for a free slot, per worker
                                (default 64); more get 503 with Retry-After
``RECSYS_API_QUEUE_WAIT_S``     seconds a request may wait in that queue (default 5; then 503)
``RECSYS_API_BODY_TIMEOUT_S``   seconds a client may take to send its whole body (default 10; then 408)
``RECSYS_API_HEADER_TIMEOUT_S`` seconds a connection may take to send its headers (default 10;
                                then it is closed)
``RECSYS_API_KEYS``             comma-separated API keys; when set, /rank and /anomaly need
                                ``Authorization: Bearer <key>`` (unset: open)
``PROMETHEUS_MULTIPROC_DIR``    where the workers share their metrics (``python -m api`` sets it)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

KEYS_ENV = "RECSYS_API_KEYS"
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class Settings:
    """Limits of one API process."""

    scoring_threads: int = 2
    queue: int = 64
    queue_wait_s: float = 5.0
    body_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    api_keys: tuple[str, ...] = ()


def _positive(name: str, default: float) -> float:
    """A positive number from the environment, else ``default``."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def _keys() -> tuple[str, ...]:
    """The non-empty, stripped entries of RECSYS_API_KEYS."""
    return tuple(k.strip() for k in os.environ.get(KEYS_ENV, "").split(",") if k.strip())


def metrics_dir() -> str | None:
    """The Prometheus multiprocess directory, when the workers share their metrics."""
    return os.environ.get(METRICS_DIR_ENV) or None


def share_metrics_in(path: str) -> None:
    """Point this process and the workers it starts at ``path`` for their shared metrics."""
    os.environ[METRICS_DIR_ENV] = path


def from_env() -> Settings:
    """The defaults, overridden by the RECSYS_API_* variables that are set."""
    base = Settings()
    return Settings(
        scoring_threads=int(_positive("RECSYS_API_SCORING_THREADS", base.scoring_threads)),
        queue=int(_positive("RECSYS_API_QUEUE", base.queue)),
        queue_wait_s=_positive("RECSYS_API_QUEUE_WAIT_S", base.queue_wait_s),
        body_timeout_s=_positive("RECSYS_API_BODY_TIMEOUT_S", base.body_timeout_s),
        header_timeout_s=_positive("RECSYS_API_HEADER_TIMEOUT_S", base.header_timeout_s),
        api_keys=_keys(),
    )
