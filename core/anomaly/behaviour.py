"""The behaviour matrix every bot detector sees: one-sided, bot-ward columns from the 16 features.

Each column is oriented so that larger = more bot-like; only that tail counts once a detector
turns it into a one-sided robust z. Conversion is protective, never incriminating:
transactions and purchase rates are not columns; add-to-carts count only for visitors who never
bought (``unbought_carts``); short gaps and the gap percentile are corrected for the checkout
clicks a cart or a purchase explains (each non-view event may explain one short gap).
Volume alone is not evidence: intensity enters per active day, so a loyal visitor of many weeks
is not a crawler. Small-sample shares (night share, short-gap share, gap percentile) are shrunk
towards the training population with a pseudo-count, so one night-time view is not a night
scraper.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from core.base.errors import DataError
from core.base.schema import USER_FEATURES

BEHAVIOUR_COLUMNS: tuple[str, ...] = (
    "intensity",  # log1p(views per active day)
    "new_items_per_day",  # log1p(distinct items per active day)
    "breadth",  # log1p(distinct categories per active day)
    "fast_share",  # shrunk share of view-to-view gaps < 5 s
    "tight_gaps",  # minus shrunk log1p(p95 gap): low p95 = bot-ward
    "night",  # shrunk night share
    "session_rate",  # log1p(sessions per active day)
    "repeat_views",  # views of already-seen items, shrunk towards 0
    "returns_per_item",  # log1p(sessions after the first per distinct item)
    "unbought_carts",  # log1p(addtocart) of visitors who never bought
    "unbought_cart_rate",  # log1p(add_to_view_rate) of visitors who never bought
)
# Pseudo-counts of the shrinkage: gaps for the gap statistics, events for shares of events.
GAP_PSEUDO = 5.0
EVENT_PSEUDO = 20.0
REPEAT_PSEUDO = 3.0
MAD_TO_SIGMA = 1.4826
SCALE_FLOOR = 1e-3


# Position of each feature in a feature matrix (columns in USER_FEATURES order).
FEATURE_INDEX: dict[str, int] = {f: j for j, f in enumerate(USER_FEATURES)}
TRANSACTION = FEATURE_INDEX["transaction"]


def feature_matrix(X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """The 16 features as an (n, 16) float64 matrix in USER_FEATURES order; a clear error when
    any is missing or not finite. A bare matrix must already hold them in that order."""
    if isinstance(X, pd.DataFrame):
        missing = [f for f in USER_FEATURES if f not in X.columns]
        if missing:
            raise DataError(f"Feature table is missing columns {missing}.")
        M = np.empty((len(X), len(USER_FEATURES)), np.float64)
        for j, f in enumerate(USER_FEATURES):
            M[:, j] = X[f].to_numpy(np.float64)
    else:
        M = np.asarray(X, dtype=np.float64)
        if M.ndim != 2 or M.shape[1] != len(USER_FEATURES):
            raise DataError(f"Expected a matrix with {len(USER_FEATURES)} feature columns, got shape {M.shape}.")
    finite = np.asarray(np.isfinite(M).all(axis=0))
    if not finite.all():
        bad = [f for f, ok in zip(USER_FEATURES, finite.tolist()) if not ok]
        raise DataError(f"Feature columns {bad} have NaN or inf values; validate rows first.")
    return M


def _columns(M: np.ndarray) -> dict[str, np.ndarray]:
    """The columns of a feature matrix by feature name (views, no copies)."""
    return {f: M[:, j] for f, j in FEATURE_INDEX.items()}


def _gap_counts(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(view-to-view gaps, short view-to-view gaps): checkout clicks removed, one per non-view."""
    n = c["events"]
    nonview = n - c["view"]
    gaps = np.maximum(n - 1, 0)
    short = np.rint(c["short_gap_share"] * gaps)
    return np.maximum(gaps - nonview, 0), np.maximum(short - nonview, 0)


def raw_priors(X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Population priors of the shrunk columns: fast-gap share, log1p p95 gap, night share.

    Per-user averages, not pooled over events: a few crawlers with thousands of events must not
    set what a normal visitor looks like.
    """
    c = _columns(feature_matrix(X))
    vg, vs = _gap_counts(c)
    some = vg >= 1
    fast = float(np.mean(vs[some] / vg[some])) if some.any() else 0.0
    many = vg >= 2
    lp95 = float(np.median(np.log1p(c["p95_gap_s"][many]))) if many.any() else 0.0
    night = float(np.mean(c["night_share"]))
    return np.array([fast, lp95, night], np.float64)


def behaviour_matrix(X: pd.DataFrame | np.ndarray, priors: np.ndarray) -> np.ndarray:
    """The (n, len(BEHAVIOUR_COLUMNS)) bot-ward matrix of a feature table or matrix, row by row."""
    c = _columns(feature_matrix(X))
    n = np.maximum(c["events"], 1.0)
    view = c["view"]
    days = n / np.maximum(c["events_per_active_day"], 1e-12)
    vg, vs = _gap_counts(c)
    fast_prior, lp95_prior, night_prior = priors
    bought = c["transaction"] > 0
    cols = [
        np.log1p(view / days),
        np.log1p(c["uniq_items"] / days),
        np.log1p(c["uniq_cats"] / days),
        (vs + GAP_PSEUDO * fast_prior) / (vg + GAP_PSEUDO),
        -(vg * np.log1p(c["p95_gap_s"]) + GAP_PSEUDO * lp95_prior) / (vg + GAP_PSEUDO),
        (c["night_share"] * n + EVENT_PSEUDO * night_prior) / (n + EVENT_PSEUDO),
        np.log1p(c["sessions_per_day"]),
        np.maximum(view - c["uniq_items"], 0) / (view + REPEAT_PSEUDO),
        np.log1p(np.maximum(c["n_sessions"] - 1, 0) / np.maximum(c["uniq_items"], 1)),
        np.where(bought, 0.0, np.log1p(c["addtocart"])),
        np.where(bought, 0.0, np.log1p(c["add_to_view_rate"])),
    ]
    return np.column_stack(cols)


def upper_centre_scale(B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column median and upper semi-MAD scale (only the bot-ward half sets the unit)."""
    med = np.median(B, axis=0)
    above = med < B
    dev = np.where(above, B - med, np.nan)
    with warnings.catch_warnings():  # a column with nothing above its median: all-NaN slice
        warnings.simplefilter("ignore", RuntimeWarning)
        semi = np.nanmedian(dev, axis=0) if above.any() else np.zeros(B.shape[1])
    semi = np.where(np.isfinite(semi), semi, 0.0)
    return med, np.maximum(MAD_TO_SIGMA * semi, SCALE_FLOOR)


def without_purchases(M: np.ndarray) -> np.ndarray:
    """A copy of a feature matrix with transaction = 0 (the counterfactual a buyer's score is capped by)."""
    M0 = M.copy()
    M0[:, TRANSACTION] = 0.0
    return M0
