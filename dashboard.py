"""What every dashboard page shares: the entry-point guard, the cached artifacts (the API's
loader) and small UI pieces.

It lives next to streamlit_app.py, not in pages/: Streamlit's legacy multipage mode lists every
``pages/*.py`` (even ``_shared.py``) as a page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core import artifacts as A
from core.ranking import view_sequences
from core.schema import SYNTHETIC_SOURCE

ENTRY_POINT = Path(__file__).resolve().parent / "streamlit_app.py"
# Set by streamlit_app.py on every run, just before it runs the page; each page's guard takes it.
ENTRY_MARKER = "_ran_streamlit_app"


def entry_point_guard(page_file: str) -> None:
    """First line of every page: make sure the page runs inside streamlit_app.py.

    With a ``pages/`` folder next to it, Streamlit starts in its legacy multipage mode and runs
    a deep link (``/anomaly``) as the bare page script until some session has called
    st.navigation. Then this page's run has no marker: it runs streamlit_app.py in place (which
    calls st.navigation, ending legacy mode for the whole server, draws the sidebar and runs
    the requested page) and stops. No rerun, so the widget events of this run are kept.
    """
    if st.session_state.pop(ENTRY_MARKER, False):
        return
    ctx = get_script_run_ctx()
    if ctx is None or Path(ctx.main_script_path).resolve() != ENTRY_POINT:  # e.g. `streamlit run pages/x.py`
        st.error("Start the dashboard with `streamlit run streamlit_app.py`.", icon=":material/block:")
        st.stop()
    code = compile(ENTRY_POINT.read_text(encoding="utf-8"), str(ENTRY_POINT), "exec")
    exec(code, {"__name__": "__main__", "__file__": str(ENTRY_POINT)})
    st.stop()


def _manifest_stamp(path: Path) -> float:
    """mtime of the manifest (0 when absent): a rebuild changes it, which refreshes the caches."""
    manifest = path / A.MANIFEST
    return manifest.stat().st_mtime if manifest.exists() else 0.0


def _build() -> tuple[str, float]:
    """The cache key of the current build: artifact directory and manifest mtime."""
    path = A.default_dir()  # $RECSYS_ARTIFACT_DIR, read by core.artifacts only
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
    return _sequences(*_build())


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


def synthetic_banner(arts: A.Artifacts) -> None:
    """A banner on every page when the loaded build comes from the demo generator, not real shoppers."""
    source = str(((arts.manifest or {}).get("data") or {}).get("source", ""))
    if not source.startswith(SYNTHETIC_SOURCE):
        return
    st.warning(
        f"**Synthetic data.** This build comes from the project's {SYNTHETIC_SOURCE} "
        f"({source.removeprefix(SYNTHETIC_SOURCE).strip(' ()')}), not from real shoppers: its "
        "figures are calibrated to published RetailRocket figures, but no real visitor is in it. "
        "For real results, download the RetailRocket e-commerce dataset (events.csv, "
        "item_properties_part1.csv, item_properties_part2.csv, category_tree.csv) into one folder "
        "and run `python -m core build --raw-dir FOLDER`.",
        icon=":material/science:",
    )


def built_date(value: Any) -> str:
    """A build timestamp (ISO 8601) as a reader writes it: '29 Nov 2026, 21:48 UTC'."""
    if not value:
        return "–"
    stamp = pd.to_datetime(str(value), errors="coerce", utc=True)
    return str(value) if pd.isna(stamp) else f"{stamp:%d %b %Y, %H:%M} UTC"


# Plain-language meanings of the words the pages use; each page lists the ones it shows.
GLOSSARY: dict[str, str] = {
    "case": "One prediction task: a view that has at least one earlier view by the same visitor "
    "within 24 hours. The earlier views (the last 100 at most) are its history; the task is to "
    "name the category of this view.",
    "candidate": "A category the ranker may put forward for a case: every category in the history, "
    "plus, for some models, categories that often follow the last one (suggested, not viewed).",
    "coverage": "Share of cases whose actual next category is among the candidates. A ranker can only "
    "be right on covered cases.",
    "top1": "Top-1 hit rate on covered cases: how often the actual next category is ranked first, "
    "among the cases where it was a candidate. top3: within the first three.",
    "top1_all": "Top-1 hit rate on all cases, uncovered ones counted as misses (top1 × coverage). "
    "This is what a visitor experiences.",
    "score": "The ranker's number for a candidate: higher means more likely to be viewed next. "
    "Scores order the candidates of one history; they are not probabilities and are not "
    "comparable between histories.",
    "share": "The share of users a detector flags: the users whose anomaly score is in the top "
    "share (for example the top 4%).",
    "frozen threshold": "The anomaly-score threshold fixed once on the training users at the chosen "
    "share. New batches are flagged against this number, so the share flagged in a batch can differ.",
    "PR-AUC": "Area under the precision–recall curve: how well a detector's scores put the known "
    "abnormal users first, over every threshold. 1 is perfect; a random score gets the share of "
    "abnormal users (about 3% here).",
    "precision": "Of the users flagged, the share that are really abnormal.",
    "recall": "Of the really abnormal users, the share that are flagged.",
}


def glossary(*terms: str) -> None:
    """A collapsed 'What the terms mean' expander with the given terms (all when none given)."""
    with st.expander("What the terms mean", icon=":material/menu_book:"):
        st.markdown("\n".join(f"- **{t}**: {GLOSSARY[t]}" for t in (terms or GLOSSARY)))


# Column names of the stored tables, as the pages show them.
DISPLAY_NAMES: dict[str, str] = {
    "ci_low": "95% CI low",
    "ci_high": "95% CI high",
    "n_cases": "cases",
    "n_covered": "covered cases",
    "n_visitors": "visitors",
    "n_top1": "top-1 hits",
    "n_top3": "top-3 hits",
    "pr_auc": "PR-AUC",
    "fit_on": "fitted on",
    "n_users": "users",
    "n_flagged": "flagged",
    "normal_buyers_flagged": "normal buyers flagged",
    "txn_held_by_flagged": "transactions held by flagged",
    "jaccard_with_volume_rule": "overlap with volume rule (Jaccard)",
    "transaction_removed": "transactions removed",
    "txn_warning": "transaction warning",
    "protect_buyers": "keep buyers",
    "label_source": "labels",
}


def display(frame: pd.DataFrame) -> pd.DataFrame:
    """A stored table with readable column names (underscores become spaces)."""
    def name(col: Any) -> str:
        col = str(col)
        if col in DISPLAY_NAMES:
            return DISPLAY_NAMES[col]
        if col.endswith("_removed_share"):  # events_removed_share -> share of events removed
            return f"share of {DISPLAY_NAMES.get(col[:-6], col[:-6].replace('_', ' '))}"
        return col.replace("_", " ")

    return frame.rename(columns=name)


def category_paths() -> dict[int, str] | None:
    """categoryid -> 'root › … › parent' from the build's category tree; None when the build has none.

    The current builds store no category tree, so the pages show bare ids and say why; a build
    that adds one (named CATEGORY_TREE in the artifact names) is picked up here.
    """
    name = getattr(A, "CATEGORY_TREE", None)
    tree = table(name) if name else None
    if tree is None or not {"categoryid", "parentid"} <= set(tree.columns):
        return None
    parent = dict(zip(tree["categoryid"].astype("int64"), pd.to_numeric(tree["parentid"], errors="coerce")))
    paths: dict[int, str] = {}
    for cat in parent:
        chain, node = [], parent.get(cat)
        while node is not None and not pd.isna(node) and len(chain) < 20:  # 20: a guard against cycles
            chain.append(str(int(node)))
            node = parent.get(int(node))
        paths[int(cat)] = " › ".join(reversed(chain))
    return paths
