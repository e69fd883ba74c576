"""Next-category ranking: type (or sample) a visitor's recent views, see the ranked categories."""

import re

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.base.errors import DataError
from core.base.schema import CATEGORY_TREE, LOOKBACK, VIEW_COLUMNS, WINDOW_MS
from core.evaluation.on_events import CASE_TOP_K, evaluate_events, prepared_events
from core.ranking.cases import history_before, hours, pick_visitor, view_usage
from core.ranking.explain import why_text
from core.ranking.serve import rank
from core.reading.categories import category_paths
from core.store import artifacts as A
from core.userfiles.export import complete_rows, csv_bytes, ms_to_datetimes, views_from_csv_text, views_from_editor
from core.userfiles.uploads import MAX_EVENT_ROWS, MAX_UPLOAD_MB, read_table
from dashboard.cache import artifacts, sequences, table
from dashboard.charts import fit_width, legend, series_scale
from dashboard.format import SCORE_D3, SCORE_DIGITS
from dashboard.glossary import glossary
from dashboard.guard import entry_point_guard
from dashboard.internals import drop_upload_bytes, keep_in_session, release_from_session
from dashboard.widgets import download_data, template_download

entry_point_guard(__file__)  # run inside streamlit_app.py, also for a deep link on a fresh server

FALLBACK_EXAMPLE = pd.DataFrame(
    {  # used only when the cleaned demo events are not built: 5 views within 40 minutes
        "timestamp": [1433160000000, 1433160300000, 1433160900000, 1433161800000, 1433162400000],
        "categoryid": [1051, 1051, 959, 1051, 342],
        "itemid": [pd.NA, pd.NA, pd.NA, pd.NA, pd.NA],
    }
)
SUGGESTED = "suggested (not viewed)"
# Features a suggested category cannot have: the model sees stand-in values (a full day's gap,
# one past the oldest view), which would read as real measurements in the table.
PLACEHOLDER_FEATURES = ["last_gap_min", "pos_from_end"]


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
    return history_before(views, target).tail(12)[list(VIEW_COLUMNS)].reset_index(drop=True)


def window_and_lookback() -> tuple[int, int]:
    """The served model's history window (ms) and lookback (views), else the defaults."""
    model = artifacts().ranking_model
    return (model.window_ms, model.lookback) if model is not None else (WINDOW_MS, LOOKBACK)


def history_roles(views_v: pd.DataFrame, target: int) -> list[str]:
    """Per view of a sampled visitor: used history, an earlier view the rules leave out, the view
    to predict, or a later one."""
    window_ms, lookback = window_and_lookback()
    used = set(history_before(views_v, target, window_ms, lookback).index)
    t_next = int(views_v["timestamp"].iloc[target])
    roles = []
    for i, t in zip(views_v.index, views_v["timestamp"]):
        if i in used:
            roles.append("history (used)")
        elif i < target:
            roles.append(
                f"earlier, not used (over {hours(window_ms)} before)"
                if t < t_next - window_ms
                else f"earlier, not used (beyond the last {lookback} views)"
            )
        else:
            roles.append("next view (to predict)" if i == target else "later")
    return roles


def show_ranking(result, top_k: int) -> None:
    """Which ranker ranked, the bar chart and table of scores, and each candidate's features."""
    reason = artifacts().ranking_fallback_reason() or result.fallback_reason  # as the API says it
    if reason is None:
        st.success(f"Ranked by the served ranker **{result.ranker}** from {result.n_history_views} history view(s).")
    else:
        st.warning(f"Ranked by the **count + recency rule** (fallback: {reason}).")
    ranking = result.ranking.copy()
    ranking.insert(2, "why", why_text(ranking) if len(ranking) else pd.Series(dtype=str))
    viewed = ranking["cnt"] > 0 if "cnt" in ranking else pd.Series(True, index=ranking.index)
    ranking.insert(2, "source", np.where(viewed, "viewed", SUGGESTED))
    for col in PLACEHOLDER_FEATURES:
        if col in ranking:
            ranking[col] = ranking[col].where(viewed)  # blank, not a stand-in value
    paths = category_paths(table(CATEGORY_TREE))
    if paths is not None:
        ranking.insert(2, "parent categories", ranking["categoryid"].map(paths).fillna("unknown"))
    ranking["category"] = ranking["categoryid"].astype(str)
    bars = (
        alt.Chart(ranking)
        .mark_bar()
        .encode(
            x=alt.X("score:Q", title=["Score", "(higher = more likely next)"]),
            y=alt.Y("category:N", sort=alt.EncodingSortField("rank"), title="Category"),
            color=alt.Color(
                "source:N",
                title=None,
                sort=["viewed", SUGGESTED],
                scale=series_scale(["viewed", SUGGESTED]),
                legend=legend(["viewed", SUGGESTED]),
            ),
            tooltip=["rank", "categoryid", "source", alt.Tooltip("score:Q", format=SCORE_D3)],
        )
        .properties(height=max(60, 30 * len(ranking)))
    )
    bars = fit_width(bars)  # the height is the bars' own: a legend on top had squeezed them to a line
    st.altair_chart(bars, width="stretch")
    notes = [
        "The score orders this history's candidates: higher means more likely to be viewed next. "
        "It is not a probability and is not comparable between histories."
    ]
    if len(ranking) < top_k:
        notes.append(
            f"Only {len(ranking)} candidate categor{'y exists' if len(ranking) == 1 else 'ies exist'} for "
            f"these views, so fewer than the {top_k} asked for are shown."
        )
    if (~viewed).any():
        notes.append(
            f"“{SUGGESTED}”: the visitor never viewed it; the model suggests it because it often follows "
            "the last category viewed. Its time features are blank."
        )
    notes.append(
        "Categories are shown by id with their parent categories."
        if paths is not None
        else "Categories are shown by id: this build holds no category tree, so parent categories are not known."
    )
    st.caption(" ".join(notes))
    st.dataframe(
        ranking[["rank", "categoryid"] + (["parent categories"] if paths is not None else []) + ["why", "score"]],
        hide_index=True,
        column_config={"score": st.column_config.NumberColumn(format=f"%.{SCORE_DIGITS}f")},
    )
    with st.expander("What the model saw for each category"):
        st.dataframe(ranking.drop(columns="category"), hide_index=True)
        st.caption(
            "cnt: views of the category in the history; share: cnt over all history views; is_last: "
            "the last view's category; last_gap_min: minutes from its latest view to the last view; "
            "pos_from_end: how many views ago it was last seen (0 = the last view); "
            "tail_streak_if_last: views in a row at the end; n_views: views in the history; "
            "markov_prob: how often it follows the last category in training."
        )


def set_views(views: pd.DataFrame) -> None:
    """Replace the editor's table (a new editor key drops the old edits)."""
    st.session_state.views_base = views.reset_index(drop=True).apply(pd.to_numeric, errors="coerce")
    st.session_state.views_version = st.session_state.get("views_version", 0) + 1


def as_csv(views: pd.DataFrame, in_ms: bool) -> str:
    """The table as the CSV text the paste box takes: dates as shown, or milliseconds."""
    out = views.reindex(columns=VIEW_COLUMNS).copy()
    if not in_ms:
        ms = pd.to_numeric(out["timestamp"], errors="coerce")
        out["timestamp"] = ms_to_datetimes(ms).dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3].str.removesuffix(".000")
    for col in ("categoryid", "itemid"):
        try:
            out[col] = pd.to_numeric(out[col]).astype("Int64")  # 12, not 12.0
        except (TypeError, ValueError):
            pass  # a half-typed cell: kept as it is, the ranking names it
    if out["itemid"].isna().all():
        out = out.drop(columns="itemid")
    return out.to_csv(index=False)


def switch_mode() -> None:
    """Carry the views across: the table into the CSV text, or the parsed CSV into the table."""
    if st.session_state.views_mode == "Pasted CSV":
        table_now = st.session_state.get("views_edited", st.session_state.views_base)
        st.session_state.views_csv = as_csv(table_now, st.session_state.get("views_in_ms", False))
        return
    try:
        parsed = views_from_csv_text(st.session_state.get("views_csv", ""))
    except DataError:
        st.session_state.views_switch_note = "The pasted text could not be read, so the table keeps its earlier views."
        return
    set_views(parsed.reindex(columns=VIEW_COLUMNS))


st.title("Next-category ranking")
window_ms, lookback = window_and_lookback()
st.caption(
    "Given a visitor's recent views, rank the categories they are likely to view next. The model "
    f"looks at the views of the last {hours(window_ms)} before the last view (at most the "
    f"{lookback} most recent) and ranks the categories seen there"
    + (
        ", plus a few categories that often follow the last one"
        if getattr(artifacts().ranking_model, "markov", None) is not None
        else ""
    )
    + ". The API ranks the same way."
)
glossary("case", "candidate", "score", "rankers", "coverage", "top1", "top1_all")  # the words below, explained

arts = artifacts()
model = arts.ranking_model
served_why = arts.served("ranking_model").get("reason") if model is not None else None
if served_why:
    st.info(f"**Served ranker: {arts.ranking_model_name}.** {served_why}.", icon=":material/rule:")
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

mode = st.radio(
    "Enter the views as",
    ["Table", "Pasted CSV"],
    horizontal=True,
    key="views_mode",
    on_change=switch_mode,
    help="Switching carries the current views across.",
)
if note := st.session_state.pop("views_switch_note", None):
    st.warning(note, icon=":material/warning:")
views, problem = None, None
if mode == "Table":
    in_ms = st.toggle(  # switching keeps the edits: the last edited table becomes the new base
        "Timestamps in Unix milliseconds",
        key="views_in_ms",
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
        column_order=VIEW_COLUMNS,
    )
    st.caption(
        "Rows are numbered from 0, as on the left of the table. Add rows at the bottom; delete rows "
        "by selecting them at their left edge."
    )
    views = views_from_editor(edited, timestamps_in_ms=in_ms)
    st.session_state.views_edited = views.reindex(columns=VIEW_COLUMNS)
    if st.button("Reset to the example", key="reset_views"):
        set_views(example_views())
        st.rerun()
else:
    st.session_state.setdefault("views_csv", as_csv(st.session_state.views_base, False))
    text = st.text_area(
        "One view per line: timestamp,categoryid[,itemid]; the timestamp in Unix milliseconds or as a "
        "date and time (UTC). Lines are numbered as in a spreadsheet: the header is line 1.",
        height=220,
        key="views_csv",
    )
    try:
        views = views_from_csv_text(text)
    except DataError as exc:
        problem = str(exc)

kept_rows = None
try:
    if problem:
        raise DataError(problem)
    views, incomplete, kept_rows = complete_rows(views)
    if incomplete:
        st.warning(
            f"Not ranked yet, because incomplete: {', '.join(incomplete)}. The ranking below uses the "
            f"{len(views)} complete row(s); fill in or delete the incomplete one(s).",
            icon=":material/edit_note:",
        )
    if views.empty and incomplete:
        raise DataError("no row has both a timestamp and a categoryid yet")
    show_ranking(rank(views, model, top_k), top_k)
    usage = view_usage(views, *window_and_lookback()) if len(views) and views["timestamp"].notna().all() else None
    if usage is not None:
        left_out = (usage["used"] != "used").sum()
        with st.expander(f"Which views the model used ({len(usage) - left_out} of {len(usage)})"):
            shown = usage.assign(time=ms_to_datetimes(usage["timestamp"]))
            st.dataframe(
                shown[
                    ["time", "categoryid", "itemid", "used"] if "itemid" in shown else ["time", "categoryid", "used"]
                ],
                hide_index=True,
                column_config={"time": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss")},
            )
            st.caption(
                f"Only views within {hours(window_ms)} of the last view count, and at most the "
                f"{lookback} most recent of them."
            )
except DataError as exc:
    message = str(exc)
    if kept_rows is not None:  # name the rows as the table numbers them (blank rows were left out)
        pasted = mode != "Table"  # pasted text: the line a spreadsheet shows (header = line 1)
        kept: list[int] = kept_rows
        message = re.sub(
            r"row (\d+)",
            lambda m: (
                (f"line {kept[int(m.group(1))] + 2}" if pasted else f"row {kept[int(m.group(1))]}")
                if int(m.group(1)) < len(kept)
                else m.group(0)
            ),
            message,
        )
        if pasted:
            message = message.replace("(rows are 0-based)", "(lines as in a spreadsheet: header = line 1)")
    # dates are accepted too: "not a number" would send the analyst the wrong way
    message = message.replace("timestamp is not a number", "timestamp is neither a date and time nor Unix milliseconds")
    st.error(f"These views cannot be ranked: {message}", icon=":material/block:")

# --- Sample a real visitor ------------------------------------------------------------------
st.header("Sample a visitor from the cleaned events")
seqs = sequences()
if seqs is None:
    st.info(f"The cleaned demo events are not built yet. {A.REBUILD_HINT}", icon=":material/info:")
else:
    st.caption(
        "Draws a visitor who viewed at least three categories (most visitors view one item "
        "again and again, which makes a dull example)."
    )
    if st.button("Sample a visitor", key="sample", icon=":material/casino:"):
        st.session_state.sample_seed = st.session_state.get("sample_seed", 1) + 1
    seed = st.session_state.get("sample_seed", 1)
    visitor = pick_visitor(seqs, seed=seed, prefer_categories=3)
    if visitor is None:
        st.info(f"No visitor in the cleaned events has two views within {hours(window_ms)}.")
    else:
        views_v = seqs[seqs["visitorid"] == visitor].reset_index(drop=True)
        cases = [int(i) for i in views_v.index[views_v["has_history"]]]
        target = cases[-1]
        if len(cases) > 1:
            target = st.select_slider(
                "Predict the view number",
                options=cases,
                value=cases[-1],
                key=f"target_{visitor}",
                help=f"Only views with an earlier view within {hours(window_ms)} can be predicted (they are cases).",
            )
        shown = views_v.assign(time=ms_to_datetimes(views_v["timestamp"]), role=history_roles(views_v, target))
        st.markdown(f"Visitor **{visitor}** · draw {seed} · {len(views_v)} views with a known category")
        st.dataframe(
            shown.loc[max(0, target - 15) : target + 2, ["time", "categoryid", "itemid", "role"]],
            column_config={"time": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss")},
        )
        st.caption(
            "The number on the left is the view number. “history (used)” rows are what the model "
            f"sees: views within {hours(window_ms)} before the view to predict, at most the {lookback} "
            "most recent; earlier views are shown but not used."
        )
        history = history_before(views_v, target, window_ms, lookback)
        full = rank(history[list(VIEW_COLUMNS)], model, None)  # every candidate, to say where the actual one is
        actual = int(views_v["categoryid"].iloc[target])
        ranked = full.ranking["categoryid"].tolist()
        if actual in ranked and ranked.index(actual) < top_k:
            st.success(
                f"Hit: the actual next category **{actual}** is ranked #{ranked.index(actual) + 1} of the top {top_k}.",
                icon=":material/check_circle:",
            )
        elif actual in ranked:
            st.warning(
                f"Miss: the actual next category **{actual}** is a candidate, ranked #{ranked.index(actual) + 1} "
                f"of {len(ranked)}, below the top {top_k}.",
                icon=":material/cancel:",
            )
        elif actual in set(history["categoryid"]):
            st.warning(
                f"Miss: the actual next category **{actual}** is in the history, but the served ranker "
                f"({full.ranker}) does not rank it: it ranks only the last viewed category.",
                icon=":material/cancel:",
            )
        else:
            st.info(
                f"Not a candidate: the actual next category **{actual}** is not among this history's "
                "categories" + (" or the suggested ones" if "markov_prob" in full.ranking else "") + ", so no "
                "ranker that picks from them could have ranked it (an uncovered case: a miss in top1_all).",
                icon=":material/block:",
            )
        result = rank(history[list(VIEW_COLUMNS)], model, top_k)
        show_ranking(result, top_k)

# --- Evaluate on your events ------------------------------------------------------------------
st.header("Evaluate on your events")
st.caption(
    "Upload events in the prepared layout (timestamp, visitorid, event, itemid, transactionid, categoryid; "
    "CSV or parquet, for example the cleaned-events parquet of a build). Every case of the file is "
    "measured, with no split and no rare-label drop, because the models are already trained. "
    "Raw RetailRocket events without a categoryid column cannot be evaluated here: prepare them with "
    "`python -m core build --raw-dir FOLDER` first. The same figures come from `python -m core evaluate FILE`."
)
template_download("ranking events")
eval_file = st.file_uploader(
    "Events with a categoryid column, as parquet or CSV",
    type=["parquet", "csv"],
    key="eval_file",
    max_upload_size=MAX_UPLOAD_MB,
    help=f"At most {MAX_UPLOAD_MB} MB and {MAX_EVENT_ROWS:,} events: the app's memory budget is 1 GB.",
)
if eval_file is None:
    release_from_session("ranking_eval")
elif st.session_state.get("ranking_eval", {}).get("id") != eval_file.file_id:
    release_from_session("ranking_eval")
    entry: dict = {"id": eval_file.file_id, "name": eval_file.name}
    try:
        with st.spinner("Building every case of the file and ranking it…"):
            frame, kind, _ = read_table(eval_file.name, eval_file.getvalue())
            if kind != "events":
                raise DataError(
                    f"{eval_file.name!r} looks like a user-features table, not events; upload events with a "
                    "categoryid column."
                )
            events = prepared_events(frame, eval_file.name)
            del frame
            entry["result"] = evaluate_events(events, model, arts.ranking_model_name, CASE_TOP_K)
            del events
    except DataError as exc:
        entry["error"] = str(exc)
    keep_in_session("ranking_eval", entry)
if eval_file is not None:
    drop_upload_bytes(eval_file, "eval_file")
evaluation = st.session_state.get("ranking_eval")
if evaluation and "error" in evaluation:
    st.error(f"This file cannot be evaluated: {evaluation['error']}", icon=":material/block:")
elif evaluation and "result" in evaluation:
    report = evaluation["result"].report
    served = report["served"]
    st.markdown(
        f"**{report['cases']:,} cases** of {report['visitors']:,} visitors in `{evaluation['name']}`. "
        f"Served ranker: **{served}**."
    )

    def with_ci(entry: dict, metric: str) -> str:
        lo, hi = entry["ci"][metric]
        return f"{100 * entry[metric]:.1f}% ({100 * lo:.1f} to {100 * hi:.1f})"

    labels = {
        "top1_all": "top-1, all cases",
        "top3_all": "top-3, all cases",
        "mrr5": "MRR@5, all cases",
        "coverage": "coverage",
        "top1": "top-1, covered cases",
        "top3": "top-3, covered cases",
    }
    order = ["top1_all", "top3_all", "mrr5", "coverage", "top1", "top3"]
    rows = []
    for name, entry in report["rankers"].items():  # a handful of rankers
        row = {"ranker": name + (" (served)" if name == served else "")}
        row |= {labels[m]: with_ci(entry, m) for m in order}
        diff = entry.get("minus_served", {}).get("top1_all")
        row["top-1 all cases, minus served"] = (
            "–"
            if diff is None
            else f"{100 * diff['value']:+.1f} pp ({100 * diff['ci'][0]:+.1f} to {100 * diff['ci'][1]:+.1f})"
        )
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption(
        f"Population: {report['population']}. Each figure has its visitor-bootstrap "
        f"{report['ci_level']:.0%} interval in brackets ({report['n_boot']} resamples of the file's visitors); "
        "“minus served” is the paired difference on the same cases, in percentage points. MRR@5 is "
        "shown as a share (1/rank within the first five). Coverage is the share of cases whose next "
        "category was a candidate: for the baselines, a category of the history."
    )
    st.download_button(
        "Per-case results as CSV",
        download_data(csv_bytes, evaluation["result"].cases),
        f"{evaluation['name'].rsplit('.', 1)[0]}_cases_{served}.csv",
        "text/csv",
        key="dl_eval_cases",
        on_click="ignore",
        icon=":material/download:",
    )
    st.caption(
        f"One row per case: visitor, time (ms) of the view to predict and of the last history view, the true "
        f"category, whether it was a candidate at all, whether the served ranker hit it (top 1, top 3), and "
        f"its ranked top {CASE_TOP_K} (rank_1 … rank_{CASE_TOP_K})."
    )
