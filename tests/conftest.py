"""Fixtures shared by the API tests: the built artifacts and the committed example bodies."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from api.schemas import EXAMPLES_DIR
from core.artifacts import MANIFEST, default_dir


@pytest.fixture(scope="session")
def built_artifacts() -> Path:
    """The artifact directory the API serves by default; skipped if unbuilt, failed under CI."""
    directory = default_dir()
    if not (directory / MANIFEST).exists():
        reason = f"no built artifacts in {directory}: run `python -m core build`"
        if os.environ.get("CI") == "true":  # CI must run these, so a missing build is an error
            pytest.fail(reason)
        pytest.skip(reason)
    return directory


@pytest.fixture(scope="session")
def example() -> Callable[[str], dict[str, Any]]:
    """Load a committed example body by file name (a fresh copy each call)."""

    def load(name: str) -> dict[str, Any]:
        """The body in examples/<name>."""
        return json.loads((EXAMPLES_DIR / name).read_text())

    return load
