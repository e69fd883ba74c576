"""The server's limits, with their environment overrides: the only place the API reads the environment.

``RECSYS_API_SCORING_THREADS``  threads that score at once (default 2, one per core here)
``RECSYS_API_MAX_PENDING``      scoring requests admitted at once, running or waiting (default 8);
                                more get 503 with Retry-After
``RECSYS_API_BODY_TIMEOUT_S``   seconds a client may take to send its body (default 10; then 408)
``RECSYS_API_HEADER_TIMEOUT_S`` seconds a connection may take to send its headers (default 10;
                                then it is closed)
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """Limits of one API process."""

    scoring_threads: int = 2
    max_pending: int = 8
    body_timeout_s: float = 10.0
    header_timeout_s: float = 10.0


def _positive(name: str, default: float) -> float:
    """A positive number from the environment, else ``default``."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def from_env() -> Settings:
    """The defaults, overridden by the RECSYS_API_* variables that are set."""
    base = Settings()
    return Settings(
        scoring_threads=int(_positive("RECSYS_API_SCORING_THREADS", base.scoring_threads)),
        max_pending=int(_positive("RECSYS_API_MAX_PENDING", base.max_pending)),
        body_timeout_s=_positive("RECSYS_API_BODY_TIMEOUT_S", base.body_timeout_s),
        header_timeout_s=_positive("RECSYS_API_HEADER_TIMEOUT_S", base.header_timeout_s),
    )
