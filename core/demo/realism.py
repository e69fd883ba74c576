"""How close an events table is to the real RetailRocket data: summary statistics and the report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.demo.common import DAY, HOUR
from core.schema import EVENT_TYPES, LOOKBACK, UNKNOWN_CATEGORY, WINDOW_MS


# --------------------------------------------------------------------------- realism summary


def event_codes(events: pd.DataFrame) -> np.ndarray:
    """Event type codes (index into EVENT_TYPES, -1 for anything else) of a categorical or string column."""
    col = events["event"]
    if isinstance(col.dtype, pd.CategoricalDtype) and tuple(col.cat.categories) == EVENT_TYPES:
        return col.cat.codes.to_numpy().astype(np.int64)
    return pd.Categorical(col.astype(str), categories=list(EVENT_TYPES)).codes.astype(np.int64)


def _consecutive_views(events: pd.DataFrame, known_only: bool = False) -> tuple[np.ndarray, ...]:
    """View rows sorted by (visitorid, timestamp), ties in file order: visitor, time, item, category."""
    mask = event_codes(events) == 0
    if known_only:
        mask &= events["categoryid"].to_numpy() != UNKNOWN_CATEGORY
    vis = events["visitorid"].to_numpy(np.int64)[mask]
    ts = events["timestamp"].to_numpy(np.int64)[mask]
    order = np.lexsort((ts, vis))  # lexsort is stable
    return (vis[order], ts[order], events["itemid"].to_numpy(np.int64)[mask][order],
            events["categoryid"].to_numpy(np.int64)[mask][order])


def candidate_rows_estimate(events: pd.DataFrame, lookback: int = LOOKBACK, window_ms: int = WINDOW_MS) -> int:
    """Exact number of (case, candidate) rows of spec §2: sum over views of distinct categories in H."""
    vis, ts, _, cats = _consecutive_views(events, known_only=True)
    n = vis.size
    if n == 0:
        return 0
    idx = np.arange(n)
    first = np.searchsorted(vis, vis, side="left")
    # Window start a_i: max(first view of visitor, i - lookback, first view at >= t_i - window).
    key_t = (vis - vis.min()) * (int(ts.max()) - int(ts.min()) + window_ms + 1) + (ts - ts.min())
    a = np.maximum(np.maximum(first, idx - lookback), np.searchsorted(key_t, key_t - window_ms, side="left"))
    # j counts in case i iff a_i <= j < i and j is the last view of its category before i, i.e.
    # i in (j, min(next same-category view of j, last i with a_i <= j)].
    o = np.lexsort((cats, vis))  # stable, so index order within (visitor, category)
    nxt = np.full(n, n, dtype=np.int64)
    same = (vis[o][1:] == vis[o][:-1]) & (cats[o][1:] == cats[o][:-1])
    nxt[o[:-1][same]] = o[1:][same]
    last_i = np.searchsorted(a, idx, side="right") - 1  # a is non-decreasing
    return int(np.maximum(np.minimum(nxt, last_i) - idx, 0).sum())


def realism_summary(events: pd.DataFrame) -> dict:
    """Headline statistics to compare with the real RetailRocket data (see the README table)."""
    codes = event_codes(events)
    mix = {e: float((codes == i).mean()) for i, e in enumerate(EVENT_TYPES)}
    per = events["visitorid"].value_counts().to_numpy()
    vis, ts, item, cats = _consecutive_views(events)
    same_v = vis[1:] == vis[:-1]
    gaps_s = (ts[1:] - ts[:-1])[same_v] / 1000.0
    kc = (cats[1:] != UNKNOWN_CATEGORY) & (cats[:-1] != UNKNOWN_CATEGORY) & same_v
    t = events["timestamp"].to_numpy()
    hours = (t // HOUR) % 24
    return {
        "n_events": int(len(events)),
        "n_visitors": int(per.size),
        "n_items": int(events["itemid"].nunique()),
        "n_categories_with_events": int(events.loc[events["categoryid"] != UNKNOWN_CATEGORY, "categoryid"].nunique()),
        "event_mix": mix,
        "events_per_visitor": {
            "mean": float(per.mean()), "median": float(np.median(per)),
            "p90": float(np.quantile(per, 0.9)), "p99": float(np.quantile(per, 0.99)),
            "max": int(per.max()),
        },
        "repeat_view_share": float((item[1:] == item[:-1])[same_v].mean()) if same_v.any() else 0.0,
        "same_category_share": float((cats[1:] == cats[:-1])[kc].mean()) if kc.any() else 0.0,
        "view_gap_median_s": float(np.median(gaps_s)) if gaps_s.size else 0.0,
        "view_gap_within_24h_share": float((gaps_s <= 86400).mean()) if gaps_s.size else 0.0,
        "unknown_category_share": float((events["categoryid"].to_numpy() == UNKNOWN_CATEGORY).mean()),
        "night_share": float((hours < 6).mean()),
        "span_days": float((t.max() - t.min()) / DAY),
        "candidate_rows": candidate_rows_estimate(events),
    }
