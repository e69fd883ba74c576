"""Next-category ranking: type (or sample) a visitor's recent views, see the ranked categories."""

import altair as alt
import pandas as pd
import streamlit as st

from core import artifacts as A
from core.errors import DataError
from core.export import ms_to_datetimes, views_from_csv_text, views_from_editor
from core.ranking import history_before, pick_visitor, rank
from dashboard import artifacts, entry_point_guard, sequences

entry_point_guard(__file__)  # run inside streamlit_app.py, also for a deep link on a fresh server

FALLBACK_EXAMPLE = pd.DataFrame(
    {  # used only when the cleaned demo events are not built: 5 views within 40 minutes
        "timestamp": [1433160000000, 1433160300000, 1433160900000, 1433161800000, 1433162400000],
        "categoryid": [1051, 1051, 959, 1051, 342],
        "itemid": [pd.NA, pd.NA, pd.NA, pd.NA, pd.NA],
    }
)


def example_views() -> pd.DataFrame:
    """A real history from the cleaned events (a visitor with many categories), else a fixed one."""
    seqs = sequences()
    if seqs is None or not seqs["has_history"].any():
        return FALLBACK_EXAMPLE.copy()
    # ties: the smallest visitorid; at least two categories in the history, so it shows a switch
    visitor = pick_visitor(seqs, by=("categories",), min_history_categories=2)
    if visitor is None:
        return FALLBACK_EXAMPLE.copy()
    views = seqs[seqs["visitorid"] == visitor].reset_index(drop=True)
    target = int(views.index[views["has_history"]][-1])
    return history_before(views, target).tail(12)[["timestamp", "categoryid", "itemid"]].reset_index(drop=True)


def show_ranking(result) -> None:
    """Which ranker ranked, the bar chart and table of scores, and each candidate's features."""
    reason = artifacts().ranking_fallback_reason() or result.fallback_reason  # as the API says it
    if reason is None:
        st.success(f"Ranked by the model **{result.ranker}** from {result.n_history_views} history view(s).")
    else:
        st.warning(f"Ranked by the **count + recency rule** (fallback: {reason}).")
    ranking = result.ranking.assign(category=lambda d: d["categoryid"].astype(str))
    bars = (
        alt.Chart(ranking)
        .mark_bar()
        .encode(
            x=alt.X("score:Q", title="Score (higher = more likely next)"),
            y=alt.Y("category:N", sort=alt.EncodingSortField("rank"), title="Category"),
            tooltip=["rank", "categoryid", alt.Tooltip("score:Q", format=".4f"), "cnt", "is_last", "last_gap_min"],
        )
        .properties(height=max(120, 36 * len(ranking) + 50))
    )
    st.altair_chart(bars, width="stretch")
    st.dataframe(ranking[["rank", "categoryid", "score"]], hide_index=True)
    with st.expander("Candidate features (docs/DATA_CONTRACT.md §2)"):
        st.dataframe(ranking.drop(columns="category"), hide_index=True)


def set_views(views: pd.DataFrame) -> None:
    """Replace the editor's table (a new editor key drops the old edits)."""
    st.session_state.views_base = views.reset_index(drop=True).apply(pd.to_numeric, errors="coerce")
    st.session_state.views_version = st.session_state.get("views_version", 0) + 1


st.title("Next-category ranking")
st.caption(
    "Given a visitor's recent views, rank the categories they are likely to view next. The "
    "candidates are the categories of the last 24 h of views (at most 100); the same "
    "`core.ranking.rank` serves the API."
)

arts = artifacts()
model = arts.ranking_model
if model is None:
    st.warning(
        f"No verified ranking model is loaded ({arts.ranking_fallback_reason()}), so the count + "
        f"recency rule ranks instead. {A.REBUILD_HINT}",
        icon=":material/warning:",
    )
top_k = st.slider("Categories to show (top k)", min_value=1, max_value=20, value=5, key="top_k")

# --- Your views ------------------------------------------------------------------------------
st.header("Rank a history of views")
if "views_base" not in st.session_state:
    set_views(example_views())

mode = st.radio("Enter the views as", ["Table", "Pasted CSV"], horizontal=True, key="views_mode")
views, problem = None, None
if mode == "Table":
    in_ms = st.toggle(  # switching keeps the edits: the last edited table becomes the new base
        "Timestamps in Unix milliseconds", key="views_in_ms",
        on_change=lambda: set_views(st.session_state.get("views_edited", st.session_state.views_base)),
    )
    base = st.session_state.views_base.copy()
    if not in_ms:
        base["timestamp"] = ms_to_datetimes(pd.to_numeric(base["timestamp"], errors="coerce"))
    timestamp_column = (
        st.column_config.NumberColumn("timestamp (ms)", format="%d", step=1, help="Unix milliseconds, UTC")
        if in_ms
        else st.column_config.DatetimeColumn("timestamp (UTC)", format="YYYY-MM-DD HH:mm:ss", step=1)
    )
    edited = st.data_editor(
        base,
        num_rows="dynamic",
        key=f"views_editor_{st.session_state.views_version}_{in_ms}",
        column_config={
            "timestamp": timestamp_column,
            "categoryid": st.column_config.NumberColumn("categoryid", format="%d", step=1),
            "itemid": st.column_config.NumberColumn("itemid (optional)", format="%d", step=1),
        },
        column_order=["timestamp", "categoryid", "itemid"],
    )
    st.caption("Error messages count rows from 0 (the first row is row 0). Add rows at the bottom; delete rows by selecting them at their left edge.")
    views = views_from_editor(edited, timestamps_in_ms=in_ms)
    st.session_state.views_edited = views.reindex(columns=["timestamp", "categoryid", "itemid"])
    if st.button("Reset to the example", key="reset_views"):
        set_views(example_views())
        st.rerun()
else:
    example_csv = st.session_state.views_base.to_csv(index=False)
    text = st.text_area(
        "One view per line: `timestamp,categoryid[,itemid]`; the timestamp in Unix ms or as a date/time (UTC)",
        value=example_csv,
        height=220,
        key="views_csv",
    )
    try:
        views = views_from_csv_text(text)
    except DataError as exc:
        problem = str(exc)

try:
    if problem:
        raise DataError(problem)
    show_ranking(rank(views, model, top_k))
except DataError as exc:
    st.error(f"These views cannot be ranked: {exc}", icon=":material/block:")

# --- Sample a real visitor ------------------------------------------------------------------
st.header("Sample a visitor from the cleaned events")
seqs = sequences()
if seqs is None:
    st.info(f"The cleaned demo events (`{A.CLEAN_EVENTS}`) are not built yet. {A.REBUILD_HINT}", icon=":material/info:")
else:
    if st.button("Sample a visitor", key="sample", icon=":material/casino:"):
        st.session_state.sample_seed = st.session_state.get("sample_seed", 1) + 1
    seed = st.session_state.get("sample_seed", 1)
    visitor = pick_visitor(seqs, seed=seed)
    if visitor is None:
        st.info("No visitor in the cleaned events has two views within 24 h.")
    else:
        views_v = seqs[seqs["visitorid"] == visitor].reset_index(drop=True)
        cases = [int(i) for i in views_v.index[views_v["has_history"]]]
        target = cases[-1]
        if len(cases) > 1:
            target = st.select_slider(
                "Predict the view number", options=cases, value=cases[-1], key=f"target_{visitor}",
                help="Only views with an earlier view within 24 h are cases.",
            )
        shown = views_v.assign(
            time=ms_to_datetimes(views_v["timestamp"]),
            role=["history" if i < target else ("next view (to predict)" if i == target else "later") for i in views_v.index],
        )
        st.markdown(f"Visitor **{visitor}** · seed {seed} · {len(views_v)} views with a known category")
        st.dataframe(shown.loc[max(0, target - 15): target + 2, ["time", "categoryid", "itemid", "role"]])
        history = history_before(views_v, target)
        result = rank(history[["timestamp", "categoryid", "itemid"]], model, top_k)
        actual = int(views_v["categoryid"].iloc[target])
        ranked = result.ranking["categoryid"].tolist()
        if actual in ranked:
            st.success(f"Hit: the actual next category **{actual}** is ranked #{ranked.index(actual) + 1} of the top {top_k}.", icon=":material/check_circle:")
        else:
            st.warning(f"Miss: the actual next category **{actual}** is not in the top {top_k}.", icon=":material/cancel:")
        show_ranking(result)
