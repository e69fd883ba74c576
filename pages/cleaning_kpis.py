"""Cleaning KPIs: does removing abnormal users help ranking, and what does the detector cost?

Each section renders itself and returns the same content as report blocks, so the HTML report
is exactly this page. Add a section by writing one more function and listing it in SECTIONS.
"""

from datetime import datetime, timezone

import altair as alt
import pandas as pd
import streamlit as st

from core import artifacts as A
from core.anomaly.policy import TXN_WARNING_SHARE, cost_sentence, policy_label
from core.report import ReportBlock, html_report, json_tables, svg_renderer_available
from dashboard import best_test_row, count, entry_point_guard, missing, pct, read_json, table

entry_point_guard(__file__)  # run inside streamlit_app.py, also for a deep link on a fresh server

METRICS = ["coverage", "top1", "top3", "top1_all", "top3_all"]


def json_details(name: str) -> list[ReportBlock]:
    """Every table of a metrics JSON, whatever its layout, in a collapsed expander."""
    data = read_json(name)
    if data is None:
        return []
    blocks = []
    tables = json_tables(data)
    with st.expander(f"Everything in `{name}` ({len(tables)} tables)"):
        for caption, frame in tables:
            st.markdown(f"**{caption}**")
            st.dataframe(frame, hide_index=True)
            blocks += [ReportBlock("subheading", caption), ReportBlock("table", frame)]
    return blocks


def filtered(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """rows narrowed by a select box for each of split, population and average, when present."""
    present = [c for c in ("split", "population", "average") if c in rows.columns]
    for col, box in zip(present, st.columns(max(len(present), 1))):
        value = box.selectbox(col.capitalize(), list(dict.fromkeys(rows[col])), key=f"{key}_{col}")
        rows = rows[rows[col] == value]
    return rows


def estimates_chart(rows: pd.DataFrame, group: str, title: str) -> alt.LayerChart:
    """value per metric and group, with the ci_low..ci_high interval as an error bar."""
    base = alt.Chart(rows).encode(
        x=alt.X("metric:N", title=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset(f"{group}:N"),
        color=alt.Color(f"{group}:N"),
    )
    bars = base.mark_bar().encode(
        y=alt.Y("value:Q", title="Estimate", axis=alt.Axis(format="%"), stack=None),
        tooltip=[group, "metric", alt.Tooltip("value:Q", format=".2%"), alt.Tooltip("ci_low:Q", format=".2%"),
                 alt.Tooltip("ci_high:Q", format=".2%")] + [c for c in ("n_cases", "n_visitors", "population") if c in rows],
    )
    return (bars + base.mark_errorbar(color="black").encode(y=alt.Y("ci_low:Q", title="Estimate"), y2="ci_high:Q")).properties(height=300, title=title)


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
    served = best_test_row(rows.assign(split="test"), best)  # the served ranker's row, if listed
    default = rankers.index(served["ranker"]) if served is not None else 0
    ranker = st.selectbox("Ranker", rankers, index=default, key="ba_ranker")
    if best and best not in rankers:
        st.caption(f"The served model `{best}` is not run on raw vs cleaned events; `{rankers[default]}` is its closest ranker here.")
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
    title = "Same-population evaluation"
    st.header(title)
    blocks = [ReportBlock("heading", title)]
    rows = table(A.EVALUATION_JSON.replace(".json", ".csv"))
    if rows is None or read_json(A.EVALUATION_JSON) is None:
        missing(title, A.EVALUATION_JSON)
        return blocks + [ReportBlock("note", f"{A.EVALUATION_JSON} is not built yet.")]
    rows = filtered(rows, "honest")
    if {"metric", "value", "ci_low", "ci_high", "ranker"} <= set(rows.columns):
        chart = estimates_chart(rows, "ranker", "Rankers on the same test cases, with 95% bootstrap intervals")
        st.altair_chart(chart, width="stretch")
        blocks.append(ReportBlock("chart", chart))
    caption = (
        "Population: " + "; ".join(map(str, dict.fromkeys(rows.get("population", [])))) + ". Every ranker "
        "is scored on the same test cases, so these differences are like for like."
    )
    st.caption(caption)
    st.dataframe(rows, hide_index=True)
    return blocks + [ReportBlock("table", rows, caption)] + json_details(A.EVALUATION_JSON)


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
        return (line + marker).properties(height=260, title=title, padding={"bottom": 20})

    pr = lines(["precision", "recall"], f"Precision and recall against the {label_source}", "Precision / recall")
    removed = lines(["events_removed_share", "users_removed_share"], "What cleaning removes", "Share removed")
    st.altair_chart(pr, width="stretch")
    st.altair_chart(removed, width="stretch")
    note = (
        f"Labels: {label_source}. "
        + (
            "These are the generator's known abnormal visitors, so precision and recall are real."
            if label_source.startswith("ground truth")
            else "No ground truth exists for this data; the labels are the documented proxy rule "
            "(core.anomaly.proxy_labels), so the curve measures agreement with that rule."
        )
        + (f" The dashed line is the frozen operating point ({pct(op_share)})." if op_share else "")
    )
    st.caption(note)
    with st.expander("Audit table"):
        st.dataframe(rows, hide_index=True)
    return blocks + [ReportBlock("chart", pr), ReportBlock("chart", removed, note), ReportBlock("table", rows)]


def cleaning_cost() -> list[ReportBlock]:
    """What cleaning removes at every share and at the frozen point, for the served detector."""
    title = "What each share costs"
    st.header(title)
    blocks = [ReportBlock("heading", title)]
    rows = table(A.CLEANING_COST_CSV)
    if rows is None:
        missing("The cleaning cost table", A.CLEANING_COST_CSV)
        return blocks + [ReportBlock("note", f"{A.CLEANING_COST_CSV} is not built yet.")]
    op = read_json(A.OPERATING_POINT) or {}
    c = st.columns(2)
    names = list(dict.fromkeys(rows["detector"]))
    served = op.get("detector")
    name = c[0].selectbox("Detector", names, index=names.index(served) if served in names else 0, key="cost_detector")
    protect = c[1].toggle("Keep visitors who bought", value=bool(op.get("protect_buyers", True)), key="cost_protect")
    rows = rows[(rows["detector"] == name) & (rows["protect_buyers"] == protect)].reset_index(drop=True)
    frozen = rows[rows["point"] == "frozen"]
    sentence = cost_sentence(frozen.iloc[0]) if len(frozen) else ""
    if sentence:
        (st.warning if bool(frozen["txn_warning"].iloc[0]) else st.info)(sentence)
    grid = rows[rows["point"] != "frozen"]
    long = grid.melt(id_vars=["share"], var_name="removed",
                     value_vars=["users_removed_share", "events_removed_share", "transaction_removed_share",
                                 "buyers_removed_share"])
    chart = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("share:Q", title="Share of users flagged", axis=alt.Axis(format="%")),
            y=alt.Y("removed_value:Q", title="Share removed by cleaning", axis=alt.Axis(format="%")),
            color=alt.Color("removed:N", title=None),
            tooltip=["share:Q", "removed:N", alt.Tooltip("removed_value:Q", format=".2%")],
        )
        .transform_calculate(removed_value="datum.value")
        .properties(height=260, title=f"What cleaning removes ({name}, {policy_label(protect)})",
                    padding={"bottom": 20})
    )
    st.altair_chart(chart, width="stretch")
    caption = (
        f"Population: every visitor of the build's events, scored by {name}; policy: {policy_label(protect)}. "
        "A share's threshold is that quantile of these scores; \"frozen\" is the threshold fixed at the "
        f"operating point. Rows flagged with txn_warning: flagged users hold more than {TXN_WARNING_SHARE:.0%} "
        "of all transactions."
    )
    st.caption(caption)
    st.dataframe(rows, hide_index=True)
    return blocks + [ReportBlock("text", f"At the frozen operating point: {sentence}"),
                     ReportBlock("chart", chart), ReportBlock("table", rows, caption)]


def detector_quality() -> list[ReportBlock]:
    """Detector quality against known labels and baselines (PR-AUC, Jaccard, stability), when built."""
    title = "Detector quality"
    st.header(title)
    blocks = [ReportBlock("heading", title)]
    rows = table(A.DETECTOR_QUALITY_JSON.replace(".json", ".csv"))
    if rows is None or read_json(A.DETECTOR_QUALITY_JSON) is None:
        missing(title, A.DETECTOR_QUALITY_JSON)
        return blocks + [ReportBlock("note", f"{A.DETECTOR_QUALITY_JSON} is not built yet.")]
    measures = [c for c in ("precision", "recall", "pr_auc") if c in rows.columns]
    if "method" in rows.columns and measures:
        long = rows.melt(id_vars=["method"], value_vars=measures, var_name="measure")
        chart = (
            alt.Chart(long)
            .mark_bar()
            .encode(
                x=alt.X("measure:N", title=None, axis=alt.Axis(labelAngle=0)),
                xOffset="method:N",
                y=alt.Y("value:Q", title="Against the known labels", axis=alt.Axis(format="%")),
                color="method:N",
                tooltip=["method", "measure", alt.Tooltip("value:Q", format=".3f")],
            )
            .properties(height=280, title="Every detector against the volume rule at the same flagged share")
        )
        st.altair_chart(chart, width="stretch")
        blocks.append(ReportBlock("chart", chart))
    caption = "Populations: " + "; ".join(map(str, dict.fromkeys(rows.get("population", [])))) + "."
    st.caption(caption)
    st.dataframe(rows, hide_index=True)
    return blocks + [ReportBlock("table", rows, caption)] + json_details(A.DETECTOR_QUALITY_JSON)


SECTIONS = [before_after, same_population, audit, cleaning_cost, detector_quality]  # top to bottom

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
