"""Anomalous users: upload user features, check them, score them, download the scored rows."""

import re

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core import anomaly
from core import artifacts as A
from core.errors import DataError
from core.export import scored_csv_bytes, scored_parquet_bytes
from core.memory import release_memory
from core.schema import USER_FEATURES
from core.uploads import MAX_UPLOAD_MB, read_upload
from dashboard import (
    COUNT_D3,
    SCORE_DIGITS,
    artifacts,
    count,
    download_data,
    drop_served_downloads,
    drop_upload_bytes,
    entry_point_guard,
    fit_width,
    flagged_tail_chart,
    formatted,
    glossary,
    keep_in_session,
    legend,
    pct,
    release_from_session,
    score_text,
    series_scale,
    template_downloads,
)

entry_point_guard(__file__)  # run inside streamlit_app.py, also for a deep link on a fresh server

MAX_FLAGGED_SHOWN = 1_000
# Every character CommonMark (and Streamlit's math and icon syntax) gives a meaning to.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def plain(text: str) -> str:
    """Uploaded text (file, column and cell names) escaped so markdown shows it as typed."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def release_input() -> None:
    """Drop the current table, its scores and its served downloads, and return the memory."""
    release_from_session("anomaly_input")
    release_from_session("anomaly_scores")
    drop_served_downloads()
    release_memory()


def load_input(name: str, data: bytes, token: str) -> None:
    """Read and validate a features or raw-events file once; keep the table or the error."""
    release_input()  # the previous table goes before the new one is read
    entry: dict = {"name": name, "token": token}
    try:
        up = read_upload(name, data)
        entry |= {
            "df": up.features,
            "kind": up.kind,
            "notes": up.notes,
            "validation": anomaly.validate_features(up.features),
        }
    except DataError as exc:
        entry["error"] = str(exc)
    keep_in_session("anomaly_input", entry)
    release_memory()  # the parser's and the validator's temporaries


def score_once(df: pd.DataFrame, scorable: np.ndarray, detector: anomaly.Detector, key: tuple) -> dict:
    """Scores of every row (NaN = unscorable) and the binned histogram, once per file and detector.

    Scores do not change with the share or the policy: a slider move only re-thresholds them.
    """
    if st.session_state.get("anomaly_scores", {}).get("key") != key:
        release_from_session("anomaly_scores")
        bar = st.progress(0.0, text="Scoring…")
        scores = anomaly.score_rows(  # what score() (the API's call) runs after validating
            df,
            scorable,
            detector,
            on_progress=lambda done: bar.progress(done, text=f"Scoring… {done:.0%} of the distinct feature rows"),
        )
        bar.empty()
        counts, edges = np.histogram(scores[np.isfinite(scores)], bins=60)
        keep_in_session("anomaly_scores", {"key": key, "scores": scores, "bins": (counts, edges), "cost": {}})
        release_memory()  # the feature matrix and the forest's copy
    return st.session_state.anomaly_scores


def cost_of(scored: dict, df: pd.DataFrame, detector: anomaly.Detector, protect_buyers: bool) -> pd.DataFrame:
    """What cleaning removes at every share and at the frozen threshold, once per policy.

    Measured on the scorable rows only, as the caption says.
    """
    if protect_buyers not in scored["cost"]:
        scores = scored["scores"]
        ok = np.isfinite(scores)
        rows = df[list(anomaly.COST_COLUMNS)]  # no copy of the other 13 columns
        scored["cost"][protect_buyers] = anomaly.cleaning_cost(
            rows if ok.all() else rows[ok], scores[ok], anomaly.DEFAULT_SHARES, detector.threshold_, protect_buyers
        )
    return scored["cost"][protect_buyers]


def histogram(binned: tuple[np.ndarray, np.ndarray], threshold: float) -> alt.LayerChart:
    """Binned scores (binned once per file, so a million rows stay a few dozen bars) and the threshold.

    A linear count axis: bar areas are then proportional to users, so the flagged tail looks as
    small as it is (a log axis made ~5% of users look like ~40%).
    """
    counts, edges = binned
    bins = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "users": counts})
    bins["side"] = np.where(bins["end"] > threshold, "at or above threshold", "below threshold")
    bars = (
        alt.Chart(bins)
        .mark_bar()
        .encode(
            x=alt.X(
                "start:Q", title="Anomaly score (higher = more anomalous)", bin="binned", axis=alt.Axis(titlePadding=8)
            ),
            x2="end:Q",
            y=alt.Y("users:Q", title="Users", axis=alt.Axis(format=COUNT_D3)),
            color=alt.Color(
                "side:N",
                title=None,
                scale=series_scale(["below threshold", "at or above threshold"]),
                legend=legend(["below threshold", "at or above threshold"]),
            ),
            tooltip=[
                alt.Tooltip("start:Q", format=".3f", title="from"),
                alt.Tooltip("end:Q", format=".3f", title="to"),
                alt.Tooltip("users:Q", format=COUNT_D3),
            ],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(color="black", strokeDash=[6, 3])
        .encode(x="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", format=".4f")])
    )
    return fit_width((bars + rule).properties(height=220))


st.title("Anomalous users")
st.caption(
    "Score users with the bot detectors of task 2. Upload one row per visitor with the 16 "
    f"behaviour features ({', '.join(USER_FEATURES)}) plus `visitorid`, or raw "
    "RetailRocket events (`timestamp,visitorid,event,itemid,transactionid`, optionally `categoryid`): "
    "the features are then computed as the build computes them."
)
glossary(  # the words below, explained
    "anomaly score",
    "detectors",
    "behaviour columns",
    "σ (robust z)",
    "share",
    "ties",
    "frozen threshold",
    "operating point",
    "policy",
    "line",
)
arts = artifacts()
detector = arts.detector
if detector is None:
    st.warning(
        "No verified anomaly detector is loaded: files are checked but cannot be scored. "
        + " ".join(arts.problems[:2]),
        icon=":material/warning:",
    )

# --- 1. Features -------------------------------------------------------------------------
st.header("1 · Features")
uploaded = st.file_uploader(
    "User features or raw events, as parquet or CSV",
    type=["parquet", "csv"],
    key="features_file",
    max_upload_size=MAX_UPLOAD_MB,
    help=f"At most {MAX_UPLOAD_MB} MB, 1.5M feature rows or 2M events: the app's memory budget is 1 GB.",
)
template_downloads("features", "raw events")
use_demo = st.button("Use the demo features", key="use_demo", help="The features of every visitor of the current build")
upload_id = f"upload:{uploaded.file_id}" if uploaded is not None else None
if upload_id != st.session_state.get("last_upload_id"):  # a new file, or the file was removed
    st.session_state.last_upload_id = upload_id
    if uploaded is not None:
        load_input(uploaded.name, uploaded.getvalue(), upload_id)
    elif str(st.session_state.get("anomaly_input", {}).get("token", "")).startswith("upload:"):
        release_input()
if uploaded is not None:
    drop_upload_bytes(uploaded, "features_file")  # read once above: the decoded table is what the page uses
if use_demo:
    demo_path = arts.verified_path(A.USER_FEATURES)
    if demo_path is None:
        st.error(f"The demo features (`{A.USER_FEATURES}`) are not built or were refused. {A.REBUILD_HINT}")
    else:
        load_input(A.USER_FEATURES, demo_path.read_bytes(), f"demo:{arts.manifest.get('built_at')}")

source = st.session_state.get("anomaly_input")
if source is None:
    st.info("Upload a features file or use the demo features to begin.", icon=":material/upload:")
    st.stop()
if "error" in source:
    st.error(plain(source["error"]), icon=":material/block:")
    st.stop()
df, validation = source["df"], source["validation"]

# --- 2. Validation -------------------------------------------------------------------------
# Names and messages carry uploaded text: shown escaped or as plain text, never as markup.
st.header("2 · Validation")
st.text(source["name"])
st.markdown(f"**{count(len(df))}** rows, **{count(validation.n_scorable)}** can be scored.")
for note in source.get("notes", []):
    st.info(plain(note), icon=":material/info:")
if validation.ok:
    st.success("Every row follows the data contract's rules for valid feature rows, with unique visitorids.")
for i, message in enumerate(validation.messages()):  # messages() puts missing columns first
    (st.error if i == 0 and validation.missing_columns else st.warning)(plain(message))
if len(validation.row_problems):
    with st.expander(f"Rows with problems ({count(len(validation.row_problems))} listed)", expanded=True):
        shown = validation.row_problems.drop(columns="row").astype({"visitorid": str})
        st.dataframe(shown, hide_index=True)
        st.caption(
            "Lines as in a spreadsheet (header = line 1). Rows that break a rule stay in the downloads "
            "with an empty score and an empty flag."
        )
if validation.missing_columns or detector is None:
    st.stop()

# --- 3. Operating point ----------------------------------------------------------------------
st.header("3 · Operating point")
names = sorted(arts.detectors) or [detector.name]
c = st.columns(2)
name = c[0].selectbox(
    "Detector",
    names,
    index=names.index(detector.name) if detector.name in names else 0,
    key="anomaly_detector",
    help="Every detector of the build, judged the same way (Cleaning KPIs page).",
)
detector = arts.detectors.get(name, detector)
protect_buyers = c[1].toggle(
    "Keep visitors who bought",
    value=anomaly.DEFAULT_PROTECT_BUYERS,
    key="protect_buyers",
    help="Never flag a visitor with transaction > 0 (applied after the threshold, as in the build and the API).",
)
mode = st.radio(
    "Flag users by",
    ["the frozen operating point", "a share of this batch"],
    horizontal=True,
    key="anomaly_mode",
    help="Frozen: the threshold fixed on the training users. Share: this batch's own quantile.",
)
share = None
if mode == "a share of this batch":
    share = st.slider("Share of scorable users to flag (%)", 1, 20, round(100 * detector.share), key="share_pct") / 100
else:
    st.caption(
        f"Threshold {score_text(detector.threshold_)}: the score of the top {pct(detector.share)} of the {detector.n_users_:,} training users."
    )

score_key = (source["token"], detector.name, detector.threshold_, detector.fingerprint_)  # a rebuild rescores
scored = score_once(df, validation.scorable, detector, score_key)
scores = scored["scores"]
# score()'s threshold and policy rule, without rescoring when the share or the policy moves
flags = anomaly.flag_scores(scores, share, detector, df, protect_buyers=protect_buyers)
threshold = float(flags["threshold"].iloc[0])
if share is not None:  # ties at the threshold are all flagged (glossary: ties), so say when the share moves
    finite_scores = scores[np.isfinite(scores)]
    at_or_above = int(np.count_nonzero(finite_scores >= threshold))
    if finite_scores.size and pct(at_or_above / finite_scores.size) != pct(share):
        tied = int(np.count_nonzero(finite_scores == threshold))
        st.info(
            f"Ties at the threshold: you asked for {pct(share)}, and {count(at_or_above)} users "
            f"({pct(at_or_above / finite_scores.size)} of the scored) are at or above the threshold "
            f"{score_text(threshold)}"
            + (
                f", because {count(tied)} users share exactly that score and tied users are all flagged."
                if tied > 1
                else "."
            )
            + " Before the buyer policy; the results below show the share actually flagged.",
            icon=":material/drag_handle:",
        )

# What cleaning would remove from this batch at every share and at the frozen threshold.
scorable = np.isfinite(scores)
cost = cost_of(scored, df, detector, protect_buyers)
point = cost.iloc[-1] if share is None else cost.iloc[int(np.argmin(np.abs(cost["share"].fillna(9) - share)))]
(st.warning if point["txn_warning"] else st.info)(anomaly.cost_sentence(point), icon=":material/cleaning_services:")
with st.expander("What cleaning removes at every share"):
    st.dataframe(formatted(cost), hide_index=True)
    st.caption(
        f"Population: the {count(scorable.sum())} scorable rows of this file, scored by {detector.name}; "
        f"policy: {anomaly.policy_label(protect_buyers)}. The warning appears when flagged users hold more than "
        f"{anomaly.TXN_WARNING_SHARE:.0%} of the transactions."
    )

st.header("4 · Results")
n_scored, n_flagged = int(np.isfinite(scores).sum()), int(flags["is_anomaly"].sum())
c = st.columns(5)
c[0].metric("Rows", count(len(df)))
c[1].metric("Scored", count(n_scored))
c[2].metric("Flagged", count(n_flagged), help="Users with score ≥ threshold, after the policy.")
c[3].metric(
    "% of scored users",
    pct(n_flagged / n_scored if n_scored else None),
    help="The flagged users as a share of the scored rows.",
)
c[4].metric(
    "Threshold", score_text(threshold), help="Frozen: fixed on the training users. Share: this batch's own quantile."
)
left, right = st.columns([3, 2])
left.altair_chart(histogram(scored["bins"], threshold), width="stretch")
tail = flagged_tail_chart(scores, threshold)
if tail is not None:
    right.altair_chart(tail, width="stretch")
st.caption(
    f"{count(n_flagged)} users ({pct(n_flagged / n_scored if n_scored else None)} of the scored) are at or above "
    f"the dashed threshold and flagged (detector {detector.name}, policy: {anomaly.policy_label(protect_buyers)}). "
    "Users per score bin, on a linear scale (bar areas are proportional to users): the red bars are the "
    "flagged tail, and the zoomed panel shows the highest scores alone, on its own linear scale."
)

flagged_rows = np.flatnonzero(flags["is_anomaly"].to_numpy())
top = flagged_rows[np.argsort(-scores[flagged_rows], kind="stable")][:MAX_FLAGGED_SHOWN]
flagged = df.iloc[top].reset_index(drop=True)
# Where to find a user in the file: the line a spreadsheet shows for an uploaded features CSV
# (header = line 1), else the 1-based row of a parquet file. Features computed from raw events
# have no line of their own (a visitor's events are spread over many): the visitorid finds them.
from_events = source.get("kind") != "features"
as_lines = not from_events and source["name"].lower().endswith(".csv")
table = pd.DataFrame(
    {
        **({} if from_events else {("line" if as_lines else "row"): top + 2 if as_lines else top + 1}),
        "visitorid": flagged["visitorid"],
        "anomaly_score": scores[top],
        "why": anomaly.explain(flagged, detector).to_numpy() if len(flagged) else [],
    }
)
st.subheader("Flagged users, most anomalous first")
st.dataframe(
    pd.concat([table, flagged[list(USER_FEATURES)]], axis=1),
    hide_index=True,
    column_config={"anomaly_score": st.column_config.NumberColumn(format=f"%.{SCORE_DIGITS}f")},
)
st.caption(
    "“Why” lists the behaviour columns furthest above the training users (one-sided robust z, σ); "
    f"low values never count. Showing {len(top):,} of {len(flagged_rows):,} flagged users; the downloads hold every row. "
    + (
        "One row per visitor, computed from the raw events: find a visitor's events by visitorid."
        if from_events
        else "“line”: the line of the file as a spreadsheet numbers it (header = line 1)."
        if as_lines
        else "“row”: the row of the parquet file, counting from 1."
    )
)

# --- 5. Downloads ----------------------------------------------------------------------------
# Built only when a button is clicked, a slice of rows at a time, so no copy of the table is kept
# in the session; the detector, policy, threshold and mode behind the flags go in every row.
stem = source["name"].rsplit(".", 1)[0]
mode_label = "frozen threshold" if share is None else f"top {round(100 * share)}% of this batch"
tag = (
    f"{detector.name}_{'keep-buyers' if protect_buyers else 'all-visitors'}_"
    + ("frozen" if share is None else f"share{round(100 * share)}")
    + f"_t{threshold:.4f}"
)
constants = {**anomaly.provenance(detector, protect_buyers, threshold), "mode": mode_label}
is_anomaly = flags["is_anomaly"].to_numpy()

c = st.columns(2)
c[0].download_button(
    "Scored rows as CSV",
    download_data(scored_csv_bytes, df, scores, is_anomaly, constants),
    f"{stem}_scored_{tag}.csv",
    "text/csv",
    key="dl_csv",
    on_click="ignore",
    icon=":material/download:",
)
c[1].download_button(
    "Scored rows as parquet",
    download_data(scored_parquet_bytes, df, scores, is_anomaly, constants),
    f"{stem}_scored_{tag}.parquet",
    "application/octet-stream",
    key="dl_parquet",
    on_click="ignore",
    icon=":material/download:",
)
st.caption(
    "Both hold every uploaded row in the original order plus `anomaly_score` (empty when the row "
    "cannot be scored), `is_anomaly`, and the `detector`, `policy`, `threshold` and `mode` that produced them; "
    "the file name carries the same. "
    "In the CSV, text cells starting with = + - @ are prefixed with ' so spreadsheets do not run them as formulas."
)
