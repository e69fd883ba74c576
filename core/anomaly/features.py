"""The 16 per-visitor behaviour features of docs/DATA_CONTRACT.md, computed fully vectorised.

One stable sort of the events by (visitorid, timestamp), then bincounts and run-length
arithmetic; the per-visitor 95th gap percentile is numpy's linear interpolation reproduced on the
(visitor, gap)-sorted gap array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.base import arrays
from core.base.errors import DataError
from core.base.schema import (
    COUNT_FEATURES,
    EVENT_TYPES,
    MS_PER_DAY,
    MS_PER_HOUR,
    NIGHT_HOURS,
    SESSION_GAP_S,
    SHORT_GAP_S,
    UNKNOWN_CATEGORY,
    USER_FEATURES,
)

GAP_PERCENTILE = 95.0

_EVENT_INPUT_COLUMNS = ("timestamp", "visitorid", "event", "itemid", "categoryid")


def _empty_features() -> pd.DataFrame:
    """An empty feature table with the right columns and dtypes."""
    cols: dict[str, Any] = {"visitorid": np.empty(0, np.int64)}
    for f in USER_FEATURES:
        cols[f] = np.empty(0, np.int64 if f in COUNT_FEATURES else np.float64)
    return pd.DataFrame(cols)


def _group_p95(gaps: np.ndarray, gap_vis: np.ndarray, n_vis: int, gap_ms: np.ndarray | None = None) -> np.ndarray:
    """Per-visitor 95th percentile of gaps (numpy 'linear'), 0 for visitors without gaps.

    gap_vis must be non-decreasing. gap_ms (non-negative integer gaps, same order as gaps)
    allows a single-key sort; equal keys have equal gaps, so stability does not matter.
    """
    out = np.zeros(n_vis, np.float64)
    if gaps.size == 0:
        return out
    span = int(gap_ms.max()) + 1 if gap_ms is not None else 0
    if gap_ms is not None and n_vis * span < 2**62:
        order = np.argsort(gap_vis * np.int64(span) + gap_ms)
    else:
        order = np.lexsort((gaps, gap_vis))
    g = gaps[order]
    m = np.bincount(gap_vis, minlength=n_vis)
    has = m > 0
    mh = m[has]
    start = (np.cumsum(m) - m)[has]
    # Same arithmetic as np.percentile(method="linear"): virtual index (n-1)*q, lerp.
    q = np.true_divide(GAP_PERCENTILE, 100)
    virtual = (mh - 1) * q
    lo = np.floor(virtual)
    t = virtual - lo
    lo_i = lo.astype(np.int64)
    hi_i = np.minimum(lo_i + 1, mh - 1)
    a = g[start + lo_i]
    b = g[start + hi_i]
    diff = b - a
    val = a + diff * t
    upper = t >= 0.5
    val[upper] = (b - diff * (1 - t))[upper]
    out[has] = val
    return out


def _distinct_pairs(code: np.ndarray, values: np.ndarray, n_vis: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (visitor code, value) pairs: their visitor codes and occurrence counts.

    Sorting one int64 key and reading its runs is several times faster than hashing the pairs.
    """
    if code.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    vmin = values.min()
    span = int(values.max()) - int(vmin) + 1
    if n_vis * span >= 2**62:  # sparse huge ids: densify first so the key cannot overflow
        values, uniques = pd.factorize(values)
        vmin, span = 0, max(len(uniques), 1)
    key = np.sort(code * np.int64(span) + (values - vmin))
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    counts = np.diff(np.append(starts, key.size))
    return key[starts] // span, counts


def user_features(events: pd.DataFrame) -> pd.DataFrame:
    """``visitorid`` + the 16 user features, one row per visitor, sorted by visitorid."""
    missing = [c for c in _EVENT_INPUT_COLUMNS if c not in events.columns]
    if missing:
        raise DataError(
            f"user_features needs the prepared event columns {list(_EVENT_INPUT_COLUMNS)}; "
            f"missing: {missing}. Load events with core.reading.data (it adds categoryid)."
        )
    n = len(events)
    if n == 0:
        return _empty_features()
    ts = events["timestamp"].to_numpy(np.int64)
    vis = events["visitorid"].to_numpy(np.int64)
    order = arrays.stable_order(vis, ts)  # by (visitor, timestamp), ties in file order
    ts = ts[order]
    vis = vis[order]
    etype = pd.Categorical(events["event"], categories=list(EVENT_TYPES)).codes[order]
    items = events["itemid"].to_numpy(np.int64)[order]
    cats = events["categoryid"].to_numpy(np.int64)[order]
    del order

    same = vis[1:] == vis[:-1]  # consecutive events of the same visitor
    new_vis = np.empty(n, bool)
    new_vis[0] = True
    new_vis[1:] = ~same
    code = np.cumsum(new_vis) - 1  # dense visitor code, in visitorid order
    visitor_ids = vis[new_vis]
    n_vis = visitor_ids.size
    del vis, new_vis

    n_events = np.bincount(code, minlength=n_vis)
    view, addtocart, transaction = (
        np.bincount(code, weights=(etype == k), minlength=n_vis).astype(np.int64) for k in range(len(EVENT_TYPES))
    )
    del etype

    # Distinct items per visitor: runs of the sorted (visitor, item) pair key.
    pair_vis, _ = _distinct_pairs(code, items, n_vis)
    uniq_items = np.bincount(pair_vis, minlength=n_vis)
    del items, pair_vis

    # Known categories: distinct count and Shannon entropy (bits) of the category distribution.
    known = cats != UNKNOWN_CATEGORY
    kcode = code[known]
    pair_vis, pair_count = _distinct_pairs(kcode, cats[known], n_vis)
    p = pair_count / np.bincount(kcode, minlength=n_vis)[pair_vis]
    cat_entropy = np.bincount(pair_vis, weights=-p * np.log2(p), minlength=n_vis) + 0.0
    uniq_cats = np.bincount(pair_vis, minlength=n_vis)
    del cats, known, kcode, pair_vis, pair_count, p

    # Gaps between consecutive events of a visitor, in seconds.
    gap_vis = code[1:][same]
    gap_ms = np.diff(ts)[same]
    gaps = gap_ms / 1000.0
    day = ts // MS_PER_DAY  # UTC calendar day; non-decreasing within a visitor
    new_day = (day[1:] != day[:-1])[same]
    active_days = 1 + np.bincount(gap_vis, weights=new_day, minlength=n_vis).astype(np.int64)
    hour = (ts // MS_PER_HOUR) % 24
    night = (hour >= NIGHT_HOURS[0]) & (hour < NIGHT_HOURS[1])
    night_share = np.bincount(code, weights=night, minlength=n_vis) / n_events
    n_gaps = n_events - 1
    short = np.bincount(gap_vis, weights=gaps < SHORT_GAP_S, minlength=n_vis)
    short_gap_share = short / np.maximum(n_gaps, 1)
    n_sessions = 1 + np.bincount(gap_vis, weights=gaps > SESSION_GAP_S, minlength=n_vis).astype(np.int64)
    p95 = _group_p95(gaps, gap_vis, n_vis, gap_ms)
    del ts, day, hour, night, gaps, gap_ms, gap_vis, code, same

    feats = {
        "events": n_events.astype(np.int64),
        "view": view,
        "addtocart": addtocart,
        "transaction": transaction,
        "uniq_items": uniq_items.astype(np.int64),
        "uniq_cats": uniq_cats.astype(np.int64),
        "cat_entropy": cat_entropy,
        "events_per_active_day": n_events / active_days,
        "add_to_view_rate": addtocart / np.maximum(view, 1),
        "txn_to_cart_rate": transaction / np.maximum(addtocart, 1),
        "night_share": night_share,
        "p95_gap_s": p95,
        "short_gap_share": short_gap_share,
        "n_sessions": n_sessions,
        "sessions_per_day": n_sessions / active_days,
        "uniq_item_ratio": uniq_items / n_events,
    }
    # copy=False: keep the 17 arrays as they are instead of consolidating (a copy of the whole table).
    cols = {"visitorid": visitor_ids, **{f: feats[f] for f in USER_FEATURES}}
    return pd.DataFrame(cols, copy=False)
