"""Overview: what data the build used, the headline numbers of both tasks, daily activity."""

import altair as alt
import pandas as pd
import streamlit as st

from core.anomaly.policy import policy_label
from core.base import schema
from core.build.results import pct
from core.ranking.select import best_test_row
from dashboard.cache import read_json, table
from dashboard.format import COUNT_D3, count, score_text
from dashboard.glossary import glossary
from dashboard.guard import entry_point_guard
from dashboard.notices import bad_content, missing, unusable

entry_point_guard(__file__)  # run inside streamlit_app.py, also for a deep link on a fresh server

RANKERS = {  # the build's ranker names, as a reader would say them
    "rule": "count + recency rule",
    "recency": "recency (last viewed first)",
    "last_category": "last category only",
    "logreg": "logistic regression",
    "hgb": "gradient-boosted trees",
    "rf": "random forest",
}


def ranker_label(name: str | None) -> str:
    """'random forest (rf)'; a Markov variant (hgb_markov5) says so."""
    if not name:
        return "–"
    base = next((k for k in sorted(RANKERS, key=len, reverse=True) if name.startswith(k)), None)
    if base is None:
        return name
    extra = " with suggested categories" if "markov" in name.lower() else ""
    return f"{RANKERS[base]}{extra} ({name})"


st.title("E-commerce recommendation analytics")
st.caption(
    "Two tasks on e-commerce events in the RetailRocket format: rank the category a visitor views "
    "next (task 1) and find abnormal visitors, such as bots and scrapers, whose events distort the "
    "recommender's training data (task 2)."
)

glossary(
    "case",
    "candidate",
    "coverage",
    "top1",
    "top1_all",
    "rankers",
    "detectors",
    "share",
    "frozen threshold",
    "policy",
    "precision",
    "recall",
)  # the words below, explained

# --- The dataset ----------------------------------------------------------------------------
st.header("Dataset")
summary = read_json(schema.DATASET_SUMMARY)
if summary is None:
    missing("The dataset summary", schema.DATASET_SUMMARY)
elif why := bad_content(
    schema.DATASET_SUMMARY, summary, numbers=("events", "visitors", "items", "categories"), mappings=("event_mix",)
):
    unusable("The dataset summary", why)
else:
    cols = st.columns(4)
    cols[0].metric("Events", count(summary.get("events")))
    cols[1].metric("Visitors", count(summary.get("visitors")))
    cols[2].metric("Items", count(summary.get("items")))
    cols[3].metric("Categories", count(summary.get("categories")))
    mix = summary.get("event_mix") or {}
    st.markdown(
        f"**Event mix:** {pct(mix.get('view'))} views · {pct(mix.get('addtocart'))} add-to-cart · "
        f"{pct(mix.get('transaction'))} transactions  \n"
        f"**Dates:** {str(summary.get('date_min', '–'))[:10]} → {str(summary.get('date_max', '–'))[:10]} (UTC) · "
        f"**Source:** `{summary.get('source', '–')}`"
    )

# --- Headline KPIs --------------------------------------------------------------------------
st.header("Headline results")
left, right = st.columns(2)

with left:
    st.subheader("Task 1 · next-category ranking")
    metrics = read_json(schema.RANKING_METRICS_JSON)
    if metrics is None:
        missing("The ranking metrics", schema.RANKING_METRICS_JSON)
    else:
        best = metrics.get("best")
        r = best_test_row(pd.DataFrame(metrics.get("rankers", [])), best)
        if r is None:
            st.warning(f"No test row for the served ranker {best!r} in {schema.RANKING_METRICS_JSON}.")
        else:
            c = st.columns(3)
            c[0].metric(
                "Top-1, all test cases",
                pct(r["top1_all"]),
                help="Of all test cases, the share where the next category is ranked first; a case whose "
                "next category was not a candidate counts as a miss. This is what a visitor experiences.",
            )
            c[1].metric(
                "Top-3, all test cases",
                pct(r["top3_all"]),
                help="Of all test cases, the share with the next category in the first three.",
            )
            c[2].metric(
                "Coverage",
                pct(r["coverage"]),
                help="Share of test cases whose next category is among the candidates at all: no ranker "
                "can do better than this.",
            )
            candidates = str(r.get("candidate_set", "history"))
            pool = (
                "the categories in the history plus categories that often follow the last one"
                if "markov" in candidates.lower()
                else "the categories in the visitor's history"
            )
            st.caption(
                f"Served: {ranker_label(best)}, choosing among {pool}. Population: {count(r['n_cases'])} test "
                f"cases of visitors no model was fitted on. Only among the {count(r['n_covered'])} covered "
                f"cases (next category among the candidates): top-1 {pct(r['top1'])}, top-3 {pct(r['top3'])}."
            )
            why = (metrics.get("served_model") or {}).get("why")
            if why:
                st.markdown(f"**Why this ranker is served:** {why}.")
            rows = pd.DataFrame(metrics.get("rankers", []))
            baselines = rows[(rows["split"] == "test") & rows["ranker"].isin(["rule", "recency", "last_category"])]
            if "candidate_set" in baselines:
                baselines = baselines[baselines["candidate_set"] == "history"]
            if len(baselines):
                shown = pd.concat([r.to_frame().T, baselines]).drop_duplicates("ranker")
                st.dataframe(
                    pd.DataFrame(
                        {
                            "ranker": shown["ranker"].map(ranker_label),
                            "top-1, all cases": shown["top1_all"].map(pct),
                            "top-3, all cases": shown["top3_all"].map(pct),
                            "MRR@5, all cases": shown["mrr5"].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}")
                            if "mrr5" in shown
                            else "–",
                        }
                    ),
                    hide_index=True,
                )
                st.caption(f"The served ranker and the simple baselines on the same {count(r['n_cases'])} test cases.")

with right:
    st.subheader("Task 2 · abnormal users")
    op = read_json(schema.OPERATING_POINT)
    if op is None:
        missing("The detector's operating point", schema.OPERATING_POINT)
    elif why := bad_content(schema.OPERATING_POINT, op, required=("share", "n_users", "threshold")):
        unusable("The detector's operating point", why)
    else:
        # One population for the three figures: every user of the build at the frozen threshold,
        # with the served policy (the cleaning cost table); the audit has no buyer policy.
        cost = table(schema.CLEANING_COST_CSV)
        protect = bool(op.get("protect_buyers", True))
        frozen = None
        if cost is not None and len(cost):
            mine = cost[(cost["point"] == "frozen") & (cost["protect_buyers"] == protect)]
            mine = mine[mine["detector"] == op.get("detector")] if "detector" in mine else mine
            frozen = mine.iloc[0] if len(mine) else None
        c = st.columns(3)
        c[0].metric(
            "Flagged share",
            pct(frozen["users_removed_share"] if frozen is not None else op["share"]),
            help="Share of the build's users flagged at the frozen threshold, after the policy.",
        )
        c[1].metric(
            "Users flagged",
            count(frozen["users_removed"]) if frozen is not None else "–",
            help=f"Out of {count(op['n_users'])} users.",
        )
        c[2].metric(
            "Events removed",
            pct(frozen["events_removed_share"]) if frozen is not None else "–",
            help="Share of all events that belong to the flagged users (cleaning drops them).",
        )
        st.caption(
            f"Population: all {count(op['n_users'])} users of the build, scored by {op.get('detector', '–')} "
            f"at the frozen threshold {score_text(op['threshold'])} (the top {pct(op['share'])} of their scores); "
            f"policy: {policy_label(protect)}"
            + (f"; {count(frozen['events_removed'])} events removed" if frozen is not None else "")
            + "."
        )
        audit = table(schema.AUDIT_CSV)
        at_op = None
        if audit is not None and len(audit):
            at_op = audit.iloc[(audit["share"] - op["share"]).abs().argmin()]
        if at_op is not None and "label_source" in at_op:
            st.caption(
                f"Detector quality, from the audit (no buyer policy, so its population differs): flagging the "
                f"top {pct(at_op['share'])} flags {count(at_op['n_flagged'])} users, with precision "
                f"{pct(at_op['precision'])} and recall {pct(at_op['recall'])} against the {at_op['label_source']}."
            )

# --- Daily activity -------------------------------------------------------------------------
st.header("Daily activity")
EVENT_NAMES = {"view": "Views", "addtocart": "Add-to-cart", "transaction": "Transactions"}
daily = table(schema.DAILY_ACTIVITY)
if daily is None:
    missing("The daily activity table", schema.DAILY_ACTIVITY)
elif why := bad_content(schema.DAILY_ACTIVITY, daily, numbers=("events",), dates=("date",), columns=("event",)):
    unusable("The daily activity table", why)
else:
    daily["date"] = pd.to_datetime(daily["date"])
    partial = daily["partial"].astype(bool) if "partial" in daily else pd.Series(False, index=daily.index)
    cut_days = sorted(daily.loc[partial, "date"].dt.strftime("%Y-%m-%d").unique())
    daily = daily.loc[~partial]
    # One full-width chart per event type (a faceted chart cannot stretch to the page width).
    for event in ["view", "addtocart", "transaction"]:
        part = daily[daily["event"] == event]
        if part.empty:
            continue
        chart = (
            alt.Chart(part, title=alt.TitleParams(EVENT_NAMES.get(event, event), anchor="start", fontSize=13))
            .mark_line(color="#2563eb")
            .encode(
                x=alt.X("date:T", title=None, axis=alt.Axis(format="%d %b")),
                y=alt.Y(
                    "events:Q", title=None, scale=alt.Scale(zero=False), axis=alt.Axis(format=COUNT_D3, tickCount=3)
                ),
                tooltip=[
                    alt.Tooltip("date:T", title="Day", format="%Y-%m-%d"),
                    alt.Tooltip("events:Q", format=COUNT_D3),
                ],
            )
            .properties(height=140, padding={"left": 10, "right": 20, "top": 5, "bottom": 5})
        )
        st.altair_chart(chart, width="stretch")
    st.caption(
        "Events per day (UTC), one chart per event type, each on its own scale (not starting at zero)."
        + (
            f" Left out: {', '.join(cut_days)}, where the log starts or ends mid-day, so the "
            "day's count is a cut, not a change in traffic."
            if cut_days
            else ""
        )
    )
