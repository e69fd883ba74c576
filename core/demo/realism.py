"""How close an events table is to the real RetailRocket data: summary statistics and the report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.base import arrays
from core.base.schema import EVENT_TYPES, LOOKBACK, MS_PER_DAY, MS_PER_HOUR, UNKNOWN_CATEGORY, WINDOW_MS
from core.ranking.cases import history_window

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
    order = arrays.stable_order(vis, ts)
    return (
        vis[order],
        ts[order],
        events["itemid"].to_numpy(np.int64)[mask][order],
        events["categoryid"].to_numpy(np.int64)[mask][order],
    )


def candidate_rows_estimate(events: pd.DataFrame, lookback: int = LOOKBACK, window_ms: int = WINDOW_MS) -> int:
    """Exact number of (case, candidate) rows of spec §2: sum over views of distinct categories in H."""
    vis, ts, _, cats = _consecutive_views(events, known_only=True)
    n = vis.size
    if n == 0:
        return 0
    idx = np.arange(n)
    a = np.maximum(*history_window(vis, ts, lookback, window_ms))  # H of view i is [a_i, i)
    # j counts in case i iff a_i <= j < i and j is the last view of its category before i, i.e.
    # i in (j, min(next same-category view of j, last i with a_i <= j)].
    o = arrays.stable_order(vis, cats)  # stable, so index order within (visitor, category)
    nxt = np.full(n, n, dtype=np.int64)
    same = (vis[o][1:] == vis[o][:-1]) & (cats[o][1:] == cats[o][:-1])
    nxt[o[:-1][same]] = o[1:][same]
    last_i = np.searchsorted(a, idx, side="right") - 1  # a is non-decreasing
    return int(np.maximum(np.minimum(nxt, last_i) - idx, 0).sum())


def _shape_figures(events: pd.DataFrame) -> dict:
    """Event mix, events per visitor and the shape of consecutive views (what the report needs)."""
    codes = event_codes(events)
    per = events["visitorid"].value_counts().to_numpy()
    vis, ts, item, cats = _consecutive_views(events)
    same_v = vis[1:] == vis[:-1]
    gaps_s = (ts[1:] - ts[:-1])[same_v] / 1000.0
    kc = (cats[1:] != UNKNOWN_CATEGORY) & (cats[:-1] != UNKNOWN_CATEGORY) & same_v
    return {
        "n_events": int(len(events)),
        "n_visitors": int(per.size),
        "event_mix": {e: float((codes == i).mean()) for i, e in enumerate(EVENT_TYPES)},
        "events_per_visitor": {
            "mean": float(per.mean()),
            "median": float(np.median(per)),
            "p90": float(np.quantile(per, 0.9)),
            "p99": float(np.quantile(per, 0.99)),
            "max": int(per.max()),
        },
        "repeat_view_share": float((item[1:] == item[:-1])[same_v].mean()) if same_v.any() else 0.0,
        "same_category_share": float((cats[1:] == cats[:-1])[kc].mean()) if kc.any() else 0.0,
        "view_gap_median_s": float(np.median(gaps_s)) if gaps_s.size else 0.0,
        "view_gap_within_24h_share": float((gaps_s <= 86400).mean()) if gaps_s.size else 0.0,
    }


def realism_summary(events: pd.DataFrame) -> dict:
    """Headline statistics to compare with the real RetailRocket data (see the README table)."""
    t = events["timestamp"].to_numpy()
    hours = (t // MS_PER_HOUR) % 24
    return {
        **_shape_figures(events),
        "n_items": int(events["itemid"].nunique()),
        "n_categories_with_events": int(events.loc[events["categoryid"] != UNKNOWN_CATEGORY, "categoryid"].nunique()),
        "unknown_category_share": float((events["categoryid"].to_numpy() == UNKNOWN_CATEGORY).mean()),
        "night_share": float((hours < 6).mean()),
        "span_days": float((t.max() - t.min()) / MS_PER_DAY),
        "candidate_rows": candidate_rows_estimate(events),
    }


# --------------------------------------------------------------------------- realism report

# figure -> (target low, target high, real value, where the real value comes from)
REAL_TARGETS: dict[str, tuple[float, float, float, str]] = {
    "view_share": (0.955, 0.98, 0.9667, "RetailRocket events.csv: 2,664,312 of 2,756,101 events"),
    "addtocart_share": (0.018, 0.032, 0.0252, "RetailRocket events.csv: 69,332 of 2,756,101 events"),
    "transaction_share": (0.005, 0.011, 0.0081, "RetailRocket events.csv: 22,457 of 2,756,101 events"),
    "events_per_visitor_median": (1.0, 1.0, 1.0, "RetailRocket events.csv"),
    "events_per_visitor_p90": (2.0, 4.0, 3.0, "RetailRocket events.csv"),
    "repeat_view_share": (0.24, 0.38, 0.30, "RetailRocket shape: consecutive views of a visitor on one item"),
    "view_gap_median_s": (100.0, 250.0, 160.0, "RetailRocket shape: gaps between a visitor's views"),
    "view_gap_within_24h_share": (0.78, 0.90, 0.85, "RetailRocket shape: gaps between a visitor's views"),
    "buyer_share": (0.006, 0.014, 0.008, "5,000-visitor RetailRocket sample: 39 visitors bought"),
    "buyer_median_events": (4.0, 9.0, 6.0, "5,000-visitor RetailRocket sample, buyers"),
    "buyer_median_views": (3.0, 6.0, 4.0, "5,000-visitor RetailRocket sample, buyers"),
    "n_categories": (1669.0, 1669.0, 1669.0, "RetailRocket category_tree.csv"),
    "rule_coverage": (0.85, 0.93, 0.915, "RetailRocket task 1 as published: rule baseline, test split"),
    "rule_top1": (0.78, 0.88, 0.820, "RetailRocket task 1 as published: rule top1 among covered cases"),
    "rule_top3": (0.97, 1.0, 0.988, "RetailRocket task 1 as published: rule top3 among covered cases"),
    "learned_gain_top1_all": (0.0, 0.05, 0.009, "RetailRocket task 1 as published: logistic regression minus rule"),
}


def _buyer_figures(events: pd.DataFrame) -> dict[str, float]:
    """Share of visitors with a transaction, and the buyers' median events and views."""
    codes = event_codes(events)
    vis = events["visitorid"].to_numpy(np.int64)
    uniq, inv = np.unique(vis, return_inverse=True)
    n_ev = np.bincount(inv, minlength=uniq.size)
    n_view = np.bincount(inv, weights=codes == 0, minlength=uniq.size)
    buyer = np.bincount(inv, weights=codes == 2, minlength=uniq.size) > 0
    if not buyer.any():
        return {"buyer_share": 0.0, "buyer_median_events": 0.0, "buyer_median_views": 0.0}
    return {
        "buyer_share": float(buyer.mean()),
        "buyer_median_events": float(np.median(n_ev[buyer])),
        "buyer_median_views": float(np.median(n_view[buyer])),
    }


def _task1_figures(metrics: pd.DataFrame | list[dict]) -> dict[str, float]:
    """Rule coverage/top1/top3 and the best learned ranker's top1_all gain, from test-split metrics."""
    m = pd.DataFrame(metrics)
    m = m[m["split"] == "test"] if "split" in m else m
    if "candidate_set" in m:  # the build's table also holds the Markov-candidate runs
        m = m[m["candidate_set"] == "history (spec)"]
    rule = m[m["ranker"] == "rule"].iloc[-1]
    learned = m[~m["ranker"].isin(["rule", "recency", "last_category", "markov"])]  # the learned ones
    out = {"rule_coverage": float(rule["coverage"]), "rule_top1": float(rule["top1"]), "rule_top3": float(rule["top3"])}
    if len(learned):
        out["learned_gain_top1_all"] = float(learned["top1_all"].max() - rule["top1_all"])
    return out


def realism_report(
    events: pd.DataFrame,
    category_tree: pd.DataFrame | None = None,
    task1_metrics: pd.DataFrame | list[dict] | None = None,
) -> list[dict]:
    """Each calibrated figure next to its target range and real RetailRocket value.

    task1_metrics is a Task 1 metrics table (ranker, split, coverage, top1, top3, top1_all), as
    ``ranking.train_and_evaluate(...).metrics`` or the build's task1_metrics.csv; without it (or
    without the tree) those rows are left out.
    """
    s = _shape_figures(events)  # not realism_summary: the report needs no candidate count
    values: dict[str, float] = {
        "view_share": s["event_mix"]["view"],
        "addtocart_share": s["event_mix"]["addtocart"],
        "transaction_share": s["event_mix"]["transaction"],
        "events_per_visitor_median": s["events_per_visitor"]["median"],
        "events_per_visitor_p90": s["events_per_visitor"]["p90"],
        "repeat_view_share": s["repeat_view_share"],
        "view_gap_median_s": s["view_gap_median_s"],
        "view_gap_within_24h_share": s["view_gap_within_24h_share"],
        **_buyer_figures(events),
    }
    if category_tree is not None:
        values["n_categories"] = float(len(category_tree))
    if task1_metrics is not None:
        values.update(_task1_figures(task1_metrics))
    rows = []
    for figure, value in values.items():  # a few figures
        lo, hi, real, source = REAL_TARGETS[figure]
        rows.append(
            {
                "figure": figure,
                "value": float(value),
                "target_low": lo,
                "target_high": hi,
                "real_value": real,
                "source": source,
                "ok": bool(lo - 1e-12 <= value <= hi + 1e-12),
            }
        )
    return rows
