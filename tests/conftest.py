"""Shared fixtures: the built artifact folder, the dashboard's artifact settings, skip-or-fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core import artifacts as A

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
