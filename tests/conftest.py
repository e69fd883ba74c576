"""Shared fixtures: the built artifact folder, the dashboard's artifact settings, example bodies,
and the skip-or-fail rule (a missing prerequisite skips locally and fails under CI=true)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from api.schemas import EXAMPLES_DIR
from core.store import artifacts as A

IN_CI = os.environ.get("CI") == "true"


def skip_or_fail(reason: str) -> None:
    """Skip a test whose prerequisite is missing; under CI=true the same gap fails it."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def built_artifact_dir() -> Path:
    """A verified artifact directory: $RECSYS_ARTIFACT_DIR if set, else the committed one."""
    path = A.default_dir()
    if not A.load_artifacts(path).manifest_ok:
        skip_or_fail(f"no verified artifacts in {path}; run `python -m core build`")
    return path


@pytest.fixture(scope="session")
def built_artifacts(built_artifact_dir: Path) -> Path:
    """The artifact directory the API serves by default (same checks as built_artifact_dir)."""
    return built_artifact_dir


@pytest.fixture
def dashboard_built(monkeypatch, built_artifact_dir) -> Path:
    """Point the dashboard at the built artifacts."""
    monkeypatch.setenv(A.ARTIFACT_DIR_ENV, str(built_artifact_dir))
    return built_artifact_dir


@pytest.fixture
def dashboard_empty(monkeypatch, tmp_path) -> Path:
    """Point the dashboard at an empty artifact directory (nothing built)."""
    monkeypatch.setenv(A.ARTIFACT_DIR_ENV, str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def example() -> Callable[[str], dict[str, Any]]:
    """Load a committed example body by file name (a fresh copy each call)."""

    def load(name: str) -> dict[str, Any]:
        """The body in examples/<name>."""
        return json.loads((EXAMPLES_DIR / name).read_text())

    return load
