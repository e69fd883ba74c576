"""Cleaning KPIs: does removing abnormal users help ranking, and what does the detector cost?

Each section renders itself and returns the same content as report blocks, so the HTML report
is exactly this page. Add a section by writing one more function and listing it in SECTIONS.
"""

from datetime import UTC, datetime

import altair as alt
import pandas as pd
import streamlit as st

from core.anomaly.policy import TXN_WARNING_SHARE, cost_sentence, policy_label
from core.base import schema
from core.base.schema import METRIC_ORDER
from core.build.results import pct, quality_meaning
from core.ranking.select import best_test_row
from core.userfiles.report import ReportBlock, html_report, svg_renderer_available
from dashboard.cache import read_json, table
from dashboard.charts import CHART_PADDING, SERIES_DASH, SERIES_SHAPES, legend, series_scale, title_lines
from dashboard.format import COUNT_D3, PCT_D3, count, formatted, lying_on_each_other
from dashboard.glossary import glossary
from dashboard.guard import entry_point_guard
from dashboard.notices import missing

entry_point_guard(__file__)  # run inside streamlit_app.py, also for a deep link on a fresh server

PADDING = CHART_PADDING
SPLITS = {"group": "by visitor", "temporal": "by time"}
NAMES = {
    "precision": "precision",
    "recall": "recall",
    "events_removed_share": "events",
    "users_removed_share": "users",
    "transaction_removed_share": "transactions",
    "buyers_removed_share": "buyers",
}


def nearest(rows: pd.DataFrame, share: float | None) -> pd.Series | None:
    """The row of `rows` whose share is closest to `share` (None without a share)."""
    if share is None or rows.empty:
        return None
    return rows.iloc[int((rows["share"] - share).abs().to_numpy().argmin())]


def fitted(chart):
    """A chart as wide as its container, padding and axis titles included (they were cut off,
    and a first render drew some charts at half width). Only the width is fitted: its height is
    the plot's own (fitting the height too squeezed the plot under the title and legend to 60 px)."""
    return chart.properties(padding=PADDING, autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


def series_lines(frame: pd.DataFrame, field: str, order: list[str], x: alt.X, y: alt.Y, tooltip: list) -> alt.Chart:
    """One line per series, each in its colour, dash and point shape, so lines that lie on each
    other (two measures both at 0) can still be told apart."""
    return (
        alt.Chart(frame)
        .mark_line(point=alt.OverlayMarkDef(size=45, filled=True), strokeWidth=2)
        .encode(
            x=x,
            y=y,
            color=alt.Color(f"{field}:N", title=None, sort=order, legend=legend(order), scale=series_scale(order)),
            strokeDash=alt.StrokeDash(
                f"{field}:N", sort=order, legend=None, scale=alt.Scale(domain=order, range=SERIES_DASH[: len(order)])
            ),
            shape=alt.Shape(
                f"{field}:N", sort=order, legend=None, scale=alt.Scale(domain=order, range=SERIES_SHAPES[: len(order)])
            ),
            tooltip=tooltip,
        )
    )


def split_name(split: object) -> str:
    """A split as the selectbox names it."""
    return str(SPLITS.get(str(split), split))


def filtered(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """rows narrowed by a select box for each of split, population and average, when present."""
    present = [c for c in ("split", "population", "average") if c in rows.columns]
    for col, box in zip(present, st.columns(max(len(present), 1))):
        label = {"split": "Test split", "population": "Test visitors", "average": "Average"}[col]
        value = box.selectbox(
            label,
            list(dict.fromkeys(rows[col])),
            key=f"{key}_{col}",
            format_func=split_name if col == "split" else str,
        )
        rows = rows[rows[col] == value]
    return rows


def estimates_chart(rows: pd.DataFrame, group: str, title: str, difference: bool = False) -> alt.LayerChart:
    """value per metric and group, with the 95% interval as an error bar; a difference gets its
    own axis in percentage points around zero (on the 0–100% axis it was an empty bar)."""
    groups = list(dict.fromkeys(rows[group]))
    base = alt.Chart(rows).encode(
        x=alt.X("metric:N", title=None, sort=list(METRIC_ORDER), axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset(f"{group}:N", sort=groups),
        color=alt.Color(
            f"{group}:N",
            sort=groups,
            title=None,
            legend=legend(groups),
            scale=series_scale(groups),
        ),
    )
    y_title, fmt = ("Difference, percentage points", "+.1%") if difference else ("Estimate", "%")
    tooltip = [
        alt.Tooltip(f"{group}:N"),
        alt.Tooltip("metric:N"),
        alt.Tooltip("value:Q", format=PCT_D3),
        alt.Tooltip("ci_low:Q", format=PCT_D3, title="95% CI low"),
        alt.Tooltip("ci_high:Q", format=PCT_D3, title="95% CI high"),
    ]
    tooltip += [
        alt.Tooltip(f"{c}:Q", format=COUNT_D3, title=DISPLAY.get(c, c)) for c in ("n_cases", "n_visitors") if c in rows
    ]
    bars = base.mark_bar().encode(
        y=alt.Y("value:Q", title=y_title, axis=alt.Axis(format=fmt), stack=None), tooltip=tooltip
    )
    whiskers = base.mark_errorbar(color="#111827", thickness=2, ticks=alt.TickConfig(size=8, thickness=2))
    # one dark colour, not the group's: a whisker inside its own bar's colour was invisible
    layers = bars + whiskers.encode(y=alt.Y("ci_low:Q", title=y_title), y2="ci_high:Q", color=alt.value("#111827"))
    if difference:
        layers += alt.Chart(pd.DataFrame({"zero": [0]})).mark_rule(color="#1f2430").encode(y="zero:Q")
    return fitted(layers.properties(height=260 if difference else 300, title=title_lines(title)))


DISPLAY = {"n_cases": "cases", "n_visitors": "visitors"}


def before_after() -> list[ReportBlock]:
    """Ranking metrics on the raw and the cleaned events, as grouped bars with case counts."""
    st.header("Ranking before and after cleaning")
    blocks = [ReportBlock("heading", "Ranking before and after cleaning")]
    rows = table(schema.BEFORE_AFTER_CSV)
    if rows is None:
        missing("The before/after table", schema.BEFORE_AFTER_CSV)
        return blocks + [ReportBlock("note", f"{schema.BEFORE_AFTER_CSV} is not built yet.")]
    rankers = list(dict.fromkeys(rows["ranker"]))
    ranking_json = read_json(schema.RANKING_METRICS_JSON) or {}
    best = ranking_json.get("best")
    why = (ranking_json.get("served_model") or {}).get("why")
    if best and why:
        st.caption(f"Served ranker: {best}. {why}.")
    served = best_test_row(rows.assign(split="test"), best)  # the served ranker's row, if listed
    default = rankers.index(served["ranker"]) if served is not None else 0
    ranker = st.selectbox("Ranker", rankers, index=default, key="ba_ranker")
    if best and best not in rankers:
        st.caption(
            f"The served model `{best}` is not run on raw vs cleaned events; `{rankers[default]}` is its closest ranker here."
        )
    long = rows[rows["ranker"] == ranker].melt(
        id_vars=["run", "population", "ranker", "n_cases", "n_covered"],
        value_vars=list(METRIC_ORDER),
        var_name="metric",
    )
    chart = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("metric:N", sort=list(METRIC_ORDER), title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("run:N", sort=["raw", "cleaned"]),
            y=alt.Y("value:Q", title="Share of test cases", axis=alt.Axis(format="%")),
            color=alt.Color(
                "run:N",
                sort=["raw", "cleaned"],
                title=None,
                legend=legend(["raw", "cleaned"]),
                scale=series_scale(["raw", "cleaned"]),
            ),
            tooltip=[
                "run",
                "metric",
                alt.Tooltip("value:Q", format=PCT_D3),
                alt.Tooltip("n_cases:Q", format=COUNT_D3, title="cases"),
                alt.Tooltip("n_covered:Q", format=COUNT_D3, title="covered cases"),
                "population",
            ],
        )
        .properties(height=300, title=title_lines(f"{ranker}: raw vs cleaned"))
    )
    chart = fitted(chart)
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
        st.dataframe(formatted(rows), hide_index=True)
    by_run = rows[rows["ranker"] == ranker].set_index("run")["top1_all"]
    finding = (
        f"Ranking ({ranker}): top-1 over all test cases is {pct(by_run.get('raw'))} on the raw events and "
        f"{pct(by_run.get('cleaned'))} on the cleaned ones, but on different test visitors, so this is not a model gain."
    )
    return blocks + [
        ReportBlock("summary", finding),
        ReportBlock("chart", chart, caption),
        ReportBlock("table", formatted(rows)),
    ]


def same_population() -> list[ReportBlock]:
    """The honest evaluation (same population, bootstrap CIs, temporal split), when built."""
    title = "Same-population evaluation"
    st.header(title)
    blocks = [ReportBlock("heading", title)]
    rows = table(schema.EVALUATION_CSV)
    if rows is None or read_json(schema.EVALUATION_JSON) is None:
        missing(title, schema.EVALUATION_JSON)
        return blocks + [ReportBlock("note", f"{schema.EVALUATION_JSON} is not built yet.")]
    rows = filtered(rows, "honest")
    population = "; ".join(map(str, dict.fromkeys(rows.get("population", []))))
    if {"metric", "value", "ci_low", "ci_high", "ranker"} <= set(rows.columns):
        is_diff = rows["ranker"].astype(str).str.contains(" - ")
        chart = estimates_chart(
            rows[~is_diff], "ranker", "Rankers on the same test cases, with 95% bootstrap intervals"
        )
        st.altair_chart(chart, width="stretch")
        blocks.append(ReportBlock("chart", chart))
        if is_diff.any():
            diff = rows[is_diff].assign(ranker=lambda d: d["ranker"].str.replace(" - ", " − "))
            diff_chart = estimates_chart(
                diff, "ranker", "Differences on the same test cases (clean − raw, raw − recency)", difference=True
            )
            st.altair_chart(diff_chart, width="stretch")
            st.caption(
                "clean − raw below zero: the model trained on cleaned events does worse on the same test "
                "cases. raw − recency: what the learned model gains over the recency baseline (the most "
                "recently viewed category first). An interval that crosses zero means no measurable difference."
            )
            blocks.append(ReportBlock("chart", diff_chart))
            top1 = diff[(diff["metric"] == "top1_all") & (diff["ranker"] == "clean − raw")]
            if len(top1):
                r = top1.iloc[0]
                blocks.insert(
                    0,
                    ReportBlock(
                        "summary",
                        (
                            f"Same test cases ({population}): training on cleaned events changes top-1 over all cases by "
                            f"{100 * r['value']:+.1f} percentage points (95% interval {100 * r['ci_low']:+.1f} to "
                            f"{100 * r['ci_high']:+.1f})."
                        ),
                    ),
                )
    caption = (
        f"Population: {population}. Every ranker is scored on the same test cases, so these differences "
        "are like for like. Split by visitor: test visitors never seen in training; by time: the last days "
        "of the log."
    )
    st.caption(caption)
    shown = formatted(rows.drop(columns=[c for c in ("split", "population", "average") if c in rows]))
    st.dataframe(shown, hide_index=True)
    return blocks + [ReportBlock("table", shown, caption)]


def audit() -> list[ReportBlock]:
    """Precision/recall and what cleaning removes, against the flagged share."""
    st.header("Detector operating points")
    blocks = [ReportBlock("heading", "Detector operating points")]
    rows = table(schema.AUDIT_CSV)
    if rows is None:
        missing("The detector audit", schema.AUDIT_CSV)
        return blocks + [ReportBlock("note", f"{schema.AUDIT_CSV} is not built yet.")]
    op_share = (read_json(schema.OPERATING_POINT) or {}).get("share")
    label_source = str(rows["label_source"].iloc[0]) if "label_source" in rows else "unknown labels"
    marker = (
        alt.Chart(pd.DataFrame({"share": [op_share] if op_share else []}))
        .mark_rule(color="black", strokeDash=[6, 3])
        .encode(x="share:Q", tooltip=[alt.Tooltip("share:Q", format=".1%", title="operating point")])
    )

    detector = str(rows["detector"].iloc[0]) if "detector" in rows else "the served detector"
    long = rows.melt(id_vars=["share"], value_vars=["precision", "recall"], var_name="measure")
    line = series_lines(
        long,
        "measure",
        ["precision", "recall"],
        alt.X("share:Q", title="Share of users flagged", axis=alt.Axis(format="%")),
        alt.Y("value:Q", title="Precision / recall", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        [alt.Tooltip("share:Q", format=PCT_D3), "measure:N", alt.Tooltip("value:Q", format=PCT_D3)],
    )
    title = f"Precision and recall of {detector} against the {label_source} (no buyer policy)"
    pr = fitted((line + marker).properties(height=280, title=title_lines(title)))
    st.altair_chart(pr, width="stretch")
    synthetic = label_source.startswith("ground truth")
    note = (
        f"Population: every user of the build, scored by {detector}, with no buyer policy (a share flags "
        f"exactly its top scores). Labels: {label_source}. "
        + (
            "These are the abnormal visitors the demo generator planted in synthetic data, so the curves "
            "measure how well the detector finds those planted bots, not real-world precision and recall."
            if synthetic
            else "No ground truth exists for this data; the labels are the documented proxy rule "
            "(a documented rule on event volume and pace), so the curve measures agreement with that rule."
        )
        + (f" The dashed line is the frozen operating point ({pct(op_share)})." if op_share else "")
        + " What cleaning removes at each share, with or without the buyer policy, is in the next section."
    )
    st.caption(note)
    with st.expander("Audit table"):
        st.dataframe(formatted(rows), hide_index=True)
    at_op = nearest(rows, op_share)
    if at_op is not None:
        blocks.append(
            ReportBlock(
                "summary",
                (
                    f"Detector {detector} at the operating point, no buyer policy ({pct(op_share)} of users "
                    f"flagged, {count(at_op.get('n_flagged'))} users): precision {pct(at_op['precision'])}, recall "
                    f"{pct(at_op['recall'])} against the {label_source}; cleaning removes "
                    f"{pct(at_op['events_removed_share'])} of the events."
                ),
            )
        )
    return blocks + [ReportBlock("chart", pr, note), ReportBlock("table", formatted(rows))]


def cleaning_cost() -> list[ReportBlock]:
    """What cleaning removes at every share and at the frozen point, for the served detector."""
    title = "What each share costs"
    st.header(title)
    blocks = [ReportBlock("heading", title)]
    rows = table(schema.CLEANING_COST_CSV)
    if rows is None:
        missing("The cleaning cost table", schema.CLEANING_COST_CSV)
        return blocks + [ReportBlock("note", f"{schema.CLEANING_COST_CSV} is not built yet.")]
    op = read_json(schema.OPERATING_POINT) or {}
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
    measures = ["users_removed_share", "events_removed_share", "transaction_removed_share", "buyers_removed_share"]
    long = grid.melt(id_vars=["share"], var_name="removed", value_vars=measures)
    long["removed"] = long["removed"].map(NAMES)
    chart = series_lines(
        long,
        "removed",
        [NAMES[m] for m in measures],
        alt.X("share:Q", title="Share of users flagged", axis=alt.Axis(format="%")),
        alt.Y("value:Q", title="Share removed by cleaning", axis=alt.Axis(format="%")),
        [alt.Tooltip("share:Q", format=PCT_D3), "removed:N", alt.Tooltip("value:Q", format=PCT_D3)],
    )
    title = f"What cleaning removes ({name}, {policy_label(protect)})"
    chart = fitted(chart.properties(height=280, title=title_lines(title)))
    st.altair_chart(chart, width="stretch")
    caption = (
        f"Population: every visitor of the build's events, scored by {name}; policy: {policy_label(protect)}. "
        'A share\'s threshold is that quantile of these scores; "frozen" is the threshold fixed at the '
        f"operating point. “transaction warning”: flagged users hold more than {TXN_WARNING_SHARE:.0%} "
        "of all transactions. " + lying_on_each_other(long, "removed")
    )
    st.caption(caption)
    st.dataframe(formatted(rows), hide_index=True)
    return blocks + [
        ReportBlock("summary", f"Cost at the frozen operating point ({name}, {policy_label(protect)}): {sentence}"),
        ReportBlock("chart", chart),
        ReportBlock("table", formatted(rows), caption),
    ]


def detector_quality() -> list[ReportBlock]:
    """Detector quality against known labels and baselines (PR-AUC, Jaccard, stability), when built."""
    title = "Detector quality"
    st.header(title)
    blocks = [ReportBlock("heading", title)]
    rows = table(schema.DETECTOR_QUALITY_CSV)
    if rows is None or read_json(schema.DETECTOR_QUALITY_JSON) is None:
        missing(title, schema.DETECTOR_QUALITY_JSON)
        return blocks + [ReportBlock("note", f"{schema.DETECTOR_QUALITY_JSON} is not built yet.")]
    served = (read_json(schema.OPERATING_POINT) or {}).get("detector")
    methods = list(dict.fromkeys(rows["method"])) if "method" in rows else []
    methods = sorted(methods, key=lambda m: (m != served, m == "volume_rule"))  # served first, baseline last
    measures = [c for c in ("pr_auc", "precision", "recall") if c in rows.columns]
    if methods and measures:
        long = rows.melt(id_vars=["method"], value_vars=measures, var_name="measure").replace(
            {"measure": {"pr_auc": "PR-AUC"}}
        )
        chart = (
            alt.Chart(long)
            .mark_bar()
            .encode(
                x=alt.X("measure:N", title=None, sort=["PR-AUC", "precision", "recall"], axis=alt.Axis(labelAngle=0)),
                xOffset=alt.XOffset("method:N", sort=methods),
                y=alt.Y("value:Q", title="Against the known labels", axis=alt.Axis(format="%")),
                color=alt.Color(
                    "method:N",
                    title=None,
                    sort=methods,
                    legend=legend(methods),
                    scale=series_scale(methods),
                ),
                tooltip=["method", "measure", alt.Tooltip("value:Q", format=PCT_D3)],
            )
            .properties(
                height=280, title=title_lines("Every detector and the volume rule, each flagging the same share")
            )
        )
        chart = fitted(chart)
        st.altair_chart(chart, width="stretch")
        blocks.append(ReportBlock("chart", chart))
    meaning = (
        quality_meaning(rows.set_index("method"), served)
        if served is not None and "method" in rows and served in set(rows["method"])
        else ""
    )
    if meaning:
        st.info(meaning, icon=":material/balance:")
        blocks += [ReportBlock("summary", meaning), ReportBlock("text", meaning)]
    caption = (
        "Population: " + "; ".join(map(str, dict.fromkeys(rows.get("population", [])))) + ". "
        "Volume rule: flag the visitors with the most events, the simple baseline."
    )
    st.caption(caption)
    shown = formatted(rows.drop(columns=[c for c in ("description", "population", "share") if c in rows]))
    st.dataframe(shown, hide_index=True)
    return blocks + [ReportBlock("table", shown, caption)]


SECTIONS = [before_after, same_population, audit, cleaning_cost, detector_quality]  # top to bottom
# The page shows the sections in two tabs (the page was very long); the report keeps them in order.
TABS = {"Ranking and cleaning": SECTIONS[:2], "Detector and its cost": SECTIONS[2:]}

st.title("Cleaning KPIs")
st.caption("What removing the flagged users' events does to the ranking task, and what it costs.")
glossary(
    "case",
    "coverage",
    "top1",
    "top1_all",
    "rankers",
    "raw / cleaned",
    "95% interval",
    "per case / per visitor",
    "detectors",
    "share",
    "frozen threshold",
    "operating point",
    "policy",
    "precision",
    "recall",
    "PR-AUC",
    "Jaccard",
)
report_slot = st.container()
blocks: list[ReportBlock] = []
for tab, sections in zip(st.tabs(list(TABS)), TABS.values()):
    with tab:
        for section in sections:
            blocks += section()

report = html_report(
    f"Cleaning KPIs · data: {(read_json(schema.DATASET_SUMMARY) or {}).get('source', 'not built')} · "
    f"exported {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
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
