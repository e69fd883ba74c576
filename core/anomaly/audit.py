"""Audits without ground truth: rule-based proxy labels, operating-point tables and cleaning."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.anomaly.validation import numeric
from core.base.errors import DataError


def proxy_labels(features: pd.DataFrame) -> np.ndarray:
    """Rule-based "obviously abnormal" flags for data without ground truth.

    A user is flagged when any of these holds:
      * burst bot: short_gap_share >= 0.5 with events >= 50;
      * volume: events_per_active_day >= the batch's 99.5th percentile with events >= 20;
      * cart stuffer: addtocart >= 20 with transaction == 0;
      * night scraper: night_share >= 0.8 with events >= 30.
    Non-numeric values count as "rule not met".
    """
    cols = {
        c: numeric(features[c])
        for c in ("events", "addtocart", "transaction", "short_gap_share", "events_per_active_day", "night_share")
    }
    ev = cols["events"]
    epd = cols["events_per_active_day"]
    fin = np.isfinite(epd)
    q = np.quantile(epd[fin], 0.995) if fin.any() else np.inf
    with np.errstate(invalid="ignore"):
        flags = (
            ((cols["short_gap_share"] >= 0.5) & (ev >= 50))
            | ((epd >= q) & (ev >= 20))
            | ((cols["addtocart"] >= 20) & (cols["transaction"] == 0))
            | ((cols["night_share"] >= 0.8) & (ev >= 30))
        )
    return np.asarray(flags, bool)


DEFAULT_AUDIT_SHARES = np.round(np.arange(0.01, 0.2001, 0.01), 2)


def audit_table(
    scores: np.ndarray,
    labels: np.ndarray | None,
    events_per_user: np.ndarray,
    shares: np.ndarray = DEFAULT_AUDIT_SHARES,
) -> pd.DataFrame:
    """Per flagged share: threshold, n_flagged, precision, recall and events/users removed.

    The threshold at share s is np.quantile(scores, 1 - s); flagged = score >= threshold.
    Rows with a NaN score are left out entirely. labels=None gives NaN precision/recall.
    """
    s = np.asarray(scores, np.float64)
    ev = np.asarray(events_per_user, np.float64)
    lab = None if labels is None else np.asarray(labels, bool)
    if ev.shape != s.shape or (lab is not None and lab.shape != s.shape):
        raise DataError("scores, labels and events_per_user must have the same length.")
    keep = ~np.isnan(s)
    s, ev = s[keep], ev[keep]
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # Suffix sums over the ascending order: the flagged users are a suffix.
    ev_suffix = np.concatenate([np.cumsum(ev[order][::-1])[::-1], [0.0]])
    n = s.size
    shares = np.asarray(shares, np.float64)
    if n:
        thr = np.quantile(s, 1 - shares)
        start = np.searchsorted(s_sorted, thr, side="left")
    else:
        thr = np.full(shares.shape, np.nan)
        start = np.zeros(shares.shape, np.int64)
    n_flag = n - start
    if lab is not None:
        lab = lab[keep]
        tp_suffix = np.concatenate([np.cumsum(lab[order][::-1])[::-1], [0]])
        tp = tp_suffix[start]
        n_pos = int(lab.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(n_flag > 0, tp / np.maximum(n_flag, 1), np.nan)
            recall = tp / n_pos if n_pos else np.full(shares.shape, np.nan)
    else:
        precision = recall = np.full(shares.shape, np.nan)
    total_ev = ev.sum()
    ev_removed = ev_suffix[start]
    return pd.DataFrame(
        {
            "share": shares,
            "threshold": thr,
            "n_flagged": n_flag.astype(np.int64),
            "precision": precision.astype(np.float64),
            "recall": np.asarray(recall, np.float64),
            "events_removed": ev_removed.astype(np.int64),
            "events_removed_share": ev_removed / total_ev if total_ev else np.nan,
            "users_removed_share": n_flag / n if n else np.nan,
        }
    )


def clean_events(events: pd.DataFrame, flagged_visitorids: Any) -> pd.DataFrame:
    """The events without any event of a flagged visitor (order kept, index reset)."""
    flagged = np.asarray(pd.unique(np.asarray(flagged_visitorids).ravel()))
    drop = np.isin(events["visitorid"].to_numpy(), flagged)
    return events.loc[~drop].reset_index(drop=True)


def cleaning_report(before: pd.DataFrame, after: pd.DataFrame) -> dict[str, Any]:
    """Events and users before/after cleaning, removed counts and shares."""
    eb, ea = len(before), len(after)
    ub = int(pd.unique(before["visitorid"].to_numpy()).size)
    ua = int(pd.unique(after["visitorid"].to_numpy()).size)
    return {
        "events_before": eb,
        "events_after": ea,
        "events_removed": eb - ea,
        "events_removed_share": (eb - ea) / eb if eb else 0.0,
        "users_before": ub,
        "users_after": ua,
        "users_removed": ub - ua,
        "users_removed_share": (ub - ua) / ub if ub else 0.0,
    }
