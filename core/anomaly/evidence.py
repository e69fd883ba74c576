"""The evidence behind one flagged visitor: their events over time by type, their hour-of-day
profile and their gaps between events (UTC; the feature definitions' own clock and gaps)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.base.schema import EVENT_TYPES, MS_PER_HOUR

# Gap bands (seconds) for the gap chart: the 5 s "short gap" and 30 min session rules are edges.
GAP_EDGES = (0.0, 1.0, 5.0, 30.0, 300.0, 1800.0, 3600.0 * 6, 86400.0, np.inf)
GAP_LABELS = ("< 1 s", "1-5 s", "5-30 s", "30 s-5 min", "5-30 min", "30 min-6 h", "6-24 h", "> 1 day")


@dataclass(frozen=True)
class Evidence:
    """One visitor's events summarised three ways, each a small table for a chart."""

    timeline: pd.DataFrame  # time (hour, UTC), event, events
    hours: pd.DataFrame  # hour 0-23, events
    gaps: pd.DataFrame  # gap band, gaps
    n_events: int


def visitor_evidence(events: pd.DataFrame) -> Evidence:
    """The evidence tables of the events of one visitor (any order)."""
    ts = np.sort(events["timestamp"].to_numpy(np.int64))
    hour_start = events["timestamp"].to_numpy(np.int64) // MS_PER_HOUR * MS_PER_HOUR
    timeline = (
        pd.DataFrame(
            {
                "time": pd.to_datetime(hour_start, unit="ms"),
                "event": pd.Categorical(events["event"].astype(str), categories=list(EVENT_TYPES)),
            }
        )
        .groupby(["time", "event"], observed=True)
        .size()
        .rename("events")
        .reset_index()
    )
    hours = pd.DataFrame({"hour": np.arange(24), "events": np.bincount((ts // MS_PER_HOUR) % 24, minlength=24)})
    gap_s = np.diff(ts) / 1000.0
    band = np.searchsorted(np.asarray(GAP_EDGES[1:-1]), gap_s, side="right")
    gaps = pd.DataFrame({"gap": list(GAP_LABELS), "gaps": np.bincount(band, minlength=len(GAP_LABELS))})
    return Evidence(timeline, hours, gaps, int(ts.size))
