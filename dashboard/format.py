"""One format per kind of number, in text, tables and charts, and the stored tables' column
names as the pages show them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.build.results import PCT_DIGITS, pct

# One format per kind of number, in text, tables and charts (d3 formats for Altair):
# shares as percentages with one decimal, counts with thousands separators, scores and
# thresholds with four decimals (shares: core.build.results.pct, which the build's sentences use too).
SCORE_DIGITS = 4
PCT_D3, COUNT_D3, SCORE_D3 = f".{PCT_DIGITS}%", ",d", f".{SCORE_DIGITS}f"


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


def built_date(value: Any) -> str:
    """A build timestamp (ISO 8601) as a reader writes it: '29 Nov 2026, 21:48 UTC'."""
    if not value:
        return "–"
    stamp = pd.to_datetime(str(value), errors="coerce", utc=True)
    return str(value) if pd.isna(stamp) else f"{stamp:%d %b %Y, %H:%M} UTC"


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
