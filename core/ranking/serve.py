"""Serving Task 1: validate a request's views and rank the next category after the last one.

rank() serves one request through the training feature code, on numpy columns (pandas costs
more than the features at 100 views); reading a request's list of dicts is the one pass over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from core.base.errors import DataError
from core.base.schema import (
    CANDIDATE_FEATURES,
    LOOKBACK,
    MARKOV_FEATURE,
    MAX_TIMESTAMP_MS,
    UNKNOWN_CATEGORY,
    VIEW_COLUMNS,
    WINDOW_MS,
)
from core.ranking.candidates import candidate_arrays
from core.ranking.cases import rank_in_groups, sorted_views, with_final_probe
from core.ranking.markov import markov_arrays
from core.ranking.metrics import order_within_cases
from core.ranking.models import UNRANKED, RankingModel, rule_scores

MAX_VIEWS = 1_000


@dataclass
class RankResult:
    """Ranking of the next category for one history of views.

    ``columns`` holds the ranking as numpy arrays; ``ranking`` is the same table as a DataFrame,
    built on first use (a DataFrame costs more than ranking 20 views, and the API needs none).
    """

    ranker: str
    fallback_reason: str | None
    columns: dict[str, np.ndarray]  # categoryid, score, rank (1 = best) + candidate features
    n_history_views: int
    _table: pd.DataFrame | None = field(default=None, init=False, repr=False)

    @property
    def ranking(self) -> pd.DataFrame:
        """categoryid, score, rank (1 = best) + candidate features, one row per ranked category."""
        if self._table is None:
            self._table = pd.DataFrame(self.columns, copy=False)
        return self._table

    @ranking.setter
    def ranking(self, table: pd.DataFrame) -> None:
        self._table = table


def _row_problem(values: pd.Series, col: str) -> pd.Series:
    """Per-row problem text for one integer column ('' when fine)."""
    s = values
    problems = pd.Series("", index=s.index, dtype=object)
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        return pd.Series(f"{col} must be int milliseconds, not a datetime", index=s.index)
    is_bool = s.map(lambda v: isinstance(v, (bool, np.bool_)))
    missing = s.isna()
    num = pd.to_numeric(s.where(~is_bool), errors="coerce")
    not_num = num.isna() & ~missing
    numf = num.astype(np.float64)
    frac = ~not_num & ~missing & ((numf % 1 != 0) | ~np.isfinite(numf))
    big = ~not_num & ~missing & ~frac & (numf.abs() >= 2**63)
    neg = ~not_num & ~missing & ~frac & (numf < 0)
    problems[neg] = f"{col} is negative"
    if col == "timestamp":  # the API's bound too (core.base.schema)
        problems[~not_num & ~missing & ~frac & (numf > MAX_TIMESTAMP_MS)] = "timestamp is after 2100-01-01"
    if col == "categoryid":
        problems[numf == UNKNOWN_CATEGORY] = (
            "categoryid is -1 (unknown category); drop unknown-category views before ranking"
        )
    problems[big] = f"{col} is out of the int64 range"
    problems[frac] = f"{col} is not an integer"
    problems[not_num] = f"{col} is not a number"
    if col != "itemid":  # itemid is optional, also per row
        problems[missing] = f"{col} is missing"
    shown = s.map(str).str.slice(0, 40)
    return problems.where(problems == "", problems + " (value " + shown + ")")


class CheckedViews(NamedTuple):
    """Validated views as int64 numpy columns, in input order (itemid None when not given)."""

    timestamp: np.ndarray
    categoryid: np.ndarray
    itemid: np.ndarray | None  # 0 where absent
    itemid_absent: np.ndarray | None  # bool, True where the view has no itemid

    def frame(self) -> pd.DataFrame:
        """timestamp, categoryid (int64)[, itemid (nullable Int64)]."""
        out = pd.DataFrame({"timestamp": self.timestamp, "categoryid": self.categoryid})
        if self.itemid is not None:
            out["itemid"] = pd.arrays.IntegerArray(self.itemid, self.itemid_absent)
        return out


def _clean_ints(values: Any, optional: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Fast path: (int64 values, absent mask) when every value is a non-negative int (or, when
    optional, None); None sends the column to the row-by-row checks that name the bad row."""
    if isinstance(values, pd.Series):
        if not (isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu"):
            return None
        arr = values.to_numpy()
        if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
            return None
        arr = arr.astype(np.int64, copy=False)
        absent = np.zeros(len(arr), dtype=bool)
    elif isinstance(values, list):
        types = set(map(type, values))
        has_none = optional and type(None) in types
        if has_none:
            types.discard(type(None))
        # exact types: bool is an int subclass but not a number here; floats go the slow way
        if not all(t is int or issubclass(t, np.integer) for t in types):
            return None
        absent = np.array([v is None for v in values]) if has_none else np.zeros(len(values), bool)
        if has_none:
            values = [0 if v is None else v for v in values]
        try:
            arr = np.array(values, dtype=np.int64)
        except (OverflowError, ValueError, TypeError):  # e.g. beyond int64: the slow path says so
            return None
    else:
        return None  # e.g. a duplicated column name
    return (arr, absent) if arr.min(initial=0) >= 0 else None


def _checked_views(views: pd.DataFrame | list[dict] | Any) -> CheckedViews:
    """Views checked column-wise with numpy; only a failing column is checked row by row."""
    if isinstance(views, pd.DataFrame):
        frame = views.reset_index(drop=True)
        df: pd.DataFrame | None = frame
        n, names = len(frame), set(frame.columns)

        def column(c: str) -> Any:
            return frame[c]
    elif isinstance(views, (list, tuple)):
        bad = [i for i, v in enumerate(views) if not isinstance(v, dict)]
        if bad:
            raise DataError(f"views row {bad[0]} (0-based): expected a dict, got {type(views[bad[0]]).__name__}")
        df, n, names = None, len(views), set().union(*views)

        def column(c: str) -> Any:
            return [v.get(c) for v in views]  # absent key = missing, as in a DataFrame
    else:
        raise DataError(f"views must be a DataFrame or a list of dicts, got {type(views).__name__}")
    if n == 0:
        raise DataError("views: no rows; at least one view is needed")
    if n > MAX_VIEWS:
        raise DataError(f"views: {n} rows, at most {MAX_VIEWS} are accepted")
    missing_cols = [c for c in ("timestamp", "categoryid") if c not in names]
    if missing_cols:
        raise DataError(f"views: missing column(s) {missing_cols}; need timestamp (int ms), categoryid")
    cols = [c for c in VIEW_COLUMNS if c in names]
    # itemid is optional, also per row (None/NaN = absent); it is not used to rank.
    fast = {c: _clean_ints(column(c), optional=c == "itemid") for c in cols}
    ts_fast = fast["timestamp"]
    if ts_fast is not None and ts_fast[0].max(initial=0) > MAX_TIMESTAMP_MS:
        fast["timestamp"] = None  # after 2100: the row-by-row checks name the rows
    slow = [c for c in cols if fast[c] is None]
    if slow:
        if df is None:
            df = pd.DataFrame(list(views))
        problems = pd.DataFrame({c: _row_problem(df[c], c) for c in slow})
        bad_rows = np.flatnonzero((problems != "").any(axis=1).to_numpy())
        if len(bad_rows):
            msgs = []
            for r in bad_rows[:5]:  # at most 5 rows in the message
                texts = "; ".join(t for t in problems.iloc[r] if t)
                msgs.append(f"row {r}: {texts}")
            more = f" (and {len(bad_rows) - 5} more rows)" if len(bad_rows) > 5 else ""
            raise DataError("invalid views (rows are 0-based): " + " | ".join(msgs) + more)
        for c in slow:  # valid, but not plain ints (e.g. 2.0, "7", NaN itemid)
            num = pd.to_numeric(df[c]).astype("Int64")
            fast[c] = (num.to_numpy(np.int64, na_value=0), num.isna().to_numpy())
    item = fast.get("itemid")
    ts, cat = fast["timestamp"], fast["categoryid"]
    assert ts is not None and cat is not None  # every column left None above was filled in
    return CheckedViews(ts[0], cat[0], item[0] if item else None, item[1] if item else None)


def validate_views(views: pd.DataFrame | list[dict] | Any) -> pd.DataFrame:
    """Checked views (timestamp, categoryid[, itemid] as int64); DataError names the bad rows."""
    return _checked_views(views).frame()


def rank(views: pd.DataFrame | list[dict], model: RankingModel | None = None, top_k: int | None = 3) -> RankResult:
    """Rank next categories after the last of `views` with `model` (rule ranking if None)."""
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise DataError(f"top_k must be a positive integer or None, got {top_k!r}")
    v = _checked_views(views)
    lookback = model.lookback if model is not None else LOOKBACK
    window_ms = model.window_ms if model is not None else WINDOW_MS
    order = np.argsort(v.timestamp, kind="stable")
    ts = v.timestamp[order]
    cat = v.categoryid[order]
    # One visitor plus a probe "next" view at t_last: its history is exactly the views with
    # timestamp >= t_last - window, last `lookback` of them — built by the training code path
    # (candidate_arrays and markov_arrays, as numpy columns: no DataFrame until the output).
    vis, ts_all, cat_all, case_mask = with_final_probe(np.zeros(len(ts), dtype=np.int64), ts, cat)
    cands = candidate_arrays(vis, ts_all, cat_all, lookback, window_ms, case_mask)
    fallback: str | None = None
    ranker = "rule"
    if model is None:
        fallback = "no model given"
    else:
        if model.markov is not None:
            cands = markov_arrays(cands, model.markov, model.markov_top_n, lookback, window_ms)
        missing = [f for f in model.features if f not in cands]
        if missing:
            fallback = f"model {model.name!r} needs missing features {missing}"
        else:
            ranker = model.name
    if ranker == "rule":
        scores = rule_scores(cands)
    else:
        assert model is not None  # ranker is the model's name only when a model was given
        scores = model.score(cands)
    order = order_within_cases(cands, scores)
    order = order[np.asarray(scores)[order] != UNRANKED]  # e.g. last_category ranks one candidate
    if top_k is not None:
        order = order[:top_k]
    feats = [c for c in CANDIDATE_FEATURES + (MARKOV_FEATURE,) if c in cands]
    columns = {
        "categoryid": cands["categoryid"][order],
        "score": np.asarray(scores)[order],
        "rank": np.arange(1, len(order) + 1),
        **{f: cands[f][order] for f in feats},
    }
    return RankResult(
        ranker=ranker,
        fallback_reason=fallback,
        columns=columns,
        n_history_views=int(cands["n_views"][0]),
    )


def rank_latest(events: pd.DataFrame, model: RankingModel | None = None, top_k: int = 3) -> pd.DataFrame:
    """Per visitor, the next-category ranking after its latest history, as /rank would answer it
    for that visitor's views (batch use): visitorid, rank (1 = best), categoryid, score, ranker."""
    if not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise DataError(f"top_k must be a positive integer, got {top_k!r}")
    lookback = model.lookback if model is not None else LOOKBACK
    window_ms = model.window_ms if model is not None else WINDOW_MS
    vis, ts, cat, probe = with_final_probe(*sorted_views(events))
    if not probe.any():
        raise DataError("no view with a known category: nothing to rank")
    cands = candidate_arrays(vis, ts, cat, lookback, window_ms, probe)
    if model is not None and model.markov is not None:
        cands = markov_arrays(cands, model.markov, model.markov_top_n, lookback, window_ms)
    scores = np.asarray(model.score(cands) if model is not None else rule_scores(cands))
    order = order_within_cases(cands, scores)
    order = order[scores[order] != UNRANKED]
    pos = rank_in_groups(cands["case_id"][order])
    order, pos = order[pos < top_k], pos[pos < top_k]
    return pd.DataFrame(
        {
            "visitorid": cands["visitorid"][order],
            "rank": pos + 1,
            "categoryid": cands["categoryid"][order],
            "score": scores[order],
            "n_history_views": cands["n_views"][order],
            "ranker": model.name if model is not None else "rule",
        }
    )
