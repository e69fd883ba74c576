"""What every page shares: the cached artifacts (same loader as the API) and small UI pieces."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core import artifacts as A
from core.export import view_sequences

# The one place the dashboard reads the artifact directory (the API reads the same variable).
ARTIFACT_DIR_ENV = "RECSYS_ARTIFACT_DIR"


def artifact_dir() -> Path:
    """$RECSYS_ARTIFACT_DIR when set, else the repository's recsys_artifacts/."""
    return Path(os.environ.get(ARTIFACT_DIR_ENV) or A.ARTIFACT_DIR)


def _manifest_stamp(path: Path) -> float:
    """mtime of the manifest (0 when absent): a rebuild changes it, which refreshes the caches."""
    manifest = path / A.MANIFEST
    return manifest.stat().st_mtime if manifest.exists() else 0.0


@st.cache_resource(max_entries=4, show_spinner="Verifying and loading the artifacts…")
def _load(path: str, stamp: float) -> A.Artifacts:
    """load_artifacts (manifest sha256 check before unpickling), once per build."""
    return A.load_artifacts(path)


def artifacts() -> A.Artifacts:
    """The verified artifacts of the current build."""
    path = artifact_dir()
    return _load(str(path), _manifest_stamp(path))


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
    path = artifact_dir()
    return _table(str(path), _manifest_stamp(path), name)


def read_json(name: str) -> dict[str, Any] | None:
    """A verified JSON artifact, or None when it is missing or refused."""
    path = artifact_dir()
    return _json(str(path), _manifest_stamp(path), name)


def missing(what: str, name: str) -> None:
    """Say that an artifact is not available, why, and how to get it."""
    status = artifacts().status.get(name, "not built yet")
    st.info(f"**{what}** is not available (`{name}`: {status}). {A.REBUILD_HINT}", icon=":material/info:")


def pct(x: float | None, digits: int = 1) -> str:
    """A share as a percentage string ('–' when unknown)."""
    return "–" if x is None or pd.isna(x) else f"{100 * float(x):.{digits}f}%"


def count(x: Any) -> str:
    """An integer with thousands separators ('–' when unknown)."""
    return "–" if x is None or pd.isna(x) else f"{int(x):,}"


@st.cache_data(max_entries=2, ttl=3600, show_spinner="Loading the cleaned demo events…")
def _sequences(path: str, stamp: float) -> pd.DataFrame | None:
    """View sequences of the cleaned events (for the sampler and the example), cached per build."""
    events = _load(path, stamp).read_table(A.CLEAN_EVENTS)
    return None if events is None else view_sequences(events)


def sequences() -> pd.DataFrame | None:
    """Views with a known category of the cleaned events, sorted per visitor; None if not built."""
    path = artifact_dir()
    return _sequences(str(path), _manifest_stamp(path))


def best_test_row(rows: pd.DataFrame, best: str | None) -> pd.Series | None:
    """The test-split metrics row of the served ranker.

    Served names may extend a ranker name with its candidate set (``hgb_markov5`` is ``hgb`` on
    history + Markov candidates), so an exact match wins, else the longest ranker name that
    prefixes it, on a Markov candidate set when the name says so.
    """
    if best is None or rows.empty or "ranker" not in rows:
        return None
    test = rows[rows["split"] == "test"] if "split" in rows else rows
    exact = test[test["ranker"] == best]
    if len(exact):
        return exact.iloc[0]
    prefix = test[[best.startswith(str(r)) for r in test["ranker"]]]
    if "candidate_set" in prefix:
        wants_markov = "markov" in best.lower()
        prefix = prefix[prefix["candidate_set"].str.lower().str.contains("markov") == wants_markov]
    if prefix.empty:
        return None
    return prefix.loc[prefix["ranker"].str.len().idxmax()]
