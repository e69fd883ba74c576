"""The build's artifacts for the pages, verified (core.store.artifacts, the API's loader) and cached
per build: a rebuild changes the manifest's mtime, which refreshes every cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core.base import schema
from core.ranking.cases import view_sequences
from core.store import artifacts as A


def _manifest_stamp(path: Path) -> float:
    """mtime of the manifest (0 when absent): a rebuild changes it, which refreshes the caches."""
    manifest = path / A.MANIFEST
    return manifest.stat().st_mtime if manifest.exists() else 0.0


def _build() -> tuple[str, float]:
    """The cache key of the current build: artifact directory and manifest mtime."""
    path = A.default_dir()  # $RECSYS_ARTIFACT_DIR, read by core.store.artifacts only
    return str(path), _manifest_stamp(path)


@st.cache_resource(max_entries=4, show_spinner="Verifying and loading the artifacts…")
def _load(path: str, stamp: float) -> A.Artifacts:
    """load_artifacts (manifest sha256 check before unpickling), once per build."""
    return A.load_artifacts(path)


def artifacts() -> A.Artifacts:
    """The verified artifacts of the current build."""
    return _load(*_build())


@st.cache_data(max_entries=16, ttl=3600, show_spinner=False)
def _table(path: str, stamp: float, name: str) -> pd.DataFrame | None:
    """A verified metrics table, cached per build."""
    return _load(path, stamp).read_table(name)


@st.cache_data(max_entries=16, ttl=3600, show_spinner=False)
def _json(path: str, stamp: float, name: str) -> dict[str, Any] | None:
    """A verified JSON artifact, cached per build."""
    return _load(path, stamp).read_json(name)


def table(name: str) -> pd.DataFrame | None:
    """A verified CSV/parquet artifact, or None when it is missing or refused."""
    return _table(*_build(), name)


def read_json(name: str) -> dict[str, Any] | None:
    """A verified JSON artifact, or None when it is missing or refused."""
    return _json(*_build(), name)


@st.cache_data(max_entries=2, ttl=3600, show_spinner="Loading the cleaned demo events…")
def _sequences(path: str, stamp: float) -> pd.DataFrame | None:
    """View sequences of the cleaned events (for the sampler and the example), cached per build."""
    events = _load(path, stamp).read_table(schema.CLEAN_EVENTS)
    return None if events is None else view_sequences(events)


def sequences() -> pd.DataFrame | None:
    """Views with a known category of the cleaned events, sorted per visitor; None if not built."""
    return _sequences(*_build())
