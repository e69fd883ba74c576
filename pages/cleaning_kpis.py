"""Cleaning KPIs: does removing abnormal users help ranking, and what does the detector cost?

Each section renders itself and returns the same content as report blocks, so the HTML report
is exactly this page. Add a section by writing one more function and listing it in SECTIONS.
"""

from datetime import datetime, timezone

import altair as alt
import pandas as pd
import streamlit as st

from core import artifacts as A
from core.export import ReportBlock, html_report, json_tables, svg_renderer_available
from pages._shared import count, missing, pct, read_json, table

METRICS = ["coverage", "top1", "top3", "top1_all", "top3_all"]


def show_json_tables(name: str, title: str) -> list[ReportBlock]:
    """Every table of a metrics JSON, whatever its layout; 'not built yet' when absent."""
    blocks = [ReportBlock("heading", title)]
    data = read_json(name)
    if data is None:
        missing(title, name)
        return blocks + [ReportBlock("note", f"{name} is not built yet.")]
    for caption, frame in json_tables(data):
        st.markdown(f"**{caption}**")
        st.dataframe(frame, hide_index=True)
        blocks += [ReportBlock("subheading", caption), ReportBlock("table", frame)]
    return blocks


def before_after() -> list[ReportBlock]:
    """Ranking metrics on the raw and the cleaned events, as grouped bars with case counts."""
    st.header("Ranking before and after cleaning")
    blocks = [ReportBlock("heading", "Ranking before and after cleaning")]
    rows = table(A.BEFORE_AFTER_CSV)
    if rows is None:
        missing("The before/after table", A.BEFORE_AFTER_CSV)
        return blocks + [ReportBlock("note", f"{A.BEFORE_AFTER_CSV} is not built yet.")]
    rankers = list(dict.fromkeys(rows["ranker"]))
    best = (read_json(A.RANKING_METRICS_JSON) or {}).get("best")
    ranker = st.selectbox("Ranker", rankers, index=rankers.index(best) if best in rankers else 0, key="ba_ranker")
    long = rows[rows["ranker"] == ranker].melt(
        id_vars=["run", "population", "ranker", "n_cases", "n_covered"], value_vars=METRICS, var_name="metric"
    )
    chart = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("metric:N", sort=METRICS, title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("run:N", sort=["raw", "cleaned"]),
            y=alt.Y("value:Q", title="Share of test cases", axis=alt.Axis(format="%")),
            color=alt.Color("run:N", sort=["raw", "cleaned"], scale=alt.Scale(range=["#94a3b8", "#2563eb"])),
            tooltip=["run", "metric", alt.Tooltip("value:Q", format=".2%"), "n_cases", "n_covered", "population"],
        )
        .properties(height=300, title=f"{ranker}: raw vs cleaned")
    )
    st.altair_chart(chart, width="stretch")
    populations = "; ".join(
        f"**{r.run}**: {r.population} ({count(r.n_cases)} test cases, {count(r.n_covered)} covered)"
        for r in rows[rows["ranker"] == ranker].itertuples()
    )
    caption = (
        "Each bar is measured on its own test set. " + populations.replace("**", "") + ". The raw and "
        "cleaned test sets are different populations (cleaning removes the flagged users' cases), "
        "so the difference is not a same-population gain; see the same-population table below."
    )
    st.caption(f"Each bar is measured on its own test set. {populations}.")
    st.warning(
        "Raw and cleaned bars come from **different test populations**: cleaning also removes the "
        "abnormal users' test cases. Read the gap as 'the task got easier', not as a model gain.",
        icon=":material/balance:",
    )
    with st.expander("All rankers"):
        st.dataframe(rows, hide_index=True)
    return blocks + [ReportBlock("chart", chart, caption), ReportBlock("table", rows)]


def same_population() -> list[ReportBlock]:
    """The honest evaluation (same population, bootstrap CIs, temporal split), when built."""
    st.header("Same-population evaluation")
    return show_json_tables(A.EVALUATION_JSON, "Same-population evaluation")


def audit() -> list[ReportBlock]:
    """Precision/recall and what cleaning removes, against the flagged share."""
    st.header("Detector operating points")
    blocks = [ReportBlock("heading", "Detector operating points")]
    rows = table(A.AUDIT_CSV)
    if rows is None:
        missing("The detector audit", A.AUDIT_CSV)
        return blocks + [ReportBlock("note", f"{A.AUDIT_CSV} is not built yet.")]
    op_share = (read_json(A.OPERATING_POINT) or {}).get("share")
    label_source = str(rows["label_source"].iloc[0]) if "label_source" in rows else "unknown labels"
    marker = alt.Chart(pd.DataFrame({"share": [op_share] if op_share else []})).mark_rule(
        color="black", strokeDash=[6, 3]
    ).encode(x="share:Q", tooltip=[alt.Tooltip("share:Q", format=".1%", title="operating point")])

    def lines(columns: list[str], title: str, y_title: str) -> alt.LayerChart:
        long = rows.melt(id_vars=["share"], value_vars=columns, var_name="measure")
        line = (
            alt.Chart(long)
            .mark_line(point=True)
            .encode(
                x=alt.X("share:Q", title="Share of users flagged", axis=alt.Axis(format="%")),
                y=alt.Y("value:Q", title=y_title, axis=alt.Axis(format="%")),
                color=alt.Color("measure:N", title=None),
                tooltip=["share:Q", "measure:N", alt.Tooltip("value:Q", format=".2%")],
            )
        )
        return (line + marker).properties(height=260, title=title)

    pr = lines(["precision", "recall"], f"Precision and recall against the {label_source}", "Precision / recall")
    removed = lines(["events_removed_share", "users_removed_share"], "What cleaning removes", "Share removed")
    left, right = st.columns(2)
    left.altair_chart(pr, width="stretch")
    right.altair_chart(removed, width="stretch")
    note = (
        f"Labels: {label_source}. "
        + (
            "These are the generator's known abnormal visitors, so precision and recall are real."
            if label_source == "ground truth"
            else "No ground truth exists for this data; the labels are the documented proxy rule "
            "(core.anomaly.proxy_labels), so the curve measures agreement with that rule."
        )
        + (f" The dashed line is the frozen operating point ({pct(op_share)})." if op_share else "")
    )
    st.caption(note)
    with st.expander("Audit table"):
        st.dataframe(rows, hide_index=True)
    return blocks + [ReportBlock("chart", pr), ReportBlock("chart", removed, note), ReportBlock("table", rows)]


def detector_quality() -> list[ReportBlock]:
    """Detector quality against known labels and baselines (PR-AUC, Jaccard, stability), when built."""
    st.header("Detector quality")
    return show_json_tables(A.DETECTOR_QUALITY_JSON, "Detector quality")


SECTIONS = [before_after, same_population, audit, detector_quality]

st.title("Cleaning KPIs")
st.caption("What removing the flagged users' events does to the ranking task, and what it costs.")
report_slot = st.container()
blocks: list[ReportBlock] = []
for section in SECTIONS:
    blocks += section()

report = html_report(
    f"Cleaning KPIs · data: {(read_json(A.DATASET_SUMMARY) or {}).get('source', 'not built')} · "
    f"exported {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
    blocks,
)
with report_slot:
    st.download_button(
        "Download this page as an HTML report",
        report,
        "cleaning_kpis_report.html",
        "text/html",
        key="dl_report",
        on_click="ignore",
        icon=":material/download:",
        help="Charts inline as SVG, tables as HTML: one file, no internet needed."
        if svg_renderer_available()
        else "Tables as HTML; charts drawn by vega-embed from a CDN (needs internet).",
    )
