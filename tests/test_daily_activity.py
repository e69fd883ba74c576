"""Daily activity: counts per UTC day and event type, with the log's cut edge days marked partial."""

from __future__ import annotations

import pandas as pd

from core.build.summary import daily_activity

DAY = 86_400_000
HOUR = 3_600_000


def _events(timestamps: list[int], kinds: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": timestamps, "event": kinds})


def test_counts_per_day_and_type():
    table = daily_activity(_events([0, 1, DAY + 5, DAY + 6, DAY + 7], ["view", "view", "view", "addtocart", "view"]))
    assert table[["date", "event", "events"]].values.tolist() == [
        ["1970-01-01", "view", 2],
        ["1970-01-02", "addtocart", 1],
        ["1970-01-02", "view", 2],
    ]


def test_a_log_that_starts_and_ends_mid_day_marks_both_edge_days():
    ts = [10 * HOUR, DAY + 12 * HOUR, 2 * DAY + 3 * HOUR]  # starts 10:00 on day 0, ends 03:00 on day 2
    table = daily_activity(_events(ts, ["view"] * 3))
    assert table["partial"].tolist() == [True, False, True]


def test_edge_days_covered_to_within_an_hour_are_whole():
    ts = [20 * 60_000, DAY + 5, 2 * DAY - 30 * 60_000]  # 00:20 on day 0 to 23:30 on day 1
    assert not daily_activity(_events(ts, ["view"] * 3))["partial"].any()
