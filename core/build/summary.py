"""Summaries of an event table for the overview page: headline facts and daily activity."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.base.schema import EVENT_TYPES, MS_PER_DAY, MS_PER_HOUR, UNKNOWN_CATEGORY


def dataset_summary(events: pd.DataFrame, source: str) -> dict[str, Any]:
    """Headline facts about an event table for the overview page."""
    ts = pd.to_datetime(events["timestamp"], unit="ms", utc=True)
    # Counted on the categorical codes: a Python str per event would be slow on millions of events.
    mix = pd.Series(events["event"]).astype("category").value_counts(normalize=True)
    mix.index = mix.index.astype(str)
    return {
        "source": source,
        "events": int(len(events)),
        "visitors": int(events["visitorid"].nunique()),
        "items": int(events["itemid"].nunique()),
        "categories": int(events.loc[events["categoryid"] != UNKNOWN_CATEGORY, "categoryid"].nunique()),
        "unknown_category_events": int((events["categoryid"] == UNKNOWN_CATEGORY).sum()),
        "event_mix": {e: round(float(mix.get(e, 0.0)), 6) for e in EVENT_TYPES},
        "date_min": ts.min().isoformat() if len(ts) else None,
        "date_max": ts.max().isoformat() if len(ts) else None,
    }


def daily_activity(events: pd.DataFrame) -> pd.DataFrame:
    """Events per UTC day and event type, with ``partial`` marking the edge days the data does not cover whole."""
    ts = events["timestamp"].to_numpy()
    day = ts // MS_PER_DAY  # integer days: no per-event date strings
    event = pd.Series(events["event"]).astype("category")  # grouped by code, not by a str per event
    counts = pd.DataFrame({"day": day, "event": event.to_numpy()}).value_counts()
    table = counts[counts > 0].rename("events").reset_index()
    table["event"] = table["event"].astype(str)
    # A log that starts or ends mid-day makes its edge day look like a collapse in traffic; an
    # edge day is partial when its data begins (ends) more than an hour after (before) midnight.
    partial = np.zeros(len(table), bool)
    if len(ts):
        days = table["day"].to_numpy()
        if ts.min() - day.min() * MS_PER_DAY > MS_PER_HOUR:
            partial |= days == day.min()
        if (day.max() + 1) * MS_PER_DAY - ts.max() > MS_PER_HOUR:
            partial |= days == day.max()
    table["partial"] = partial
    table.insert(0, "date", pd.to_datetime(table.pop("day"), unit="D").dt.strftime("%Y-%m-%d"))
    return table.sort_values(["date", "event"], ignore_index=True)
