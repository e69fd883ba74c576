"""The case/history rule of Task 1 (docs/DATA_CONTRACT.md), written once.

Only `view` events with a known category count, ordered by (visitorid, timestamp) with ties in
file order. A case is a view with a non-empty history H: the visitor's earlier views with
timestamp >= t_i - window, the last `lookback` of them. Every module that needs cases, their
times, a visitor's history or a demo visitor goes through this file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.base import arrays
from core.base.errors import DataError
from core.base.schema import LOOKBACK, UNKNOWN_CATEGORY, WINDOW_MS

SEQUENCE_COLUMNS: tuple[str, ...] = ("timestamp", "visitorid", "categoryid", "itemid")


def view_order(events: pd.DataFrame) -> np.ndarray:
    """Row positions of the known-category views, in (visitorid, timestamp, file) order."""
    missing = [c for c in ("timestamp", "visitorid", "event", "categoryid") if c not in events]
    if missing:
        raise DataError(f"events table: missing column(s) {missing}")
    keep = np.flatnonzero(
        (events["event"] == "view").to_numpy(dtype=bool) & (events["categoryid"].to_numpy() != UNKNOWN_CATEGORY)
    )
    vis = events["visitorid"].to_numpy(dtype=np.int64)[keep]
    ts = events["timestamp"].to_numpy(dtype=np.int64)[keep]
    return keep[arrays.stable_order(vis, ts)]  # ties on (visitorid, timestamp) keep file order


def sorted_views(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(visitorid, timestamp, categoryid) int64 arrays of the views in case order."""
    order = view_order(events)
    cols = ("visitorid", "timestamp", "categoryid")
    return tuple(events[c].to_numpy(dtype=np.int64)[order] for c in cols)


def history_lengths(
    vis: np.ndarray,
    ts: np.ndarray,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
    case_mask: np.ndarray | None = None,
) -> np.ndarray:
    """len(H) per sorted view (0 = not a case); with `case_mask`, only the masked views."""
    n = len(ts)
    idx = np.arange(n)
    new_visitor = np.ones(n, dtype=bool)
    new_visitor[1:] = vis[1:] != vis[:-1]
    vstart = np.maximum.accumulate(np.where(new_visitor, idx, 0))
    hist_len = np.zeros(n, dtype=np.int32)
    # Views of one visitor are time-sorted, so "view i-k is in H" fails for all larger k once it
    # fails: keep shrinking the active set, one vectorised step per offset k.
    active = idx[~new_visitor if case_mask is None else ~new_visitor & case_mask]
    for k in range(1, lookback + 1):
        j = active - k
        ok = (j >= vstart[active]) & (ts[j] >= ts[active] - window_ms)
        active = active[ok]
        if active.size == 0:
            break
        hist_len[active] = k
    return hist_len


def history_window(
    vis: np.ndarray, ts: np.ndarray, lookback: int = LOOKBACK, window_ms: int = WINDOW_MS
) -> tuple[np.ndarray, np.ndarray]:
    """Per sorted view i: the first position of its visitor within the time window (timestamp >=
    t_i - window) and the first within the last `lookback` views; H is [max of both, i)."""
    n = len(ts)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    idx = np.arange(n)
    first = np.searchsorted(vis, vis, side="left")
    # one sorted key over all visitors: a visitor's window never reaches into the previous visitor
    key_t = (vis - vis.min()) * (int(ts.max()) - int(ts.min()) + window_ms + 1) + (ts - ts.min())
    in_window = np.maximum(first, np.searchsorted(key_t, key_t - window_ms, side="left"))
    return in_window, np.maximum(first, idx - lookback)


def hours(ms: int) -> str:
    """A window length in words: '24 hours'."""
    return f"{ms / 3_600_000:g} hours"


def view_usage(views: pd.DataFrame, window_ms: int = WINDOW_MS, lookback: int = LOOKBACK) -> pd.DataFrame:
    """One visitor's views, oldest first, with whether ranking the next view uses them and, if
    not, why (the history of a view right after the last one, as /rank sees it)."""
    out = views.assign(timestamp=pd.to_numeric(views["timestamp"])).sort_values("timestamp", kind="stable")
    out = out.reset_index(drop=True)
    ts = out["timestamp"].to_numpy(np.int64)
    probe_ts = np.r_[ts, ts[-1:]]
    window_start, lookback_start = history_window(np.zeros(len(probe_ts), np.int64), probe_ts, lookback, window_ms)
    position = np.arange(len(ts))
    in_window = position >= window_start[-1]
    recent = position >= lookback_start[-1]
    out["used"] = np.where(
        in_window & recent,
        "used",
        np.where(
            ~in_window,
            f"not used: over {hours(window_ms)} before the last view",
            f"not used: beyond the {lookback} most recent views",
        ),
    )
    return out


def tail_streaks(cat: np.ndarray, hist_len: np.ndarray, lookback: int = LOOKBACK) -> np.ndarray:
    """Per sorted view: how many views of H's last category end H (0 when not a case)."""
    streak = np.zeros(len(cat), dtype=np.int32)
    active = np.flatnonzero(hist_len > 0)
    last_cat = cat[active - 1]
    for k in range(1, lookback + 1):
        j = active - k
        ok = (hist_len[active] >= k) & (cat[j] == last_cat)
        active, last_cat = active[ok], last_cat[ok]
        if active.size == 0:
            break
        streak[active] = k
    return streak


def has_history(vis: np.ndarray, ts: np.ndarray, window_ms: int = WINDOW_MS) -> np.ndarray:
    """True for the sorted views that are cases (H is non-empty iff its last view qualifies)."""
    return history_lengths(vis, ts, 1, window_ms) > 0


def case_times(events: pd.DataFrame, window_ms: int = WINDOW_MS) -> tuple[np.ndarray, np.ndarray]:
    """(timestamp of the labelled view, t_ref = timestamp of H's last view), indexed by case_id."""
    vis, ts, _ = sorted_views(events)
    cases = np.flatnonzero(has_history(vis, ts, window_ms))
    return ts[cases], ts[cases - 1]


def view_sequences(events: pd.DataFrame, window_ms: int = WINDOW_MS) -> pd.DataFrame:
    """The views in case order (timestamp, visitorid, categoryid, itemid) plus `has_history`."""
    views = events.iloc[view_order(events)].loc[:, list(SEQUENCE_COLUMNS)].reset_index(drop=True)
    views["has_history"] = has_history(
        views["visitorid"].to_numpy(np.int64), views["timestamp"].to_numpy(np.int64), window_ms
    )
    return views


def with_final_probe(
    vis: np.ndarray, ts: np.ndarray, cat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Views in case order plus, after each visitor's last view, a probe view at that view's time:
    the probe's history is the visitor's latest history, as /rank sees it (vis, ts, cat, probe mask)."""
    final = np.flatnonzero(np.r_[vis[1:] != vis[:-1], True]) if len(vis) else np.zeros(0, np.int64)
    at = final + 1
    mask = np.insert(np.zeros(len(vis), dtype=bool), at, True)
    return np.insert(vis, at, vis[final]), np.insert(ts, at, ts[final]), np.insert(cat, at, cat[final]), mask


def history_before(
    visitor_views: pd.DataFrame, target: int, window_ms: int = WINDOW_MS, lookback: int = LOOKBACK
) -> pd.DataFrame:
    """The history H of one visitor's time-sorted view at position `target` (rows of the input)."""
    ts = visitor_views["timestamp"].to_numpy(np.int64)[: target + 1]
    mask = np.zeros(len(ts), dtype=bool)
    mask[target] = True
    n = int(history_lengths(np.zeros(len(ts), np.int64), ts, lookback, window_ms, mask)[target])
    return visitor_views.iloc[target - n : target]


def final_histories(sequences: pd.DataFrame, lookback: int = LOOKBACK, window_ms: int = WINDOW_MS) -> pd.DataFrame:
    """Per visitor (sorted by id): views, categories, and len(H) / categories of its final view."""
    vis = sequences["visitorid"].to_numpy(np.int64)
    ts = sequences["timestamp"].to_numpy(np.int64)
    cat = sequences["categoryid"].to_numpy(np.int64)
    is_final = np.ones(len(vis), dtype=bool)
    is_final[:-1] = vis[1:] != vis[:-1]
    hist = history_lengths(vis, ts, lookback, window_ms, is_final)
    final_pos = np.flatnonzero(is_final)
    # A view is in its visitor's final history when it lies within H's span before the final view.
    owner = np.repeat(final_pos, np.diff(np.r_[0, final_pos + 1]))
    in_final = (np.arange(len(vis)) < owner) & (np.arange(len(vis)) >= owner - hist[owner])
    frame = pd.DataFrame({"visitorid": vis, "categoryid": cat, "in_final": in_final})
    per = frame.groupby("visitorid").agg(views=("categoryid", "size"), categories=("categoryid", "nunique"))
    per["history"] = hist[final_pos]
    inside = frame.loc[in_final]
    per["history_categories"] = inside.groupby("visitorid")["categoryid"].nunique().reindex(per.index, fill_value=0)
    cases = frame.assign(case=sequences["has_history"].to_numpy(bool))
    per["has_case"] = cases.groupby("visitorid")["case"].any()
    return per


def pick_visitor(
    sequences: pd.DataFrame,
    seed: int | None = None,
    by: tuple[str, ...] = ("history",),
    max_history: int | None = None,
    min_history_categories: int = 0,
    require_case: bool = True,
    prefer_categories: int = 0,
) -> int | None:
    """A demo visitor (with a case unless not required): a seeded draw, else the best by the
    `final_histories` columns `by` (descending, ties: smallest visitorid) within the history
    limits; None if nobody fits.

    With `prefer_categories`, the seeded draw is among visitors who viewed at least that many
    categories in at least one fewer cases (most visitors view one item again and again, a trivial demo), falling back to
    every visitor with a case when none did.
    """
    if seed is not None:
        eligible = arrays.unique(sequences.loc[sequences["has_history"], "visitorid"].to_numpy())
        if prefer_categories > 1 and eligible.size:
            own = sequences.loc[sequences["visitorid"].isin(eligible)].groupby("visitorid")
            per, cases = own["categoryid"].nunique(), own["has_history"].sum()
            # several categories and several cases, so a history has something to rank
            varied = per.index[(per >= prefer_categories) & (cases >= prefer_categories - 1)].to_numpy()
            eligible = varied if varied.size else eligible
        return int(np.random.default_rng(seed).choice(eligible)) if eligible.size else None
    per = final_histories(sequences)
    fits = per["history_categories"] >= min_history_categories
    if require_case:
        fits &= per["has_case"]
    if max_history is not None:
        fits &= per["history"] <= max_history
    good = per.loc[fits]
    if good.empty:
        return None
    return int(good.sort_values(list(by), ascending=False, kind="stable").index[0])


def case_codes(case_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense case code per row and the first row of each code (order of first appearance)."""
    codes, _ = pd.factorize(case_id, sort=False)
    running = np.maximum.accumulate(codes) if len(codes) else codes
    first = np.ones(len(codes), dtype=bool)
    first[1:] = running[1:] > running[:-1]
    return codes, np.flatnonzero(first)


def rank_in_groups(group: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal consecutive `group` values."""
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    return np.arange(len(group)) - np.repeat(starts, np.diff(np.append(starts, len(group))))


def case_table(cands: pd.DataFrame) -> pd.DataFrame:
    """One row per case, sorted by case_id: case_id, visitorid, y, last_cat (is_last category;
    UNKNOWN_CATEGORY for a case without an is_last row or a table without that column)."""
    case_id = cands["case_id"].to_numpy(np.int64)
    ids, first = np.unique(case_id, return_index=True)
    last = cands["is_last"].to_numpy() == 1 if "is_last" in cands else np.zeros(len(cands), bool)
    last_cat = np.full(ids.size, UNKNOWN_CATEGORY, dtype=np.int64)
    last_cat[np.searchsorted(ids, case_id[last])] = cands["categoryid"].to_numpy(np.int64)[last]
    return pd.DataFrame(
        {
            "case_id": ids,
            "visitorid": cands["visitorid"].to_numpy(np.int64)[first],
            "y": cands["y"].to_numpy(np.int64)[first],
            "last_cat": last_cat,
        }
    )


def cap_by_case(cands: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """Deterministic sample of whole cases with at most `cap` rows (at least one case)."""
    if len(cands) <= cap:
        return cands
    codes, _ = case_codes(cands["case_id"].to_numpy())
    sizes = np.bincount(codes)
    perm = np.random.default_rng(seed).permutation(len(sizes))
    n_keep = max(int(np.searchsorted(np.cumsum(sizes[perm]), cap, side="right")), 1)
    chosen = np.zeros(len(sizes), dtype=bool)
    chosen[perm[:n_keep]] = True
    return cands.loc[chosen[codes]]
