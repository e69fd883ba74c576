"""Overview: what data the build used, the headline numbers of both tasks, daily activity."""

import altair as alt
import pandas as pd
import streamlit as st

from core import artifacts as A
from dashboard import (
    bad_content,
    best_test_row,
    count,
    entry_point_guard,
    glossary,
    missing,
    pct,
    read_json,
    table,
    unusable,
)

entry_point_guard(__file__)  # run inside streamlit_app.py, also for a deep link on a fresh server

RANKERS = {  # the build's ranker names, as a reader would say them
    "rule": "count + recency rule",
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

glossary("case", "candidate", "coverage", "top1", "top1_all", "share", "frozen threshold")  # the words below, explained

# --- The dataset ----------------------------------------------------------------------------
st.header("Dataset")
summary = read_json(A.DATASET_SUMMARY)
if summary is None:
    missing("The dataset summary", A.DATASET_SUMMARY)
elif why := bad_content(
    A.DATASET_SUMMARY, summary, numbers=("events", "visitors", "items", "categories"), mappings=("event_mix",)
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
            c[0].metric(
                "Top-1 hit rate",
                pct(r["top1"]),
                help="Of the test cases whose next category was among the candidates (covered), the share where it is ranked first.",
            )
            c[1].metric(
                "Top-3 hit rate",
                pct(r["top3"]),
                help="Of the covered test cases, the share with the next category in the first three.",
            )
            c[2].metric(
                "Coverage",
                pct(r["coverage"]),
                help="Share of test cases whose next category is among the candidates at all.",
            )
            candidates = str(r.get("candidate_set", "history"))
            pool = (
                "the categories in the history plus categories that often follow the last one"
                if "markov" in candidates.lower()
                else "the categories in the visitor's history"
            )
            st.caption(
                f"Served model: {ranker_label(best)}, choosing among {pool}; picked on validation visitors and "
                f"measured on {count(r['n_cases'])} test cases of visitors it never saw, of which "
                f"{count(r['n_covered'])} are covered. Counting the uncovered cases as misses: top-1 "
                f"{pct(r['top1_all'])}, top-3 {pct(r['top3_all'])}."
            )

with right:
    st.subheader("Task 2 · abnormal users")
    op = read_json(A.OPERATING_POINT)
    if op is None:
        missing("The detector's operating point", A.OPERATING_POINT)
    elif why := bad_content(A.OPERATING_POINT, op, required=("share", "n_users", "threshold")):
        unusable("The detector's operating point", why)
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
        c[0].metric(
            "Flagged share",
            pct(op["share"]),
            help="The frozen operating point: this share of training users scores at or above the threshold.",
        )
        c[1].metric("Users flagged", count(flagged), help=f"Out of {op['n_users']:,} users.")
        c[2].metric(
            "Events removed",
            pct(at_op["events_removed_share"]) if at_op is not None else "–",
            help="Share of all events that belong to flagged users (cleaning drops them).",
        )
        st.caption(
            f"Frozen threshold {op['threshold']:.4f} (fixed on {op['n_users']:,} training users)"
            + (f"; {count(at_op['events_removed'])} events removed" if at_op is not None else "")
            + (
                f"; precision {pct(at_op['precision'])}, recall {pct(at_op['recall'])} against the "
                f"{at_op['label_source']}"
                if at_op is not None and "label_source" in at_op
                else ""
            )
            + "."
        )

# --- Daily activity -------------------------------------------------------------------------
st.header("Daily activity")
EVENT_NAMES = {"view": "Views", "addtocart": "Add-to-cart", "transaction": "Transactions"}
daily = table(A.DAILY_ACTIVITY)
if daily is None:
    missing("The daily activity table", A.DAILY_ACTIVITY)
elif why := bad_content(A.DAILY_ACTIVITY, daily, numbers=("events",), dates=("date",), columns=("event",)):
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
                y=alt.Y("events:Q", title=None, scale=alt.Scale(zero=False), axis=alt.Axis(format=",~s", tickCount=3)),
                tooltip=[alt.Tooltip("date:T", title="Day", format="%Y-%m-%d"), alt.Tooltip("events:Q", format=",")],
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
