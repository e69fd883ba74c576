"""Task 2: per-visitor behaviour features, an IsolationForest detector, validation and audits.

Features follow spec §3 (``../shared/spec/definitions.md``) exactly and are computed fully
vectorised: one stable sort of the events by (visitorid, timestamp), then bincounts and
run-length arithmetic; the per-visitor 95th gap percentile is numpy's linear interpolation
reproduced on the (visitor, gap)-sorted gap array.

Detector preprocessing (fixed, no fitted state): ``log1p`` on the count features
(``COUNT_FEATURES``) and on the heavy-tailed ``events_per_active_day``, ``p95_gap_s`` and
``sessions_per_day``; the rates and shares (already in [0, 1]-ish ranges) and ``cat_entropy``
are left as they are. An IsolationForest is fitted on the preprocessed matrix. The anomaly score
is ``-IsolationForest.score_samples`` (higher = more anomalous). The frozen threshold of an
operating point with flagged share s is ``np.quantile(training scores, 1 - s)``; a user is
flagged when its score is ``>= threshold``. The "why" strings use robust z-scores on the
preprocessed scale: ``(x - median) / (1.4826 * MAD)`` per feature, computed on the training users
(the standard deviation replaces a zero MAD, and every scale is at least ``SCALE_FLOOR``).

Forest size: 200 trees of 256-sample subsamples (the IsolationForest paper's defaults). Scoring
cost grows with trees x log2(max_samples), not with the training size; scoring runs in row
blocks on threads, which keeps every score bit-identical whatever the thread count.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from core import __version__
from core.errors import ArtifactError, DataError
from core.schema import (
    COUNT_FEATURES,
    DEFAULT_SEED,
    DEFAULT_SHARE,
    EVENT_TYPES,
    NIGHT_HOURS,
    SESSION_GAP_S,
    SHORT_GAP_S,
    UNKNOWN_CATEGORY,
    USER_FEATURES,
)

log = logging.getLogger(__name__)

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000
GAP_PERCENTILE = 95.0
# Heavy-tailed non-count features that also go through log1p before the forest.
LOG_EXTRA_FEATURES: tuple[str, ...] = ("events_per_active_day", "p95_gap_s", "sessions_per_day")
LOG_FEATURES: tuple[str, ...] = tuple(
    f for f in USER_FEATURES if f in COUNT_FEATURES or f in LOG_EXTRA_FEATURES
)
# Forest size: see the module docstring (timings measured at RetailRocket scale in the report).
DEFAULT_N_ESTIMATORS = 200
DEFAULT_MAX_SAMPLES = 256
MAD_TO_SIGMA = 1.4826
# Scale floor on the preprocessed scale (log units / shares), so a feature that is constant in
# training still gives a finite z.
SCALE_FLOOR = 1e-3
# The detailed row_problems table is capped; counts in the messages stay exact.
MAX_PROBLEM_ROWS = 100_000
# Distinct feature rows scored per step of score(on_progress=...): a progress bar moves
# every ~0.3 s at RetailRocket scale, and each step is still big enough for the thread blocks.
SCORE_CHUNK_ROWS = 200_000
SCORE_DEFINITION = (
    "anomaly_score = -IsolationForest.score_samples(preprocessed features); higher = more "
    "anomalous. Preprocessing: log1p on {logs}; other features as is. A user is flagged when "
    "anomaly_score >= threshold, the (1 - share) quantile of the training users' scores."
)

_EVENT_INPUT_COLUMNS = ("timestamp", "visitorid", "event", "itemid", "categoryid")
_INT_FEATURES = frozenset(COUNT_FEATURES)


# --------------------------------------------------------------------------- features


def _empty_features() -> pd.DataFrame:
    """An empty feature table with the right columns and dtypes."""
    cols: dict[str, Any] = {"visitorid": np.empty(0, np.int64)}
    for f in USER_FEATURES:
        cols[f] = np.empty(0, np.int64 if f in _INT_FEATURES else np.float64)
    return pd.DataFrame(cols)


def _group_p95(
    gaps: np.ndarray, gap_vis: np.ndarray, n_vis: int, gap_ms: np.ndarray | None = None
) -> np.ndarray:
    """Per-visitor 95th percentile of gaps (numpy 'linear'), 0 for visitors without gaps.

    gap_vis must be non-decreasing. gap_ms (non-negative integer gaps, same order as gaps)
    allows a single-key sort; equal keys have equal gaps, so stability does not matter.
    """
    out = np.zeros(n_vis, np.float64)
    if gaps.size == 0:
        return out
    span = int(gap_ms.max()) + 1 if gap_ms is not None else 0
    if gap_ms is not None and n_vis * span < 2**62:
        order = np.argsort(gap_vis * np.int64(span) + gap_ms)
    else:
        order = np.lexsort((gaps, gap_vis))
    g = gaps[order]
    m = np.bincount(gap_vis, minlength=n_vis)
    has = m > 0
    mh = m[has]
    start = (np.cumsum(m) - m)[has]
    # Same arithmetic as np.percentile(method="linear"): virtual index (n-1)*q, lerp.
    q = np.true_divide(GAP_PERCENTILE, 100)
    virtual = (mh - 1) * q
    lo = np.floor(virtual)
    t = virtual - lo
    lo_i = lo.astype(np.int64)
    hi_i = np.minimum(lo_i + 1, mh - 1)
    a = g[start + lo_i]
    b = g[start + hi_i]
    diff = b - a
    val = a + diff * t
    upper = t >= 0.5
    val[upper] = (b - diff * (1 - t))[upper]
    out[has] = val
    return out


def _distinct_pairs(
    code: np.ndarray, values: np.ndarray, n_vis: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (visitor code, value) pairs: their visitor codes and occurrence counts.

    Sorting one int64 key and reading its runs is several times faster than hashing the pairs.
    """
    if code.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    vmin = values.min()
    span = int(values.max()) - int(vmin) + 1
    if n_vis * span >= 2**62:  # sparse huge ids: densify first so the key cannot overflow
        values, uniques = pd.factorize(values)
        vmin, span = 0, max(len(uniques), 1)
    key = np.sort(code * np.int64(span) + (values - vmin))
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    counts = np.diff(np.append(starts, key.size))
    return key[starts] // span, counts


def user_features(events: pd.DataFrame) -> pd.DataFrame:
    """``visitorid`` + the 16 spec §3 features, one row per visitor, sorted by visitorid."""
    missing = [c for c in _EVENT_INPUT_COLUMNS if c not in events.columns]
    if missing:
        raise DataError(
            f"user_features needs the prepared event columns {list(_EVENT_INPUT_COLUMNS)}; "
            f"missing: {missing}. Load events with core.data (it adds categoryid)."
        )
    n = len(events)
    if n == 0:
        return _empty_features()
    ts = events["timestamp"].to_numpy(np.int64)
    vis = events["visitorid"].to_numpy(np.int64)
    # One stable sort by (visitor, timestamp), ties in file order. A single int64 key sorts
    # several times faster than np.lexsort on two keys; lexsort only if the key would overflow.
    t0 = ts.min()
    tspan = int(ts.max()) - int(t0) + 1
    vmin = vis.min()
    if (int(vis.max()) - int(vmin) + 1) * tspan < 2**62:
        order = np.argsort((vis - vmin) * np.int64(tspan) + (ts - t0), kind="stable")
    else:
        order = np.lexsort((ts, vis))
    ts = ts[order]
    vis = vis[order]
    etype = pd.Categorical(events["event"], categories=list(EVENT_TYPES)).codes[order]
    items = events["itemid"].to_numpy(np.int64)[order]
    cats = events["categoryid"].to_numpy(np.int64)[order]
    del order

    same = vis[1:] == vis[:-1]  # consecutive events of the same visitor
    new_vis = np.empty(n, bool)
    new_vis[0] = True
    new_vis[1:] = ~same
    code = np.cumsum(new_vis) - 1  # dense visitor code, in visitorid order
    visitor_ids = vis[new_vis]
    n_vis = visitor_ids.size
    del vis, new_vis

    n_events = np.bincount(code, minlength=n_vis)
    view, addtocart, transaction = (
        np.bincount(code, weights=(etype == k), minlength=n_vis).astype(np.int64)
        for k in range(len(EVENT_TYPES))
    )
    del etype

    # Distinct items per visitor: runs of the sorted (visitor, item) pair key.
    pair_vis, _ = _distinct_pairs(code, items, n_vis)
    uniq_items = np.bincount(pair_vis, minlength=n_vis)
    del items, pair_vis

    # Known categories: distinct count and Shannon entropy (bits) of the category distribution.
    known = cats != UNKNOWN_CATEGORY
    kcode = code[known]
    pair_vis, pair_count = _distinct_pairs(kcode, cats[known], n_vis)
    p = pair_count / np.bincount(kcode, minlength=n_vis)[pair_vis]
    cat_entropy = np.bincount(pair_vis, weights=-p * np.log2(p), minlength=n_vis) + 0.0
    uniq_cats = np.bincount(pair_vis, minlength=n_vis)
    del cats, known, kcode, pair_vis, pair_count, p

    # Gaps between consecutive events of a visitor, in seconds.
    gap_vis = code[1:][same]
    gap_ms = np.diff(ts)[same]
    gaps = gap_ms / 1000.0
    day = ts // MS_PER_DAY  # UTC calendar day; non-decreasing within a visitor
    new_day = (day[1:] != day[:-1])[same]
    active_days = 1 + np.bincount(gap_vis, weights=new_day, minlength=n_vis).astype(np.int64)
    hour = (ts // MS_PER_HOUR) % 24
    night = (hour >= NIGHT_HOURS[0]) & (hour < NIGHT_HOURS[1])
    night_share = np.bincount(code, weights=night, minlength=n_vis) / n_events
    n_gaps = n_events - 1
    short = np.bincount(gap_vis, weights=gaps < SHORT_GAP_S, minlength=n_vis)
    short_gap_share = short / np.maximum(n_gaps, 1)
    n_sessions = 1 + np.bincount(gap_vis, weights=gaps > SESSION_GAP_S, minlength=n_vis).astype(
        np.int64
    )
    p95 = _group_p95(gaps, gap_vis, n_vis, gap_ms)
    del ts, day, hour, night, gaps, gap_ms, gap_vis, code, same

    feats = {
        "events": n_events.astype(np.int64),
        "view": view,
        "addtocart": addtocart,
        "transaction": transaction,
        "uniq_items": uniq_items.astype(np.int64),
        "uniq_cats": uniq_cats.astype(np.int64),
        "cat_entropy": cat_entropy,
        "events_per_active_day": n_events / active_days,
        "add_to_view_rate": addtocart / np.maximum(view, 1),
        "txn_to_cart_rate": transaction / np.maximum(addtocart, 1),
        "night_share": night_share,
        "p95_gap_s": p95,
        "short_gap_share": short_gap_share,
        "n_sessions": n_sessions,
        "sessions_per_day": n_sessions / active_days,
        "uniq_item_ratio": uniq_items / n_events,
    }
    # copy=False: keep the 17 arrays as they are instead of consolidating (a 180 MB copy).
    cols = {"visitorid": visitor_ids, **{f: feats[f] for f in USER_FEATURES}}
    return pd.DataFrame(cols, copy=False)


# --------------------------------------------------------------------------- detector


def log1p_columns(X: np.ndarray, columns: tuple[int, ...] = ()) -> np.ndarray:
    """Copy of X (float64) with log1p applied to the given column positions."""
    X = np.array(X, dtype=np.float64, copy=True)
    for j in columns:
        np.log1p(X[:, j], out=X[:, j])
    return X


def _log_positions(features: tuple[str, ...]) -> tuple[int, ...]:
    """Positions of the log1p-transformed features in a feature tuple."""
    return tuple(i for i, f in enumerate(features) if f in LOG_FEATURES)


@dataclass
class Detector:
    """A fitted preprocessing + IsolationForest pipeline with its frozen operating point."""

    pipeline: Pipeline
    features: tuple[str, ...]
    share: float
    threshold: float
    n_users: int
    medians: np.ndarray
    scales: np.ndarray
    fingerprint: str = ""
    version: str = __version__
    params: dict[str, Any] = field(default_factory=dict)

    def preprocess(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """The preprocessed (log1p) matrix the forest and the z-scores see."""
        return self.pipeline[:-1].transform(self._matrix(X))

    def _matrix(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """X as a float64 (n, n_features) matrix in self.features order; finite values only."""
        if isinstance(X, pd.DataFrame):
            missing = [f for f in self.features if f not in X.columns]
            if missing:
                raise DataError(f"Feature table is missing columns {missing}.")
            X = X.loc[:, list(self.features)].to_numpy(np.float64)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise DataError(
                f"Expected a matrix with {len(self.features)} feature columns, got shape {X.shape}."
            )
        if not np.isfinite(X).all():
            raise DataError("Feature matrix has NaN or inf values; run validate_features first.")
        return X

    def score_samples(self, X: np.ndarray | pd.DataFrame, n_jobs: int = -1) -> np.ndarray:
        """Anomaly scores (higher = more anomalous) of the rows of X."""
        X = self._matrix(X)
        n = X.shape[0]
        if n == 0:
            return np.empty(0, np.float64)
        workers = _n_workers(n_jobs)
        # Row blocks on threads (tree traversal releases the GIL). Each row's score sums its
        # tree depths in tree order whatever the blocking, so results are bit-identical for
        # any n_jobs — unlike sklearn's tree-parallel scoring.
        if workers == 1 or n < 20_000:
            return -self.pipeline.score_samples(X)
        bounds = np.linspace(0, n, workers + 1).astype(int)
        out = np.empty(n, np.float64)

        def run(k: int) -> None:
            lo, hi = bounds[k], bounds[k + 1]
            out[lo:hi] = -self.pipeline.score_samples(X[lo:hi])

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, range(workers)))
        return out

    def robust_z(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Robust z-scores of the preprocessed features: (x - median) / scale."""
        return (self.preprocess(X) - self.medians) / self.scales

    def operating_point(self) -> dict[str, Any]:
        """The frozen operating point (written to task2_operating_point.json)."""
        return {
            "share": float(self.share),
            "threshold": float(self.threshold),
            "score_definition": SCORE_DEFINITION.format(
                logs=", ".join(f for f in self.features if f in LOG_FEATURES)
            ),
            "flag_rule": "anomaly_score >= threshold",
            "features": list(self.features),
            "log1p_features": [f for f in self.features if f in LOG_FEATURES],
            "n_users": int(self.n_users),
            "data_fingerprint": self.fingerprint,
            "version": self.version,
            "model": {k: _jsonable(v) for k, v in self.params.items()},
        }


def _jsonable(v: Any) -> Any:
    """Numpy scalars to Python scalars for JSON."""
    return v.item() if isinstance(v, np.generic) else v


def _n_workers(n_jobs: int | None) -> int:
    """Thread count for scoring: n_jobs, with -1 = all cores."""
    cpus = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return 1
    return max(1, min(cpus, n_jobs if n_jobs > 0 else cpus + 1 + n_jobs))


def _check_share(share: Any) -> float:
    """share as a float strictly between 0 and 1, else DataError."""
    ok = isinstance(share, (int, float, np.integer, np.floating)) and not isinstance(share, bool)
    if not ok or not math.isfinite(float(share)) or not 0.0 < float(share) < 1.0:
        raise DataError(f"share must be a number strictly between 0 and 1, got {share!r}.")
    return float(share)


def robust_centre_scale(Xp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column median and scale of a preprocessed matrix.

    scale = 1.4826 * MAD; where the MAD is 0 (a feature that is constant for most users, e.g.
    addtocart) the standard deviation is used instead, and every scale is at least SCALE_FLOOR.
    """
    med = np.empty(Xp.shape[1])
    scale = np.empty(Xp.shape[1])
    for j in range(Xp.shape[1]):  # column by column: temporaries of one column, not the matrix
        col = Xp[:, j]
        med[j] = np.median(col)
        mad = np.median(np.abs(col - med[j]))
        scale[j] = MAD_TO_SIGMA * mad if mad > 0 else col.std()
    return med, np.maximum(scale, SCALE_FLOOR)


def fit_detector(
    features: pd.DataFrame,
    share: float = DEFAULT_SHARE,
    seed: int = DEFAULT_SEED,
    *,
    n_estimators: int = DEFAULT_N_ESTIMATORS,
    max_samples: int | str = DEFAULT_MAX_SAMPLES,
) -> Detector:
    """Fit log1p preprocessing + IsolationForest; freeze threshold = (1 - share) train quantile.

    Preprocessing: log1p on COUNT_FEATURES, events_per_active_day, p95_gap_s and
    sessions_per_day (heavy-tailed); rates, shares and cat_entropy as is. Every row must be
    scorable (see validate_features), otherwise DataError.
    """
    share = _check_share(share)
    val = validate_features(features)
    if val.missing_columns or not val.scorable.all():
        raise DataError("Cannot fit the detector: " + " ".join(val.messages()))
    if len(features) < 2:
        raise DataError(f"Cannot fit the detector on {len(features)} user(s); need at least 2.")
    feats = tuple(USER_FEATURES)
    X = features.loc[:, list(feats)].to_numpy(np.float64)
    forest = IsolationForest(
        n_estimators=n_estimators,
        max_samples=max_samples,
        random_state=seed,
        n_jobs=-1,
    )
    pipe = Pipeline(
        [
            (
                "log1p",
                FunctionTransformer(log1p_columns, kw_args={"columns": _log_positions(feats)}),
            ),
            ("iforest", forest),
        ]
    )
    pipe.fit(X)
    Xp = pipe[:-1].transform(X)
    medians, scales = robust_centre_scale(Xp)
    del Xp
    det = Detector(
        pipeline=pipe,
        features=feats,
        share=share,
        threshold=float("nan"),
        n_users=len(features),
        medians=medians,
        scales=scales,
        params={
            "model": "IsolationForest",
            "n_estimators": n_estimators,
            "max_samples": max_samples,
            "random_state": seed,
        },
    )
    train_scores = det.score_samples(X)
    det.threshold = float(np.quantile(train_scores, 1 - share))
    log.info(
        "Detector fitted on %d users: share %.3f, threshold %.6f",
        len(features),
        share,
        det.threshold,
    )
    return det


# --------------------------------------------------------------------------- validation


def _numeric(s: pd.Series) -> np.ndarray:
    """A column as float64, non-numbers as NaN."""
    if pd.api.types.is_bool_dtype(s):
        s = s.astype(np.float64)
    elif not pd.api.types.is_numeric_dtype(s):
        s = pd.to_numeric(s, errors="coerce")
    return s.to_numpy(np.float64, na_value=np.nan)


def _as_text(values: np.ndarray) -> np.ndarray:
    """Numbers as display strings: integral values without '.0' (visitor ids, counts)."""
    arr = np.asarray(values, np.float64)
    integral = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2**53)
    as_int = np.where(integral, arr, 0).astype(np.int64).astype(str).astype(object)
    return np.where(integral, as_int, arr.astype(str).astype(object))


@dataclass
class FeatureValidation:
    """What is wrong with a feature table, per column and per row, and which rows can be scored."""

    n_rows: int
    missing_columns: list[str]
    extra_columns: list[str]
    row_problems: pd.DataFrame
    scorable: np.ndarray
    problem_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    first_examples: dict[tuple[str, str], str] = field(default_factory=dict)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when all required columns exist and no row has a problem."""
        return not self.missing_columns and not self.problem_counts

    @property
    def n_scorable(self) -> int:
        """Number of rows that can be scored."""
        return int(self.scorable.sum())

    def messages(self) -> list[str]:
        """Plain sentences: what is wrong, where, and how to fix it."""
        msgs: list[str] = []
        if self.missing_columns:
            msgs.append(
                f"Missing required column(s): {', '.join(self.missing_columns)}. Nothing can be "
                f"scored: the table needs visitorid and all 16 features "
                f"({', '.join(USER_FEATURES)}), e.g. as written by core.anomaly.user_features."
            )
        if self.extra_columns:
            msgs.append(
                f"Extra column(s) kept but not used for scoring: {', '.join(self.extra_columns)}."
            )
        for (col, kind), count in self.problem_counts.items():
            ex = self.first_examples.get((col, kind), "")
            ex = f" (first: {ex})" if ex else ""
            what, fix = _PROBLEM_TEXT[kind]
            msgs.append(f"Column '{col}': {count} row(s) {what}{ex}. {fix}")
        if self.truncated:
            msgs.append(
                f"Only the first {MAX_PROBLEM_ROWS} row problems are listed in detail; "
                "the counts above are complete."
            )
        if self.n_rows and not self.missing_columns:
            n_bad = self.n_rows - self.n_scorable
            if n_bad:
                msgs.append(
                    f"{n_bad} of {self.n_rows} row(s) cannot be scored: they get no anomaly score "
                    "and are never flagged."
                )
        return msgs


_PROBLEM_TEXT: dict[str, tuple[str, str]] = {
    "non_numeric": (
        "are not numbers",
        "Replace them with numeric values; these rows are not scored.",
    ),
    "nan": ("are empty (NaN)", "Fill them in; these rows are not scored."),
    "inf": ("are infinite", "Replace them with finite values; these rows are not scored."),
    "negative": (
        "are negative",
        "Every feature is non-negative by definition; fix the values; these rows are not scored.",
    ),
    "duplicate": (
        "repeat a visitorid seen in an earlier row",
        "Keep one row per visitor; duplicates are still scored, each on its own.",
    ),
    "bad_id": (
        "have no usable visitorid",
        "Give every row a numeric visitorid; the features are still scored.",
    ),
}


def validate_features(df: pd.DataFrame) -> FeatureValidation:
    """Check a feature table (visitorid + 16 features) and mark the rows that can be scored."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"Expected a pandas DataFrame of user features, got {type(df).__name__}.")
    n = len(df)
    required = ("visitorid",) + tuple(USER_FEATURES)
    cols = [str(c) for c in df.columns]
    missing = [c for c in required if c not in cols]
    extra = [c for c in cols if c not in required]
    scorable = np.zeros(n, bool) if missing else np.ones(n, bool)
    counts: dict[tuple[str, str], int] = {}
    examples: dict[tuple[str, str], str] = {}
    parts: list[pd.DataFrame] = []
    has_vis = "visitorid" in df.columns
    vis_raw = df["visitorid"] if has_vis else None
    if has_vis and isinstance(vis_raw, pd.DataFrame):  # duplicated column names
        vis_raw = vis_raw.iloc[:, 0]

    def add(col: str, kind: str, pos: np.ndarray, describe: Any) -> None:
        """Count the problem rows; describe (a string, or a function of the kept positions)
        is only evaluated on the first MAX_PROBLEM_ROWS of them."""
        if pos.size == 0:
            return
        counts[(col, kind)] = counts.get((col, kind), 0) + int(pos.size)
        keep = pos[:MAX_PROBLEM_ROWS]
        if isinstance(describe, str):
            text = np.full(keep.size, describe, dtype=object)
        else:
            text = np.asarray(describe(keep), dtype=object)
        examples.setdefault((col, kind), f"row {int(keep[0])}, {text[0]}")
        parts.append(
            pd.DataFrame(
                {
                    "row": keep.astype(np.int64),
                    "visitorid": (
                        vis_raw.iloc[keep].to_numpy(object) if vis_raw is not None else None
                    ),
                    "column": col,
                    "problem": text,
                }
            )
        )

    for col in USER_FEATURES:
        if col not in df.columns:
            continue
        raw = df[col]
        if isinstance(raw, pd.DataFrame):
            raw = raw.iloc[:, 0]
        vals = _numeric(raw)
        finite = np.isfinite(vals)
        nan = np.isnan(vals)
        if nan.any():
            # NaN after coercion: either really missing, or text that is not a number.
            isna = raw.isna().to_numpy()
            add(
                col,
                "non_numeric",
                np.flatnonzero(nan & ~isna),
                lambda k, raw=raw: "not a number: '" + raw.iloc[k].astype(str) + "'",
            )
            add(col, "nan", np.flatnonzero(nan & isna), "NaN")
        add(
            col,
            "inf",
            np.flatnonzero(np.isinf(vals)),
            lambda k, vals=vals: np.where(vals[k] > 0, "inf", "-inf"),
        )
        label = "negative count " if col in _INT_FEATURES else "negative value "
        add(
            col,
            "negative",
            np.flatnonzero(finite & (vals < 0)),
            lambda k, vals=vals, label=label: label + _as_text(vals[k]),
        )
        scorable &= finite & (vals >= 0)
    if vis_raw is not None and n:
        vnum = pd.to_numeric(vis_raw, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        def bad_id_text(k: np.ndarray) -> np.ndarray:
            bad_raw = vis_raw.iloc[k]
            return np.where(bad_raw.isna(), "NaN", "not a number: '" + bad_raw.astype(str) + "'")

        add("visitorid", "bad_id", np.flatnonzero(~np.isfinite(vnum)), bad_id_text)
        codes, _ = pd.factorize(vis_raw, use_na_sentinel=True)
        valid = codes >= 0
        dup = pd.Series(codes).duplicated(keep="first").to_numpy() & valid
        if dup.any():
            firsts = np.flatnonzero(valid & ~dup)  # factorize numbers codes by first appearance

            def dup_text(k: np.ndarray) -> np.ndarray:
                shown = (
                    _as_text(vnum[k])
                    if pd.api.types.is_numeric_dtype(vis_raw)
                    else vis_raw.iloc[k].astype(str).to_numpy(object)
                )
                also = " (also row " + firsts[codes[k]].astype(str).astype(object) + ")"
                return "duplicate visitorid " + shown + also

            add("visitorid", "duplicate", np.flatnonzero(dup), dup_text)
    if parts:
        problems = pd.concat(parts, ignore_index=True)
        problems = problems.sort_values("row", kind="stable", ignore_index=True)
    else:
        problems = pd.DataFrame(
            {
                "row": np.empty(0, np.int64),
                "visitorid": np.empty(0, object),
                "column": np.empty(0, object),
                "problem": np.empty(0, object),
            }
        )
    truncated = len(problems) > MAX_PROBLEM_ROWS
    if truncated:
        problems = problems.iloc[:MAX_PROBLEM_ROWS].reset_index(drop=True)
    return FeatureValidation(
        n_rows=n,
        missing_columns=missing,
        extra_columns=extra,
        row_problems=problems,
        scorable=scorable,
        problem_counts=counts,
        first_examples=examples,
        truncated=truncated or sum(counts.values()) > MAX_PROBLEM_ROWS,
    )


# --------------------------------------------------------------------------- scoring


def _default_detector() -> Detector:
    """The committed detector, via core.artifacts; ArtifactError when there is none."""
    from core.artifacts import load_artifacts

    arts = load_artifacts()
    if arts.detector is None:
        why = " ".join(arts.problems)
        raise ArtifactError(
            "No verified anomaly detector is available; run `python -m core build` to create "
            f"one. {why}".strip()
        )
    return arts.detector


def _scorable_matrix(df: pd.DataFrame, mask: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """The scorable rows' features as one float64 matrix (a single allocation).

    Column-major: it is filled and hashed (distinct_rows) column by column, 3x faster than
    strided columns; the forest converts it to its own float32 layout anyway.
    """
    n_ok = int(mask.sum())
    X = np.empty((n_ok, len(features)), np.float64, order="F")
    take_all = n_ok == len(df)
    for j, f in enumerate(features):
        col = df[f]
        if isinstance(col, pd.DataFrame):
            col = col.iloc[:, 0]
        vals = _numeric(col)
        X[:, j] = vals if take_all else vals[mask]
    return X


def distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each distinct row of X, code of every row into those positions).

    Rows are grouped by a 64-bit hash of their values, then every row is compared with its
    group's first row, so a hash collision can never merge two different rows (if one ever
    happened, every row is simply its own group).
    """
    n = len(X)
    identity = (np.arange(n), np.arange(n))
    if n < 2:
        return identity
    hashes = pd.util.hash_pandas_object(pd.DataFrame(X, copy=False), index=False).to_numpy()
    codes, _ = pd.factorize(hashes)  # codes are numbered in order of first appearance
    new = np.empty(n, bool)
    new[0] = True
    np.greater(codes[1:], np.maximum.accumulate(codes)[:-1], out=new[1:])
    first = np.flatnonzero(new)
    for j in range(X.shape[1]):  # one column at a time: no full-size copy of X
        if not np.array_equal(X[:, j], X[first[codes], j]):
            log.warning("hash collision in distinct_rows: scoring every row on its own")
            return identity
    return first, codes


def _score_distinct(
    X: np.ndarray, detector: Detector, on_progress: Callable[[float], None] | None
) -> np.ndarray:
    """detector.score_samples of every row of X, each distinct row scored once, in chunks.

    A score depends on the 16 feature values alone, and RetailRocket-like data has about three
    users per distinct feature vector (most visitors have a single view).
    """
    first, codes = distinct_rows(X)
    n = len(first)
    out = np.empty(n, np.float64)
    for start in range(0, n, SCORE_CHUNK_ROWS):
        stop = min(start + SCORE_CHUNK_ROWS, n)
        out[start:stop] = detector.score_samples(X[first[start:stop]])
        if on_progress is not None:
            on_progress(stop / n)
    return out[codes]


def threshold_for(scores: np.ndarray, share: float | None, detector: Detector) -> float:
    """The detector's frozen threshold (share=None), else the (1 - share) quantile of the
    finite scores (the scorable rows of this batch); NaN when none is finite."""
    if share is None:
        return float(detector.threshold)
    share = _check_share(share)
    finite = scores[np.isfinite(scores)]
    return float(np.quantile(finite, 1 - share)) if finite.size else float("nan")


def flag_scores(
    scores: np.ndarray, share: float | None, detector: Detector, index: pd.Index | None = None
) -> pd.DataFrame:
    """anomaly_score / is_anomaly / threshold from scores already computed (NaN = unscorable).

    The threshold rule of ``score``; the dashboard uses it to move the share without rescoring.
    """
    scores = np.asarray(scores, np.float64)
    threshold = threshold_for(scores, share, detector)
    with np.errstate(invalid="ignore"):
        flags = np.isfinite(scores) & (scores >= threshold)
    return pd.DataFrame(
        {"anomaly_score": scores, "is_anomaly": flags, "threshold": np.full(len(scores), threshold)},
        index=index,
    )


def _score_validated(
    df: pd.DataFrame,
    share: float | None,
    detector: Detector | None,
    on_progress: Callable[[float], None] | None = None,
) -> tuple[pd.DataFrame, FeatureValidation]:
    """Scores of every row of df plus the validation behind them."""
    if share is not None:
        share = _check_share(share)
    val = validate_features(df)
    if detector is None:
        detector = _default_detector()
    mask = val.scorable
    scores = np.full(len(df), np.nan)
    if mask.any():
        X = _scorable_matrix(df, mask, detector.features)
        scores[mask] = _score_distinct(X, detector, on_progress)
        del X
    elif on_progress is not None:
        on_progress(1.0)
    return flag_scores(scores, share, detector, index=df.index), val


def score(
    features: pd.DataFrame,
    share: float | None = None,
    detector: Detector | None = None,
    *,
    on_progress: Callable[[float], None] | None = None,
) -> pd.DataFrame:
    """anomaly_score / is_anomaly / threshold for every input row (same index and order).

    share=None uses the detector's frozen threshold; a share in (0, 1) uses this batch's own
    (1 - share) quantile over its scorable rows. Unscorable rows get NaN and False. Identical
    feature rows are scored once (exactly the same scores); ``on_progress`` gets the share of
    distinct rows scored so far, after each chunk of ``SCORE_CHUNK_ROWS``.
    """
    if not isinstance(features, pd.DataFrame):
        raise DataError(
            f"Expected a pandas DataFrame of user features, got {type(features).__name__}."
        )
    return _score_validated(features, share, detector, on_progress)[0]


def score_table(
    df: pd.DataFrame,
    share: float | None = None,
    detector: Detector | None = None,
    *,
    on_progress: Callable[[float], None] | None = None,
) -> tuple[pd.DataFrame, FeatureValidation]:
    """The input columns + anomaly_score, is_anomaly, threshold (every row kept), and validation."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"Expected a pandas DataFrame of user features, got {type(df).__name__}.")
    scored, val = _score_validated(df, share, detector, on_progress)
    out = df.copy(deep=False)
    for c in scored.columns:
        out[c] = scored[c].to_numpy()
    return out, val


def _why_strings(z: np.ndarray, names: np.ndarray, k: int) -> np.ndarray:
    """ "name 4.2σ high, ..." for the k largest |z| of each row of a z matrix."""
    idx = np.argsort(-np.abs(z), axis=1, kind="stable")[:, :k]
    zt = np.take_along_axis(z, idx, axis=1)
    text = None
    for j in range(k):  # a loop over the k named features, not over rows
        part = (
            names[idx[:, j]]
            + " "
            + pd.Series(np.abs(zt[:, j])).map("{:.1f}".format).to_numpy(object)
            + "σ "
            + np.where(zt[:, j] >= 0, "high", "low").astype(object)
        )
        text = part if text is None else text + ", " + part
    return text


EXPLAIN_BLOCK_ROWS = 100_000  # rows per block: bounds the temporary strings' memory


def explain(features: pd.DataFrame, detector: Detector, top_n: int = 3) -> pd.Series:
    """Per row, the top_n features by |robust z| on the preprocessed scale ("" if unscorable)."""
    k = int(top_n)
    if not 1 <= k <= len(detector.features):
        raise DataError(f"top_n must be between 1 and {len(detector.features)}, got {top_n!r}.")
    mask = validate_features(features).scorable
    out = np.full(len(features), "", dtype=object)
    if mask.any():
        X = _scorable_matrix(features, mask, detector.features)
        names = np.asarray(detector.features, dtype=object)
        texts = np.empty(X.shape[0], dtype=object)
        for lo in range(0, X.shape[0], EXPLAIN_BLOCK_ROWS):
            z = detector.robust_z(X[lo : lo + EXPLAIN_BLOCK_ROWS])
            texts[lo : lo + EXPLAIN_BLOCK_ROWS] = _why_strings(z, names, k)
        out[mask] = texts
    return pd.Series(out, index=features.index, name="why", dtype=object)


# --------------------------------------------------------------------------- audits


def proxy_labels(features: pd.DataFrame) -> np.ndarray:
    """Rule-based "obviously abnormal" flags for data without ground truth.

    A user is flagged when any of these holds:
      * burst bot: short_gap_share >= 0.5 with events >= 50;
      * volume: events_per_active_day >= the batch's 99.5th percentile with events >= 20;
      * cart stuffer: addtocart >= 20 with transaction == 0;
      * night scraper: night_share >= 0.8 with events >= 30.
    Non-numeric values count as "rule not met".
    """
    cols = {
        c: _numeric(features[c])
        for c in ("events", "addtocart", "transaction", "short_gap_share",
                  "events_per_active_day", "night_share")
    }
    ev = cols["events"]
    epd = cols["events_per_active_day"]
    fin = np.isfinite(epd)
    q = np.quantile(epd[fin], 0.995) if fin.any() else np.inf
    with np.errstate(invalid="ignore"):
        flags = (
            ((cols["short_gap_share"] >= 0.5) & (ev >= 50))
            | ((epd >= q) & (ev >= 20))
            | ((cols["addtocart"] >= 20) & (cols["transaction"] == 0))
            | ((cols["night_share"] >= 0.8) & (ev >= 30))
        )
    return np.asarray(flags, bool)


DEFAULT_AUDIT_SHARES = np.round(np.arange(0.01, 0.2001, 0.01), 2)


def audit_table(
    scores: np.ndarray,
    labels: np.ndarray | None,
    events_per_user: np.ndarray,
    shares: np.ndarray = DEFAULT_AUDIT_SHARES,
) -> pd.DataFrame:
    """Per flagged share: threshold, n_flagged, precision, recall and events/users removed.

    The threshold at share s is np.quantile(scores, 1 - s); flagged = score >= threshold.
    Rows with a NaN score are left out entirely. labels=None gives NaN precision/recall.
    """
    s = np.asarray(scores, np.float64)
    ev = np.asarray(events_per_user, np.float64)
    lab = None if labels is None else np.asarray(labels, bool)
    if ev.shape != s.shape or (lab is not None and lab.shape != s.shape):
        raise DataError("scores, labels and events_per_user must have the same length.")
    keep = ~np.isnan(s)
    s, ev = s[keep], ev[keep]
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # Suffix sums over the ascending order: the flagged users are a suffix.
    ev_suffix = np.concatenate([np.cumsum(ev[order][::-1])[::-1], [0.0]])
    n = s.size
    shares = np.asarray(shares, np.float64)
    if n:
        thr = np.quantile(s, 1 - shares)
        start = np.searchsorted(s_sorted, thr, side="left")
    else:
        thr = np.full(shares.shape, np.nan)
        start = np.zeros(shares.shape, np.int64)
    n_flag = n - start
    if lab is not None:
        lab = lab[keep]
        tp_suffix = np.concatenate([np.cumsum(lab[order][::-1])[::-1], [0]])
        tp = tp_suffix[start]
        n_pos = int(lab.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(n_flag > 0, tp / np.maximum(n_flag, 1), np.nan)
            recall = tp / n_pos if n_pos else np.full(shares.shape, np.nan)
    else:
        precision = recall = np.full(shares.shape, np.nan)
    total_ev = ev.sum()
    ev_removed = ev_suffix[start]
    return pd.DataFrame(
        {
            "share": shares,
            "threshold": thr,
            "n_flagged": n_flag.astype(np.int64),
            "precision": precision.astype(np.float64),
            "recall": np.asarray(recall, np.float64),
            "events_removed": ev_removed.astype(np.int64),
            "events_removed_share": ev_removed / total_ev if total_ev else np.nan,
            "users_removed_share": n_flag / n if n else np.nan,
        }
    )


def clean_events(events: pd.DataFrame, flagged_visitorids: Any) -> pd.DataFrame:
    """The events without any event of a flagged visitor (order kept, index reset)."""
    flagged = np.asarray(pd.unique(np.asarray(flagged_visitorids).ravel()))
    drop = np.isin(events["visitorid"].to_numpy(), flagged)
    return events.loc[~drop].reset_index(drop=True)


def cleaning_report(before: pd.DataFrame, after: pd.DataFrame) -> dict[str, Any]:
    """Events and users before/after cleaning, removed counts and shares."""
    eb, ea = len(before), len(after)
    ub = int(pd.unique(before["visitorid"].to_numpy()).size)
    ua = int(pd.unique(after["visitorid"].to_numpy()).size)
    return {
        "events_before": eb,
        "events_after": ea,
        "events_removed": eb - ea,
        "events_removed_share": (eb - ea) / eb if eb else 0.0,
        "users_before": ub,
        "users_after": ua,
        "users_removed": ub - ua,
        "users_removed_share": (ub - ua) / ub if ub else 0.0,
    }
