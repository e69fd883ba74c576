"""Anomalous users: upload user features, check them, score them, download the scored rows."""

import re

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from core.anomaly import batch
from core.anomaly.detector import DETECTOR_FIT_CAP, Detector
from core.anomaly.drift import DRIFT_PSI, MIN_DRIFT_ROWS, MODERATE_PSI, drift_sentence
from core.anomaly.evidence import GAP_LABELS, visitor_evidence
from core.anomaly.labels import BOOTSTRAP_RESAMPLES, label_cost, label_metrics, match_labels, pr_curve, read_labels
from core.anomaly.policy import (
    COST_COLUMNS,
    DEFAULT_PROTECT_BUYERS,
    DEFAULT_SHARES,
    TXN_WARNING_SHARE,
    cleaning_cost,
    cost_sentence,
    policy_label,
)
from core.anomaly.scoring import explain, flag_scores, score_rows
from core.anomaly.validation import validate_features
from core.base import schema
from core.base.errors import DataError
from core.base.memory import release_memory
from core.base.schema import DEFAULT_SEED, USER_FEATURES
from core.build.results import pct
from core.store import artifacts as A
from core.userfiles.export import (
    cleaned_csv_bytes,
    cleaned_parquet_bytes,
    events_of,
    scored_csv_bytes,
    scored_parquet_bytes,
)
from core.userfiles.uploads import MAX_UPLOAD_MB, read_upload
from dashboard.cache import artifacts
from dashboard.charts import fit_width, flagged_tail_chart, legend, series_scale
from dashboard.format import COUNT_D3, SCORE_DIGITS, count, formatted, score_text
from dashboard.glossary import glossary
from dashboard.guard import entry_point_guard
from dashboard.internals import drop_served_downloads, drop_upload_bytes, keep_in_session, release_from_session
from dashboard.widgets import download_data, template_download, template_downloads

entry_point_guard(__file__)  # run inside streamlit_app.py, also for a deep link on a fresh server

MAX_FLAGGED_SHOWN = 1_000  # flagged users per page of the table
FROZEN, FITTED = "the frozen operating point", "a detector fitted on this batch"
# Every character CommonMark (and Streamlit's math and icon syntax) gives a meaning to.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def plain(text: str) -> str:
    """Uploaded text (file, column and cell names) escaped so markdown shows it as typed."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def release_input() -> None:
    """Drop the current table, its scores and its served downloads, and return the memory."""
    release_from_session("anomaly_input")
    release_from_session("anomaly_scores")
    release_from_session("anomaly_fit")
    release_from_session("anomaly_flagged_events")
    release_from_session("anomaly_all_scores")
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
            "events": up.events,  # raw uploads: the prepared events, packed (cleaned download, drill-down)
            "validation": validate_features(up.features),
        }
    except DataError as exc:
        entry["error"] = str(exc)
    keep_in_session("anomaly_input", entry)
    release_memory()  # the parser's and the validator's temporaries


def score_once(df: pd.DataFrame, scorable: np.ndarray, detector: Detector, key: tuple) -> dict:
    """Scores of every row (NaN = unscorable) and the binned histogram, once per file and detector.

    Scores do not change with the share or the policy: a slider move only re-thresholds them.
    """
    if st.session_state.get("anomaly_scores", {}).get("key") != key:
        release_from_session("anomaly_scores")
        bar = st.progress(0.0, text="Scoring…")

        def progress(done: float) -> None:
            bar.progress(done, text=f"Scoring… {done:.0%} of the distinct feature rows")

        scores = score_rows(  # what score() (the API's call) runs after validating
            df, scorable, detector, on_progress=progress
        )
        bar.empty()
        counts, edges = np.histogram(scores[np.isfinite(scores)], bins=60)
        keep_in_session("anomaly_scores", {"key": key, "scores": scores, "bins": (counts, edges), "cost": {}})
        release_memory()  # the feature matrix and the forest's copy
    return st.session_state.anomaly_scores


def fit_once(df: pd.DataFrame, scorable: np.ndarray, name: str, key: tuple) -> dict:
    """The detector fitted on this batch, its scores and histogram, once per file and detector."""
    if st.session_state.get("anomaly_fit", {}).get("key") != key:
        release_from_session("anomaly_fit")
        with st.spinner(f"Fitting {name} on this batch…"):
            fit = batch.fit_on_batch(df, scorable, name)
            scores = score_rows(df, scorable, fit.detector)
        counts, edges = np.histogram(scores[np.isfinite(scores)], bins=60)
        keep_in_session("anomaly_fit", {"key": key, "fit": fit, "scores": scores, "bins": (counts, edges), "cost": {}})
        release_memory()
    return st.session_state.anomaly_fit


def cost_of(scored: dict, df: pd.DataFrame, detector: Detector, protect_buyers: bool) -> pd.DataFrame:
    """What cleaning removes at every share and at the frozen threshold, once per policy.

    Measured on the scorable rows only, as the caption says.
    """
    if protect_buyers not in scored["cost"]:
        scores = scored["scores"]
        ok = np.isfinite(scores)
        rows = df[list(COST_COLUMNS)]  # no copy of the other 13 columns
        scored["cost"][protect_buyers] = cleaning_cost(
            rows if ok.all() else rows[ok], scores[ok], DEFAULT_SHARES, detector.threshold_, protect_buyers
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


def show_drift(drift: dict | None, detector: Detector, no_categories: bool = False) -> None:
    """The batch's drift against the training users: verdict, flagged shares, PSI per feature."""
    st.header("Drift against the training users")
    if drift is None:
        st.info(f"This build has no drift reference ({schema.DRIFT_REFERENCE}). {A.REBUILD_HINT}")
        return
    verdict = str(drift["verdict"])
    say = {"drift": st.warning, "moderate drift": st.info, "no drift": st.success, "too few rows": st.info}[verdict]
    text = {
        "drift": "These users differ from the users the detector and its frozen threshold were set on: "
        "the frozen threshold's share is not what it was set for. Prefer a share of this batch or a fit on it.",
        "moderate drift": "Some features differ moderately from the training users; check the flagged share.",
        "no drift": "Every feature is distributed like the training users' (PSI below 0.1).",
        "too few rows": f"Fewer than {MIN_DRIFT_ROWS} scorable rows: no verdict.",
    }[verdict]
    say(f"Drift verdict: {drift_sentence(drift)}. {text}")
    if no_categories:
        st.info(
            "No event of this file has a known category (raw events without `categoryid`?), so `uniq_cats` and "
            "`cat_entropy` are 0 for everyone and differ from the training users by construction. Upload "
            "`categoryid` with the events to compare them."
        )
    c = st.columns(3)
    c[0].metric("Verdict", verdict)
    c[1].metric(
        "Frozen threshold flags",
        pct(drift["frozen_flagged_share"]),
        help="Share of this batch's scorable users at or above the frozen threshold, before the buyer policy.",
    )
    c[2].metric("It was set to flag", pct(drift["expected_flagged_share"]), help="Of the training users.")
    feats = drift["features"]
    table = pd.DataFrame(
        {
            "feature": list(feats),
            "psi": [feats[f]["psi"] for f in feats],
            "band": [feats[f]["band"] for f in feats],
        }
    ).sort_values("psi", ascending=False, kind="stable")
    with st.expander("PSI of every feature", expanded=verdict == "drift"):
        st.dataframe(table, hide_index=True)
    st.caption(
        f"Population: the {count(drift['rows'])} scorable rows of this file against the reference of the "
        f"{drift['reference_population']} (10 quantile bins, one bin per value for features with at most 10 values). "
        f"PSI below {MODERATE_PSI} no drift, up to {DRIFT_PSI} moderate, above it drift; "
        f"flagged shares by {detector.name}."
    )


def flagged_events(packed: bytes, ids: np.ndarray, key: tuple) -> pd.DataFrame:
    """Only the flagged visitors' events, read once per set of flags: no other event stays in memory."""
    if st.session_state.get("anomaly_flagged_events", {}).get("key") != key:
        release_from_session("anomaly_flagged_events")
        keep_in_session("anomaly_flagged_events", {"key": key, "events": events_of(packed, ids)})
        release_memory()
    return st.session_state.anomaly_flagged_events["events"]


def bars(frame: pd.DataFrame, x: str | alt.X, y: str, title: str, **extra: object) -> alt.Chart:
    """A small bar chart of one evidence table."""
    return alt.Chart(frame).mark_bar().encode(x=x, y=alt.Y(y, title=title), **extra).properties(height=200)


def show_evidence(
    source: dict, df: pd.DataFrame, ranked: np.ndarray, top: np.ndarray, why_text: np.ndarray, key: tuple
) -> None:
    """One flagged visitor of the table: events over time by type, hour-of-day profile, gaps, why."""
    st.subheader("Evidence for one flagged visitor")
    ids = df["visitorid"].to_numpy()
    # plain strings as options: a format_func closure would hold the page's arrays in the widget
    choices = [str(v) for v in ids[top]]
    pick = choices.index(st.selectbox("Flagged visitor (from the table above)", choices, key="evidence_visitor"))
    events = flagged_events(source["events"], ids[ranked], key)
    vid = ids[top[pick]]
    ev = visitor_evidence(events[events["visitorid"].to_numpy() == vid])
    st.text(
        f"Visitor {vid}: {ev.n_events:,} events. Why: {why_text[pick] or 'no column above the training users’ usual range'}"
    )
    st.altair_chart(
        bars(
            ev.timeline,
            alt.X("time:T", scale=alt.Scale(type="utc"), title="time (UTC)"),
            "events:Q",
            "Events per hour",
            color=alt.Color("event:N", title="event type"),
        ),
        width="stretch",
    )
    c = st.columns(2)
    c[0].altair_chart(bars(ev.hours, alt.X("hour:O", title="hour of day (UTC)"), "events:Q", "Events"), width="stretch")
    c[1].altair_chart(
        bars(ev.gaps, alt.X("gap:N", sort=list(GAP_LABELS), title="gap to the next event"), "gaps:Q", "Gaps"),
        width="stretch",
    )
    st.caption(
        f"Population: the {ev.n_events:,} events of visitor {vid} in this file (after the exact-duplicate rule), UTC. "
        f"Only the {count(len(ranked))} flagged visitors' events are kept for this view."
    )


def detector_scores(df: pd.DataFrame, scorable: np.ndarray, key: str) -> dict[str, np.ndarray]:
    """Every build detector's scores of this file, once per file (for the labels table)."""
    if st.session_state.get("anomaly_all_scores", {}).get("key") != key:
        release_from_session("anomaly_all_scores")
        with st.spinner("Scoring with every detector…"):
            all_scores = {n: score_rows(df, scorable, d) for n, d in sorted(arts.detectors.items())}
        keep_in_session("anomaly_all_scores", {"key": key, "scores": all_scores})
    return st.session_state.anomaly_all_scores["scores"]


def interval(m: dict, name: str) -> str:
    """ "0.812 [0.790, 0.833]" (or "–" when undefined)."""
    value, ci = m.get(name), m.get(f"{name}_ci")
    if value is None:
        return "–"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def labels_section(
    df: pd.DataFrame,
    scores: np.ndarray,
    flags: np.ndarray,
    share: float | None,
    protect_buyers: bool,
    detector: Detector,
    fit: object,
    cost: pd.DataFrame,
) -> None:
    """The optional labels upload and every detector measured on it."""
    st.header("Your own labels")
    template_download("labels")
    up = st.file_uploader(
        "Known bots and normal users (optional): visitorid,is_bot with 0/1 or true/false",
        type=["csv", "parquet"],
        key="labels_file",
    )
    token = f"labels:{up.file_id}" if up is not None else None
    if token != st.session_state.get("last_labels_id"):
        st.session_state.last_labels_id = token
        release_from_session("anomaly_labels")
        if up is not None:
            try:
                entry: dict = {"labels": read_labels(up.name, up.getvalue()), "name": up.name}
            except DataError as exc:
                entry = {"error": str(exc)}
            keep_in_session("anomaly_labels", entry)
    lab = st.session_state.get("anomaly_labels")
    if lab is None:
        st.caption("With labels, every detector is measured on them: precision, recall and PR-AUC with 95% intervals.")
        return
    if "error" in lab:
        st.error(plain(lab["error"]), icon=":material/block:")
        return
    y, unknown = match_labels(lab["labels"], df["visitorid"].to_numpy())
    n_lab = int(np.isfinite(y).sum())
    st.markdown(
        f"**{count(len(lab['labels']))}** labels, **{count(n_lab)}** of users in this file "
        f"(**{count(int(np.nansum(y)))}** bots); **{count(unknown)}** visitorids are not in this file and are ignored."
    )
    token = str(st.session_state.anomaly_input["token"])
    point = "the frozen point" if share is None else f"the top {pct(share, 0)} of this batch"
    # The bootstrap is the slow part: measured once per file, point, policy and fit, not per rerun.
    key = (token, share, protect_buyers, None if fit is None else detector.name)
    cache = lab.setdefault("metrics", {})
    if key not in cache:
        cache.clear()  # only the current point is kept
        rows, curves = [], []
        for name, sc in detector_scores(df, np.isfinite(scores), token).items():
            det = arts.detectors[name]
            fl = flag_scores(sc, share, det, df, protect_buyers=protect_buyers)["is_anomaly"].to_numpy()
            rows.append((name, label_metrics(y, sc, fl)))
            curves.append(pr_curve(y, sc).assign(detector=name))
        if fit is not None:
            rows.append((f"{detector.name} fitted on this batch", label_metrics(y, scores, flags)))
            curves.append(pr_curve(y, scores).assign(detector=f"{detector.name} (fitted)"))
        cache[key] = (rows, curves)
    rows, curves = cache[key]
    table = pd.DataFrame(
        {
            "detector": [n for n, _ in rows],
            "labelled": [m["labelled"] for _, m in rows],
            "bots": [m["positives"] for _, m in rows],
            "precision [95% CI]": [interval(m, "precision") for _, m in rows],
            "recall [95% CI]": [interval(m, "recall") for _, m in rows],
            "PR-AUC [95% CI]": [interval(m, "pr_auc") for _, m in rows],
        }
    )
    st.dataframe(table, hide_index=True)
    st.caption(
        f"Population: the {count(n_lab)} scored users of this file with a label. Precision and recall of the flags at "
        f"{point} (policy: {policy_label(protect_buyers)}); PR-AUC = average precision of the scores "
        f"(scikit-learn); intervals from {BOOTSTRAP_RESAMPLES} bootstrap resamples of the labelled visitors."
    )
    pr = pd.concat(curves, ignore_index=True)
    if len(pr):
        st.altair_chart(
            alt.Chart(pr)
            .mark_line()
            .encode(x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1])), y="precision:Q", color="detector:N")
            .properties(height=280),
            width="stretch",
        )
    extra = label_cost(cost, scores, y, df, protect_buyers)
    shown = ["point", "threshold", "users_removed", "known_bots_removed", "labelled_normal_removed", "events_removed"]
    st.dataframe(extra[shown], hide_index=True)
    st.caption(
        f"What cleaning removes at every share and the frozen threshold ({detector.name}), with your labels: "
        "known bots removed and labelled-normal users removed (after the policy)."
    )


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
    if uploaded is not None and upload_id is not None:  # both set, or neither
        load_input(uploaded.name, uploaded.getvalue(), upload_id)
    elif str(st.session_state.get("anomaly_input", {}).get("token", "")).startswith("upload:"):
        release_input()
if uploaded is not None:
    drop_upload_bytes(uploaded, "features_file")  # read once above: the decoded table is what the page uses
if use_demo:
    demo_path = arts.verified_path(schema.USER_FEATURES_FILE)
    if demo_path is None:
        st.error(f"The demo features (`{schema.USER_FEATURES_FILE}`) are not built or were refused. {A.REBUILD_HINT}")
    else:
        load_input(schema.USER_FEATURES_FILE, demo_path.read_bytes(), f"demo:{(arts.manifest or {}).get('built_at')}")

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

# Drawn once the scores exist (the frozen share needs the chosen detector), shown above them.
drift_box = st.container()

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
    value=DEFAULT_PROTECT_BUYERS,
    key="protect_buyers",
    help="Never flag a visitor with transaction > 0 (applied after the threshold, as in the build and the API).",
)
mode = st.radio(
    "Flag users by",
    [FROZEN, "a share of this batch", FITTED],
    horizontal=True,
    key="anomaly_mode",
    help="Frozen: the threshold fixed on the training users. Share: this batch's own quantile. "
    f"Fitted: the detector fitted on this batch (at most {DETECTOR_FIT_CAP:,} users, seed "
    f"{DEFAULT_SEED}), then this batch's own quantile.",
)
share = None
if mode != FROZEN:
    share = st.slider("Share of scorable users to flag (%)", 1, 20, round(100 * detector.share), key="share_pct") / 100
else:
    st.caption(
        f"Threshold {score_text(detector.threshold_)}: the score of the top {pct(detector.share)} of the {detector.n_users_:,} training users."
    )

score_key = (source["token"], detector.name, detector.threshold_, detector.fingerprint_)  # a rebuild rescores
scored = score_once(df, validation.scorable, detector, score_key)
scores = scored["scores"]
if "drift" not in scored:  # once per file and detector: the shares do not move with the slider
    scored["drift"] = batch.batch_drift(df, validation.scorable, scores, detector, arts.drift_reference)
drift = scored["drift"]
with drift_box:
    no_categories = bool(pd.to_numeric(df["uniq_cats"], errors="coerce").fillna(0).eq(0).all())
    show_drift(drift, detector, no_categories)
fit = None
if mode == FITTED:  # from here on, the detector fitted on this batch and its scores
    scored = fit_once(df, validation.scorable, detector.name, (source["token"], detector.name))
    fit, detector, scores = scored["fit"], scored["fit"].detector, scored["scores"]
    st.caption(
        f"{detector.name} fitted on {fit.fit_rows:,} scorable users of this batch (seed {fit.seed}); "
        f"it flags the top {pct(share, 0)} of this batch."
    )
# score()'s threshold and policy rule, without rescoring when the share or the policy moves
flags = flag_scores(scores, share, detector, df, protect_buyers=protect_buyers)
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
(st.warning if point["txn_warning"] else st.info)(cost_sentence(point), icon=":material/cleaning_services:")
with st.expander("What cleaning removes at every share"):
    st.dataframe(formatted(cost), hide_index=True)
    st.caption(
        f"Population: the {count(scorable.sum())} scorable rows of this file, scored by {detector.name}; "
        f"policy: {policy_label(protect_buyers)}. The warning appears when flagged users hold more than "
        f"{TXN_WARNING_SHARE:.0%} of the transactions."
    )

st.header("4 · Results")
n_scored, n_flagged = int(np.isfinite(scores).sum()), int(flags["is_anomaly"].sum())
kpi = st.columns(5)
kpi[0].metric("Rows", count(len(df)))
kpi[1].metric("Scored", count(n_scored))
kpi[2].metric("Flagged", count(n_flagged), help="Users with score ≥ threshold, after the policy.")
kpi[3].metric(
    "% of scored users",
    pct(n_flagged / n_scored if n_scored else None),
    help="The flagged users as a share of the scored rows.",
)
kpi[4].metric(
    "Threshold", score_text(threshold), help="Frozen: fixed on the training users. Share: this batch's own quantile."
)
left, right = st.columns([3, 2])
left.altair_chart(histogram(scored["bins"], threshold), width="stretch")
tail = flagged_tail_chart(scores, threshold)
if tail is not None:
    right.altair_chart(tail, width="stretch")
st.caption(
    f"{count(n_flagged)} users ({pct(n_flagged / n_scored if n_scored else None)} of the scored) are at or above "
    f"the dashed threshold and flagged (detector {detector.name}, policy: {policy_label(protect_buyers)}). "
    "Users per score bin, on a linear scale (bar areas are proportional to users): the red bars are the "
    "flagged tail, and the zoomed panel shows the highest scores alone, on its own linear scale."
)

flagged_rows = np.flatnonzero(flags["is_anomaly"].to_numpy())
ranked = flagged_rows[np.argsort(-scores[flagged_rows], kind="stable")]  # every flagged user, most anomalous first
st.subheader("Flagged users, most anomalous first")
n_pages = max(1, -(-len(ranked) // MAX_FLAGGED_SHOWN))
find = st.columns([3, 1])
query = find[0].text_input(
    "Find a flagged visitorid", key="flagged_search", help="The exact visitorid; empty = every page."
)
page_no = int(find[1].number_input(f"Page (of {n_pages:,})", 1, n_pages, 1, key="flagged_page"))
if query.strip():
    wanted = pd.to_numeric(pd.Series([query.strip()]), errors="coerce").iloc[0]
    if pd.isna(wanted):
        st.warning("A visitorid is a whole number; type it without spaces or separators.")
    ids = pd.to_numeric(df["visitorid"].iloc[ranked], errors="coerce").to_numpy()
    top = ranked[ids == wanted]
    if not pd.isna(wanted) and not len(top):
        st.info("That visitorid is not among the flagged users of this file.")
else:
    top = ranked[(page_no - 1) * MAX_FLAGGED_SHOWN : page_no * MAX_FLAGGED_SHOWN]
flagged = df.iloc[top].reset_index(drop=True)
# Where to find a user in the file: the line a spreadsheet shows for an uploaded features CSV
# (header = line 1), else the 1-based row of a parquet file. Features computed from raw events
# have no line of their own (a visitor's events are spread over many): the visitorid finds them.
from_events = source.get("kind") != "features"
as_lines = not from_events and source["name"].lower().endswith(".csv")
why_text = explain(flagged, detector).to_numpy() if len(flagged) else np.array([], dtype=object)
table = pd.DataFrame(
    {
        **({} if from_events else {("line" if as_lines else "row"): top + 2 if as_lines else top + 1}),
        "visitorid": flagged["visitorid"],
        "anomaly_score": scores[top],
        "why": why_text,
    }
)
st.dataframe(
    pd.concat([table, flagged[list(USER_FEATURES)]], axis=1),
    hide_index=True,
    column_config={"anomaly_score": st.column_config.NumberColumn(format=f"%.{SCORE_DIGITS}f")},
)
st.caption(
    "“Why” lists the behaviour columns furthest above the training users (one-sided robust z, σ); "
    f"low values never count. Showing {len(top):,} of {len(ranked):,} flagged users "
    f"({'search' if query.strip() else f'page {page_no:,} of {n_pages:,}, {MAX_FLAGGED_SHOWN:,} a page'}); "
    "the downloads hold every row. "
    + (
        "One row per visitor, computed from the raw events: find a visitor's events by visitorid."
        if from_events
        else "“line”: the line of the file as a spreadsheet numbers it (header = line 1)."
        if as_lines
        else "“row”: the row of the parquet file, counting from 1."
    )
)
if source.get("events") is not None and len(top):
    show_evidence(source, df, ranked, top, why_text, (source["token"], detector.name, threshold, protect_buyers))


# --- 5. Downloads ----------------------------------------------------------------------------
# Built only when a button is clicked, a slice of rows at a time, so no copy of the table is kept
# in the session; the detector, policy, threshold and mode behind the flags go in every row.
stem = source["name"].rsplit(".", 1)[0]
mode_label = batch.mode_label(share, fit)
tag = (
    f"{detector.name}_{'keep-buyers' if protect_buyers else 'all-visitors'}_"
    + ("frozen" if share is None else f"{'fit' if fit else 'share'}{round(100 * share)}")
    + f"_t{threshold:.4f}"
)
constants = batch.output_constants(detector, protect_buyers, threshold, mode_label, drift, fit)
metadata = batch.output_metadata(constants, drift)
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
    download_data(scored_parquet_bytes, df, scores, is_anomaly, constants, metadata),
    f"{stem}_scored_{tag}.parquet",
    "application/octet-stream",
    key="dl_parquet",
    on_click="ignore",
    icon=":material/download:",
)
st.caption(
    "Both hold every uploaded row in the original order plus `anomaly_score` (empty when the row "
    "cannot be scored), `is_anomaly`, and the `detector`, `policy`, `threshold` and `mode` that produced them "
    "(and the batch's `drift` verdict; the parquet file's metadata holds the whole drift report); "
    "the file name carries the same. "
    "In the CSV, text cells starting with = + - @ are prefixed with ' so spreadsheets do not run them as formulas."
)

if source.get("events") is not None:
    flagged_ids = df["visitorid"].to_numpy()[is_anomaly]
    clean_meta = {**metadata, "cleaning": "every event of the flagged visitors removed"}
    c = st.columns(2)
    c[0].download_button(
        "Cleaned events as CSV",
        download_data(cleaned_csv_bytes, source["events"], flagged_ids),
        f"{stem}_cleaned_{tag}.csv",
        "text/csv",
        key="dl_clean_csv",
        on_click="ignore",
        icon=":material/cleaning_services:",
    )
    c[1].download_button(
        "Cleaned events as parquet",
        download_data(cleaned_parquet_bytes, source["events"], flagged_ids, clean_meta),
        f"{stem}_cleaned_{tag}.parquet",
        "application/octet-stream",
        key="dl_clean_parquet",
        on_click="ignore",
        icon=":material/cleaning_services:",
    )
    st.caption(
        f"The cleaned events: this file's events after the build loader's exact-duplicate rule, without any event "
        f"of the {count(len(flagged_ids))} flagged visitors, in file order (`categoryid` -1 when the file had none)."
    )

labels_section(df, scores, flags["is_anomaly"].to_numpy(), share, protect_buyers, detector, fit, cost)
