"""What every dashboard page shares: the entry-point guard, the cached artifacts (the API's
loader) and small UI pieces.

It lives next to streamlit_app.py, not in pages/: Streamlit's legacy multipage mode lists every
``pages/*.py`` (even ``_shared.py``) as a page.
"""

from __future__ import annotations

import html
import textwrap
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.base import schema
from core.base.memory import release_memory, use_returning_allocators
from core.base.schema import SYNTHETIC_SOURCE
from core.ranking import view_sequences
from core.store import artifacts as A
from core.userfiles.templates import TEMPLATES, template_csv

ENTRY_POINT = Path(__file__).resolve().parent / "streamlit_app.py"
# Set by streamlit_app.py on every run, just before it runs the page; each page's guard takes it.
ENTRY_MARKER = "_ran_streamlit_app"

# A dropped upload's memory goes back to the OS instead of staying with the server (core.base.memory).
use_returning_allocators()


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
    manifest = path / schema.MANIFEST
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


def missing(what: str, name: str) -> None:
    """Say that an artifact is not available, why, and how to get it."""
    arts = artifacts()
    status = arts.unreadable.get(name) or arts.status.get(name, "not built yet")  # malformed, refused, missing
    st.info(f"**{what}** is not available (`{name}`: {status}). {A.REBUILD_HINT}", icon=":material/info:")


def _is_number(value: Any) -> bool:
    """True for an int or a float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def bad_content(
    name: str,
    data: dict[str, Any] | pd.DataFrame,
    numbers: tuple[str, ...] = (),
    required: tuple[str, ...] = (),
    mappings: tuple[str, ...] = (),
    dates: tuple[str, ...] = (),
    columns: tuple[str, ...] = (),
) -> str | None:
    """Why a verified artifact's content cannot be shown, naming the file and the field; None when
    it can. JSON: ``numbers`` are numbers or absent, ``required`` present numbers, ``mappings``
    objects of numbers. Tables: ``numbers``/``required`` and ``dates`` are columns of numbers and of
    dates, ``columns`` columns that must exist."""
    if isinstance(data, dict):
        for key in (*numbers, *required):
            value = data.get(key)
            if not (_is_number(value) or (value is None and key not in required)):
                return f"`{name}`: {key!r} is not a number"
        for key in mappings:
            value = data.get(key)
            if value is not None and not (isinstance(value, dict) and all(map(_is_number, value.values()))):
                return f"`{name}`: {key!r} is not an object of numbers"
        return None
    absent = [c for c in (*numbers, *required, *dates, *columns) if c not in data.columns]
    if absent:
        return f"`{name}` lacks the column(s) {', '.join(map(repr, absent))}"
    for col in (*numbers, *required):
        if pd.to_numeric(data[col], errors="coerce").isna().any():
            return f"`{name}`: column {col!r} holds values that are not numbers"
    for col in dates:
        if pd.to_datetime(data[col], errors="coerce", format="ISO8601").isna().any():
            return f"`{name}`: column {col!r} holds values that are not dates"
    return None


def unusable(what: str, why: str) -> None:
    """Say that an artifact's content cannot be shown, why, and how to get a good one."""
    st.warning(f"**{what}** cannot be shown: {why}. {A.REBUILD_HINT}", icon=":material/warning:")


# One format per kind of number, in text, tables and charts (d3 formats for Altair):
# shares as percentages with one decimal, counts with thousands separators, scores and
# thresholds with four decimals.
PCT_DIGITS = 1
SCORE_DIGITS = 4
PCT_D3, COUNT_D3, SCORE_D3 = f".{PCT_DIGITS}%", ",d", f".{SCORE_DIGITS}f"


def pct(x: float | None, digits: int = PCT_DIGITS) -> str:
    """A share as a percentage string ('–' when unknown)."""
    return "–" if x is None or pd.isna(x) else f"{100 * float(x):.{digits}f}%"


def count(x: Any) -> str:
    """An integer with thousands separators ('–' when unknown)."""
    return "–" if x is None or pd.isna(x) else f"{int(x):,}"


def score_text(x: Any) -> str:
    """An anomaly score or threshold, with four decimals ('–' when unknown)."""
    return "–" if x is None or pd.isna(x) else f"{float(x):.{SCORE_DIGITS}f}"


# Stored columns holding a share (0–1), shown as percentages; the rest are told apart by name.
SHARE_COLUMNS = {
    "share",
    "coverage",
    "top1",
    "top3",
    "top1_all",
    "top3_all",
    "mrr5",
    "mrr_at_5",
    "precision",
    "recall",
    "pr_auc",
    "value",
    "ci_low",
    "ci_high",
    "normal_buyers_flagged",
    "txn_held_by_flagged",
    "jaccard_with_volume_rule",
    "drift_share",
}
SCORE_COLUMNS = {"threshold", "anomaly_score", "score", "markov_prob"}


def _kind(col: str, values: pd.Series) -> str | None:
    """'share', 'score' or 'count' for a stored numeric column; None for anything else."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return None
    if col in SHARE_COLUMNS or col.endswith(("_share", "_rate")) or col.startswith("recall_"):
        return "share"
    if col in SCORE_COLUMNS:
        return "score"
    if pd.api.types.is_integer_dtype(values) or col.startswith("n_") or col.endswith("_removed"):
        return "count"
    return None


def formatted(frame: pd.DataFrame) -> pd.io.formats.style.Styler:
    """A stored table with readable column names and one format per kind of number, for
    st.dataframe and the HTML report: percentages with one decimal, counts with thousands
    separators, scores with four decimals. The values underneath stay as stored."""
    shown = display(frame)
    formats: dict[str, Any] = {}
    for col, new in zip(frame.columns, shown.columns):
        kind = _kind(str(col), frame[col])
        if kind == "share":
            formats[new] = lambda v: pct(v)
        elif kind == "count":
            formats[new] = lambda v: count(v)
        elif kind == "score":
            formats[new] = lambda v: score_text(v)
    return shown.style.format(formats, na_rep="")


@st.cache_data(max_entries=2, ttl=3600, show_spinner="Loading the cleaned demo events…")
def _sequences(path: str, stamp: float) -> pd.DataFrame | None:
    """View sequences of the cleaned events (for the sampler and the example), cached per build."""
    events = _load(path, stamp).read_table(schema.CLEAN_EVENTS)
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


# Runs in the component's iframe, which is served by the app (srcdoc) from the same origin.
_COLLAPSE_ON_PHONE_JS = """<script>
const doc = window.parent.document;
if (window.parent.matchMedia("(max-width: 768px)").matches) {
  const bar = doc.querySelector('[data-testid="stSidebar"]');
  const button = doc.querySelector('[data-testid="stSidebarCollapseButton"] button');
  if (bar && button && bar.getAttribute("data-collapsed") === "false") button.click();
}
</script>"""


def collapse_sidebar_on_phone(page_key: str) -> None:
    """Close the sidebar after a page is chosen, on a phone only: there it lists the pages and
    covers 300 of 390 px, and Streamlit leaves it open after the choice. Only on a page change,
    so the sidebar opened to read the build status stays open while the page is used."""
    if st.session_state.get("_shown_page") == page_key:
        return
    st.session_state["_shown_page"] = page_key
    with st.sidebar:  # the page name makes a new document, so the script runs again (a same one is kept)
        st.iframe(f"<!-- {html.escape(page_key)} -->" + _COLLAPSE_ON_PHONE_JS, height=1)


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
    "This is what a visitor experiences. top3_all: the same for the first three.",
    "rankers": "The ways of ranking the candidates. rule: the count + recency rule (most viewed "
    "category first, the most recent one on a tie). logreg: logistic regression; hgb: "
    "gradient-boosted trees; rf: random forest; these three learn from the 7 candidate "
    "features. A name ending in _markov5 also ranks up to five suggested categories.",
    "score": "The ranker's number for a candidate: higher means more likely to be viewed next. "
    "Scores order the candidates of one history; they are not probabilities and are not "
    "comparable between histories.",
    "raw / cleaned": "raw: all events of the build. cleaned (clean): the same events without the "
    "events of the users the detector flags. The same colour marks each of them on every chart.",
    "95% interval": "The range the value would fall in 95 times out of 100 if the test visitors were "
    "drawn again (bootstrap over visitors). Two values whose intervals overlap may not really differ.",
    "per case / per visitor": "Per case: every case counts once, so very active visitors weigh more. "
    "Per visitor: each visitor's cases are averaged first, so every visitor counts once.",
    "anomaly score": "The detector's number for a user: higher means the behaviour is further from "
    "the training users'. Only its order matters; scores of different detectors are not comparable.",
    "detectors": "The four ways of scoring users. isolation_forest: isolates unusual users with "
    "random splits (few splits = unusual). robust_z: the largest distance from the typical user on "
    "any behaviour column, in σ. hbos: adds up how rare each behaviour value is (histograms). "
    "ecod: adds up how far in the upper tail each behaviour value lies. volume_rule (a baseline, "
    "not a detector): flag the users with the most events.",
    "behaviour columns": "What the detectors look at, each computed from the 16 features and oriented "
    "so that higher = more bot-like: intensity (views per active day), new_items_per_day, breadth "
    "(categories per active day), fast_share (share of views less than 5 s apart), tight_gaps "
    "(how short the longest usual gaps between events are), night (share of events between 0:00 and "
    "6:00 UTC), session_rate (sessions per active day), repeat_views (views of items already seen), "
    "returns_per_item, unbought_carts and unbought_cart_rate (add-to-carts of visitors who never "
    "bought). A purchase never raises the score of a user.",
    "σ (robust z)": "How far a behaviour value is above the typical training user, in robust "
    "standard deviations (the median, and the spread of the users above it). 3σ is far above "
    "what most users do; values below typical count as 0 (one-sided).",
    "share": "The share of users a detector flags: the users whose anomaly score is in the top "
    "share (for example the top 4%).",
    "ties": "Users whose scores are exactly equal. The threshold for a share is the (1 − share) "
    "quantile of the scores (linear interpolation between neighbours) and every user with a score "
    "at or above it is flagged, so all users tied at the threshold are flagged together. When many "
    "users share a score the flagged share can be above the share asked for, and two nearby shares "
    "can flag the same users. The dashboard, the API and the build use this one rule.",
    "frozen threshold": "The anomaly-score threshold fixed once on the training users at the chosen "
    "share (the frozen operating point). New batches are flagged against this number, so the share "
    "flagged in a batch can differ.",
    "operating point": "A share of users to flag and the threshold that goes with it. The frozen "
    "operating point is the one fixed on the training users when the build ran.",
    "policy": "keep visitors who bought: a user with a transaction is never flagged, even above the "
    "threshold, so the flagged share can be below the share asked for. flag buyers too (no buyer "
    "policy): the threshold alone decides.",
    "PR-AUC": "Area under the precision–recall curve: how well a detector's scores put the known "
    "abnormal users first, over every threshold. 1 is perfect; a random score gets the share of "
    "abnormal users (about 3% here).",
    "precision": "Of the users flagged, the share that are really abnormal.",
    "recall": "Of the really abnormal users, the share that are flagged.",
    "Jaccard": "Overlap of two sets of flagged users: the users both flag, divided by the users "
    "either flags. 100% = the same users, 0% = no user in common.",
    "line": "Where a row is in an uploaded file: the line number a spreadsheet shows, with the "
    "header on line 1 and the first data row on line 2. Every message and table uses it.",
}


def glossary(*terms: str) -> None:
    """A collapsed 'What the terms mean' expander with the given terms (all when none given)."""
    with st.expander("What the terms mean", icon=":material/menu_book:"):
        st.markdown("\n".join(f"- **{t}**: {GLOSSARY[t]}" for t in (terms or GLOSSARY)))


# One colour per series, on every page and in the HTML report (drawn without Streamlit's theme).
SERIES_COLORS: dict[str, str] = {
    # raw vs cleaned events (and the rankers trained on them)
    "raw": "#94a3b8",
    "cleaned": "#2563eb",
    "clean": "#2563eb",
    "clean − raw": "#7c3aed",
    # rankers
    "rule": "#f59e0b",
    "logreg": "#10b981",
    "hgb": "#db2777",
    "rf": "#0891b2",
    # detectors and the baseline
    "isolation_forest": "#2563eb",
    "robust_z": "#10b981",
    "hbos": "#db2777",
    "ecod": "#f59e0b",
    "volume_rule": "#64748b",
    # measures
    "precision": "#0f766e",
    "recall": "#c2410c",
    "users": "#2563eb",
    "events": "#7c3aed",
    "transactions": "#f59e0b",
    "buyers": "#10b981",
    # scores against the threshold, and ranked categories
    "below threshold": "#94a3b8",
    "at or above threshold": "#dc2626",
    "viewed": "#2563eb",
    "suggested (not viewed)": "#f59e0b",
}
OTHER_COLORS = ["#0ea5e9", "#a16207", "#4d7c0f", "#be185d", "#1e3a8a", "#525252"]
# Lines that can lie on each other (two measures both at 0) stay apart by their dash and point.
SERIES_DASH = [[1, 0], [6, 3], [2, 2], [8, 2, 2, 2]]
SERIES_SHAPES = ["circle", "square", "triangle-up", "diamond"]


def series_scale(domain: list[str]) -> alt.Scale:
    """The colour scale of these series: each known series in its own colour everywhere."""
    spare = iter(OTHER_COLORS * 4)
    return alt.Scale(domain=list(domain), range=[SERIES_COLORS.get(str(d)) or next(spare) for d in domain])


def legend(labels: list[str]) -> alt.Legend:
    """A legend above the chart that wraps into rows narrow enough for a phone (one row of five
    was cut at 390 px): as many columns of the longest label as fit in ~40 characters, at most 3."""
    longest = max((len(str(label)) for label in labels), default=1)
    columns = max(1, min(len(labels), 3, 40 // (longest + 4)))
    return alt.Legend(orient="top", columns=columns, labelLimit=0, symbolType="circle")


def title_lines(text: str, width: int = 42) -> list[str]:
    """A chart title broken into lines of at most `width` characters: Vega never wraps a title,
    so a long one was cut at phone width."""
    return textwrap.wrap(text, width) or [text]


def flagged_tail_chart(scores: np.ndarray, threshold: float, bins: int = 40) -> alt.LayerChart | None:
    """A second histogram zoomed on the highest scores: the flagged users and as many again
    just below the threshold, on a linear axis, so the tail is readable next to the full view.

    None when nothing is scored or nothing reaches the threshold.
    """
    finite = np.asarray(scores, np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size or not np.isfinite(threshold):
        return None
    above = int((finite >= threshold).sum())
    if above == 0:
        return None
    low = min(float(threshold), float(np.quantile(finite, max(0.0, 1 - 2 * above / finite.size))))
    # strictly above a lower edge below the threshold: a block of users tied at that edge would
    # otherwise set the panel's scale and flatten the tail it is there to show
    shown = finite[(finite > low) | (finite >= threshold)]
    counts, edges = np.histogram(shown, bins=bins)
    frame = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "users": counts})
    frame["side"] = np.where(frame["end"] > threshold, "at or above threshold", "below threshold")
    sides = ["below threshold", "at or above threshold"]
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("start:Q", bin="binned", title="Anomaly score", scale=alt.Scale(zero=False)),
            x2="end:Q",
            y=alt.Y("users:Q", title="Users", axis=alt.Axis(format=COUNT_D3)),
            color=alt.Color("side:N", title=None, scale=series_scale(sides), legend=None),
            tooltip=[
                alt.Tooltip("start:Q", format=SCORE_D3, title="from"),
                alt.Tooltip("end:Q", format=SCORE_D3, title="to"),
                alt.Tooltip("users:Q", format=COUNT_D3),
            ],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(color="black", strokeDash=[6, 3])
        .encode(x="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", format=SCORE_D3)])
    )
    title = title_lines(f"Zoom: the {count(shown.size)} highest scores ({pct(shown.size / finite.size)} of the scored)")
    return fit_width((bars + rule).properties(height=200, title=alt.TitleParams(title, anchor="start", fontSize=13)))


CHART_PADDING = {"left": 10, "right": 20, "top": 10, "bottom": 30}  # room for the axis titles


def fit_width(chart: Any) -> Any:
    """A chart as wide as its container, padding, legend and axis titles included (they were cut
    at phone width); its height stays the plot's own (fitting the height too squeezed the plot
    under a legend to a few pixels)."""
    return chart.properties(padding=CHART_PADDING, autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


def template_download(kind: str, where: Any = None) -> None:
    """A 'download a template' button for one upload kind (a key of core.userfiles.templates.TEMPLATES):
    a small example file of the expected layout, made by core.userfiles.templates."""
    name, data = template_csv(kind)
    (where or st).download_button(
        f"Template: {kind}",
        data,
        name,
        "text/csv",
        key=f"template_{kind.replace(' ', '_')}",
        on_click="ignore",
        icon=":material/description:",
        help=f"A small example {kind} file in the layout this upload expects ({name}).",
    )


def template_downloads(*kinds: str) -> None:
    """Template buttons for these upload kinds in one row (all kinds when none given)."""
    row = st.container(horizontal=True)
    for kind in kinds or tuple(TEMPLATES):
        template_download(kind, row)


def lying_on_each_other(long: pd.DataFrame, field: str, value: str = "value") -> str:
    """'transactions and buyers lie on each other (the same at every share).' for the series of a
    long table whose values are all equal, else ''. A caption sentence, so no line goes unseen."""
    by = long.groupby(field, sort=False)[value].apply(lambda v: tuple(np.round(v.to_numpy(np.float64), 12)))
    groups = [list(names) for _, names in by.groupby(by).groups.items() if len(names) > 1]
    return " ".join(
        f"{', '.join(map(str, names[:-1]))} and {names[-1]} lie on each other (the same at every point)."
        for names in groups
    )


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
    "point": "operating point",
    "users_removed": "users removed",
    "events_removed": "events removed",
    "view_removed": "views removed",
    "addtocart_removed": "add-to-carts removed",
    "buyers_removed": "buyers removed",
    "method": "detector",
    "value": "estimate",
    "anomaly_score": "anomaly score",
    "candidate_set": "candidates",
}


def display(frame: pd.DataFrame) -> pd.DataFrame:
    """A stored table with readable column names (underscores become spaces)."""

    def name(col: Any) -> str:
        col = str(col)
        if col in DISPLAY_NAMES:
            return DISPLAY_NAMES[col]
        if col.endswith("_removed_share"):  # events_removed_share -> share of events removed
            return f"share of {DISPLAY_NAMES.get(col[:-6], col[:-6].replace('_', ' '))}"
        if col.startswith("recall_"):  # recall_burst_bot -> recall: burst bots
            return f"recall: {col[7:].replace('_', ' ')}s"
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


def _server() -> Any:
    """The Streamlit server's Runtime; None in a bare script or in AppTest (a mock Runtime)."""
    from streamlit.runtime import Runtime

    if not Runtime.exists():
        return None
    runtime = Runtime.instance()
    return runtime if type(runtime) is Runtime else None


def drop_upload_bytes(uploaded: Any, key: str) -> None:
    """Let Streamlit drop an uploaded file's bytes once the page has read them.

    The uploader keeps every file's bytes for as long as the file is in it (82 MB for a
    1.4M-row features CSV), next to the table decoded from them. The file's record is replaced
    by an empty one with the same id, name and type, so the widget keeps showing the file and
    its value keeps its id (the page reads a file once per id). The widget's values (``key``'s
    and the one returned) are closed too: they share the bytes, copy-on-write.
    """
    from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec

    ctx = get_script_run_ctx()
    if ctx is None or _server() is None:  # AppTest re-reads the files it uploaded: leave them
        return
    try:
        ctx.uploaded_file_mgr.add_file(  # the memory manager's own method, as the upload route calls it
            ctx.session_id, UploadedFileRec(uploaded.file_id, uploaded.name, uploaded.type, b"")
        )
    except Exception:  # another uploaded-file manager: its bytes stay until the file is removed
        pass
    for value in (uploaded, st.session_state.get(key)):
        if isinstance(value, UploadedFile):
            value.close()


def download_data(build: Callable[..., bytes], *args: Any) -> Callable[[], bytes]:
    """A download button's ``data``: ``build(*args)`` when the button is clicked, after which the
    build's temporaries go back to the OS.

    Made here, not in a page: a function defined in a page script holds every name of that run
    (the uploaded table too) for as long as Streamlit keeps the button's callable.
    """
    return partial(_build_and_release, build, *args)


def _build_and_release(build: Callable[..., bytes], *args: Any) -> bytes:
    """build(*args), then release_memory."""
    data = build(*args)
    release_memory()
    return data


def drop_served_downloads() -> None:
    """Free the bytes of downloads already served, as the end of a script run does.

    Streamlit keeps a clicked download's bytes (the scored CSV of a 1.4M-row upload is 200 MB)
    until two later script runs have ended: the first marks them, the second deletes them. The
    run that drops an upload is often the last one, so it does the first pass itself and its own
    end the second. Every session's served downloads are swept alike, as any run's end sweeps them.
    """
    runtime = _server()
    try:
        if runtime is not None:
            runtime.media_file_mgr.remove_orphaned_files()
    except Exception:  # Streamlit changed: the next runs' ends free them
        pass


WATCH_INTERVAL_S = 2.0
# session id -> when it was first seen without its tab (time.monotonic), None while connected
_watched: dict[str, float | None] = {}
# session id -> the session-state entries to empty when it is closed (keep_in_session)
_held: dict[str, list[dict[str, Any]]] = {}
_watch_lock = threading.Lock()
_watcher: list[threading.Thread] = []


def keep_in_session(key: str, entry: dict[str, Any]) -> None:
    """``st.session_state[key] = entry``; the entry is emptied by ``release_from_session`` or
    when the tab's session is closed (``close_session_when_tab_closes``).

    Emptied, not only dropped: after a tab closes, Streamlit's event loop can keep a reference
    to its last session (a loop variable) until another session sends messages.
    """
    st.session_state[key] = entry
    ctx = get_script_run_ctx()
    if ctx is None or _server() is None:  # a bare script or AppTest: no server to outlive
        return
    with _watch_lock:
        _held[ctx.session_id] = [e for e in _held.get(ctx.session_id, []) if e] + [entry]
    close_session_when_tab_closes()


def release_from_session(key: str) -> None:
    """Drop and empty a ``keep_in_session`` entry, so nothing that still holds it keeps its data."""
    entry = st.session_state.pop(key, None)
    if isinstance(entry, dict):
        entry.clear()


def close_session_when_tab_closes() -> None:
    """Close this session, and free what it holds, once its tab has been gone for
    ``server.disconnectedSessionTTL`` (30 s, .streamlit/config.toml).

    Streamlit keeps a closed tab's session that long so a reconnecting tab can resume it, but
    when the time is up it only stops offering it: it does not shut it down. Its session state
    (a 1.4M-row table) stays in memory until some other session disconnects, and its uploaded
    files stay for good (measured with Streamlit 1.67). A watcher thread therefore empties the
    session's ``keep_in_session`` entries and closes it just before the TTL runs out, with
    ``Runtime.clear_user_info_for_session`` (safe from any thread: it marks the session as not
    resumable and closes it on the event loop).
    """
    ctx = get_script_run_ctx()
    if ctx is None or _server() is None:  # a bare script or AppTest: no server to outlive
        return
    with _watch_lock:
        _watched.setdefault(ctx.session_id, None)
        if not _watcher:
            _watcher.append(threading.Thread(target=_watch, name="close-closed-tabs", daemon=True))
            _watcher[0].start()


def _watch() -> None:
    """Every WATCH_INTERVAL_S: close the watched sessions whose tab is gone for the TTL (less
    two intervals, so the session is closed before Streamlit stops offering it), then free."""
    grace = max(0.0, float(st.get_option("server.disconnectedSessionTTL")) - 2 * WATCH_INTERVAL_S)
    to_free = 0  # ticks left that free memory after a close (shutdown runs on the event loop)
    while True:
        time.sleep(WATCH_INTERVAL_S)
        try:
            runtime = _server()
            now = time.monotonic()
            with _watch_lock:
                for session_id, since in list(_watched.items()):
                    if runtime.is_active_session(session_id):
                        _watched[session_id] = None
                    elif since is None:
                        _watched[session_id] = now
                    elif now - since >= grace:
                        del _watched[session_id]
                        for entry in _held.pop(session_id, []):
                            entry.clear()
                        runtime.clear_user_info_for_session(session_id)
                        to_free = 2
            if to_free:
                to_free -= 1
                drop_served_downloads()  # the second pass: the session's shutdown did the first
                release_memory()
        except Exception:  # the server is stopping, or Streamlit changed: try again later
            continue
