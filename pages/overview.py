"""Overview: what data the build used, the headline numbers of both tasks, daily activity."""

import altair as alt
import pandas as pd
import streamlit as st

from core import artifacts as A
from dashboard import best_test_row, count, entry_point_guard, missing, pct, read_json, table

entry_point_guard(__file__)  # run inside streamlit_app.py, also for a deep link on a fresh server

st.title("E-commerce recommendation analytics")
st.caption(
    "Two tasks on e-commerce events in the RetailRocket format: rank the category a visitor views "
    "next (task 1) and find abnormal visitors, such as bots and scrapers, whose events distort the "
    "recommender's training data (task 2)."
)

# --- The dataset ----------------------------------------------------------------------------
st.header("Dataset")
summary = read_json(A.DATASET_SUMMARY)
if summary is None:
    missing("The dataset summary", A.DATASET_SUMMARY)
else:
    cols = st.columns(4)
    cols[0].metric("Events", count(summary.get("events")))
    cols[1].metric("Visitors", count(summary.get("visitors")))
    cols[2].metric("Items", count(summary.get("items")))
    cols[3].metric("Categories", count(summary.get("categories")))
    mix = summary.get("event_mix") or {}
    st.markdown(
        f"**Event mix:** {pct(mix.get('view'))} views · {pct(mix.get('addtocart'), 2)} add-to-cart · "
        f"{pct(mix.get('transaction'), 2)} transactions  \n"
        f"**Dates:** {str(summary.get('date_min', '–'))[:10]} → {str(summary.get('date_max', '–'))[:10]} (UTC) · "
        f"**Source:** `{summary.get('source', '–')}`"
    )

# --- Headline KPIs --------------------------------------------------------------------------
st.header("Headline results")
left, right = st.columns(2)

with left:
    st.subheader("Task 1 · next-category ranking")
    metrics = read_json(A.RANKING_METRICS_JSON)
    if metrics is None:
        missing("The ranking metrics", A.RANKING_METRICS_JSON)
    else:
        best = metrics.get("best")
        r = best_test_row(pd.DataFrame(metrics.get("rankers", [])), best)
        if r is None:
            st.warning(f"No test row for the served ranker {best!r} in {A.RANKING_METRICS_JSON}.")
        else:
            c = st.columns(3)
            c[0].metric("Top-1 (covered)", pct(r["top1"]), help="Share of covered test cases whose next category is ranked first.")
            c[1].metric("Top-3 (covered)", pct(r["top3"]), help="Share of covered test cases with the next category in the first three.")
            c[2].metric("Coverage", pct(r["coverage"]), help="Share of test cases whose next category is among the candidates.")
            candidates = f" on {r['candidate_set']} candidates" if "candidate_set" in r else ""
            st.caption(
                f"Served ranker **{best}**{candidates} (chosen on validation), measured on {count(r['n_cases'])} test "
                f"cases of which {count(r['n_covered'])} are covered. Over all cases: top-1 "
                f"{pct(r['top1_all'])}, top-3 {pct(r['top3_all'])}. Population: {metrics.get('population', '–')}."
            )

with right:
    st.subheader("Task 2 · abnormal users")
    op = read_json(A.OPERATING_POINT)
    if op is None:
        missing("The detector's operating point", A.OPERATING_POINT)
    else:
        audit = table(A.AUDIT_CSV)
        at_op = None
        if audit is not None and len(audit):
            at_op = audit.iloc[(audit["share"] - op["share"]).abs().argmin()]
        flagged = round(op["share"] * op["n_users"])
        scored = table(A.SCORED_USERS)
        if scored is not None and "is_anomaly" in scored:
            flagged = int(scored["is_anomaly"].sum())
        c = st.columns(3)
        c[0].metric("Flagged share", pct(op["share"]), help="The frozen operating point: this share of training users scores at or above the threshold.")
        c[1].metric("Users flagged", count(flagged), help=f"Out of {op['n_users']:,} users.")
        c[2].metric(
            "Events removed",
            pct(at_op["events_removed_share"]) if at_op is not None else "–",
            help="Share of all events that belong to flagged users (cleaning drops them).",
        )
        st.caption(
            f"Threshold {op['threshold']:.4f} on {op['n_users']:,} users"
            + (f"; {count(at_op['events_removed'])} events removed" if at_op is not None else "")
            + (f"; precision {pct(at_op['precision'])}, recall {pct(at_op['recall'])} against the "
               f"{at_op['label_source']}" if at_op is not None and "label_source" in at_op else "")
            + "."
        )

# --- Daily activity -------------------------------------------------------------------------
st.header("Daily activity")
daily = table(A.DAILY_ACTIVITY)
if daily is None:
    missing("The daily activity table", A.DAILY_ACTIVITY)
else:
    daily["date"] = pd.to_datetime(daily["date"])
    partial = daily["partial"].astype(bool) if "partial" in daily else pd.Series(False, index=daily.index)
    cut_days = sorted(daily.loc[partial, "date"].dt.strftime("%Y-%m-%d").unique())
    daily = daily.loc[~partial]
    chart = (
        alt.Chart(daily)
        .mark_line()
        .encode(
            x=alt.X("date:T", title="Day (UTC)"),
            y=alt.Y("events:Q", title=None),
            color=alt.Color("event:N", legend=None, sort=["view", "addtocart", "transaction"]),
            tooltip=["date:T", "event:N", alt.Tooltip("events:Q", format=",")],
        )
        .properties(height=110, width=780)
        .facet(row=alt.Row("event:N", title=None, sort=["view", "addtocart", "transaction"]))
        .resolve_scale(y="independent")
    )
    st.altair_chart(chart, width="stretch")
    st.caption(
        "Events per day, one panel per event type, each on its own scale."
        + (f" Left out: {', '.join(cut_days)}, where the log starts or ends mid-day, so the "
           "day's count is a cut, not a change in traffic." if cut_days else "")
    )
