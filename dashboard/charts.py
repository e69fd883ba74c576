"""Chart pieces shared by the pages and the HTML report: one colour per series, legends and
titles that fit a phone, and the zoom on the flagged tail of the anomaly scores."""

from __future__ import annotations

import textwrap
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from core.build.results import pct
from dashboard.format import COUNT_D3, SCORE_D3, count

# One colour per series, on every page and in the HTML report (drawn without Streamlit's theme).
SERIES_COLORS: dict[str, str] = {
    # raw vs cleaned events (and the rankers trained on them)
    "raw": "#94a3b8",
    "cleaned": "#2563eb",
    "clean": "#2563eb",
    "clean − raw": "#7c3aed",
    # rankers
    "rule": "#f59e0b",
    "logreg": "#10b981",
    "hgb": "#db2777",
    "rf": "#0891b2",
    # detectors and the baseline
    "isolation_forest": "#2563eb",
    "robust_z": "#10b981",
    "hbos": "#db2777",
    "ecod": "#f59e0b",
    "volume_rule": "#64748b",
    # measures
    "precision": "#0f766e",
    "recall": "#c2410c",
    "users": "#2563eb",
    "events": "#7c3aed",
    "transactions": "#f59e0b",
    "buyers": "#10b981",
    # scores against the threshold, and ranked categories
    "below threshold": "#94a3b8",
    "at or above threshold": "#dc2626",
    "viewed": "#2563eb",
    "suggested (not viewed)": "#f59e0b",
}
OTHER_COLORS = ["#0ea5e9", "#a16207", "#4d7c0f", "#be185d", "#1e3a8a", "#525252"]
# Lines that can lie on each other (two measures both at 0) stay apart by their dash and point.
SERIES_DASH = [[1, 0], [6, 3], [2, 2], [8, 2, 2, 2]]
SERIES_SHAPES = ["circle", "square", "triangle-up", "diamond"]


def series_scale(domain: list[str]) -> alt.Scale:
    """The colour scale of these series: each known series in its own colour everywhere."""
    spare = iter(OTHER_COLORS * 4)
    return alt.Scale(domain=list(domain), range=[SERIES_COLORS.get(str(d)) or next(spare) for d in domain])


def legend(labels: list[str]) -> alt.Legend:
    """A legend above the chart that wraps into rows narrow enough for a phone (one row of five
    was cut at 390 px): as many columns of the longest label as fit in ~40 characters, at most 3."""
    longest = max((len(str(label)) for label in labels), default=1)
    columns = max(1, min(len(labels), 3, 40 // (longest + 4)))
    return alt.Legend(orient="top", columns=columns, labelLimit=0, symbolType="circle")


def title_lines(text: str, width: int = 42) -> list[str]:
    """A chart title broken into lines of at most `width` characters: Vega never wraps a title,
    so a long one was cut at phone width."""
    return textwrap.wrap(text, width) or [text]


def flagged_tail_chart(scores: np.ndarray, threshold: float, bins: int = 40) -> alt.LayerChart | None:
    """A second histogram zoomed on the highest scores: the flagged users and as many again
    just below the threshold, on a linear axis, so the tail is readable next to the full view.

    None when nothing is scored or nothing reaches the threshold.
    """
    finite = np.asarray(scores, np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size or not np.isfinite(threshold):
        return None
    above = int((finite >= threshold).sum())
    if above == 0:
        return None
    low = min(float(threshold), float(np.quantile(finite, max(0.0, 1 - 2 * above / finite.size))))
    # strictly above a lower edge below the threshold: a block of users tied at that edge would
    # otherwise set the panel's scale and flatten the tail it is there to show
    shown = finite[(finite > low) | (finite >= threshold)]
    counts, edges = np.histogram(shown, bins=bins)
    frame = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "users": counts})
    frame["side"] = np.where(frame["end"] > threshold, "at or above threshold", "below threshold")
    sides = ["below threshold", "at or above threshold"]
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("start:Q", bin="binned", title="Anomaly score", scale=alt.Scale(zero=False)),
            x2="end:Q",
            y=alt.Y("users:Q", title="Users", axis=alt.Axis(format=COUNT_D3)),
            color=alt.Color("side:N", title=None, scale=series_scale(sides), legend=None),
            tooltip=[
                alt.Tooltip("start:Q", format=SCORE_D3, title="from"),
                alt.Tooltip("end:Q", format=SCORE_D3, title="to"),
                alt.Tooltip("users:Q", format=COUNT_D3),
            ],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(color="black", strokeDash=[6, 3])
        .encode(x="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", format=SCORE_D3)])
    )
    title = title_lines(f"Zoom: the {count(shown.size)} highest scores ({pct(shown.size / finite.size)} of the scored)")
    return fit_width((bars + rule).properties(height=200, title=alt.TitleParams(title, anchor="start", fontSize=13)))


CHART_PADDING = {"left": 10, "right": 20, "top": 10, "bottom": 30}  # room for the axis titles


def fit_width(chart: Any) -> Any:
    """A chart as wide as its container, padding, legend and axis titles included (they were cut
    at phone width); its height stays the plot's own (fitting the height too squeezed the plot
    under a legend to a few pixels)."""
    return chart.properties(padding=CHART_PADDING, autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
