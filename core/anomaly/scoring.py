"""Scoring tables of user features with a given detector: every row kept, flags, explanations.

Identical feature rows are scored once; unscorable rows (see ``validate_features``) keep their
place with a NaN score and no flag. The detector is always passed in: nothing here reads disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from core.anomaly.detector import Detector, why
from core.anomaly.policy import DEFAULT_PROTECT_BUYERS, apply_policy, policy_label
from core.anomaly.validation import (
    FeatureMatrix,
    FeatureValidation,
    check_share,
    numeric,
    small_feature_matrix,
    validate_features,
)
from core.base.errors import DataError
from core.base.schema import USER_FEATURES

log = logging.getLogger(__name__)

# Rows scored per step of score(on_progress=...): a progress bar moves
# every ~0.3 s at RetailRocket scale, and each step is still big enough for the thread blocks.
SCORE_CHUNK_ROWS = 200_000
EXPLAIN_BLOCK_ROWS = 100_000  # rows per block: bounds the temporary strings' memory


def _scorable_matrix(df: pd.DataFrame | FeatureMatrix, mask: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """The scorable rows' features as one float64 matrix (a single allocation).

    Column-major: it is filled column by column, faster than strided columns; the detector
    turns it into its own z matrix anyway.
    """
    small = df if isinstance(df, FeatureMatrix) else small_feature_matrix(df)
    n_ok = int(mask.sum())
    take_all = n_ok == len(df)
    if small is not None and features == USER_FEATURES:  # the matrix is there already
        return small.values if take_all else np.asfortranarray(small.values[mask])
    X = np.empty((n_ok, len(features)), np.float64, order="F")
    for j, f in enumerate(features):
        if small is not None:
            vals = small[f]
        else:
            col = df[f]
            if isinstance(col, pd.DataFrame):
                col = col.iloc[:, 0]
            vals = numeric(col)
        X[:, j] = vals if take_all else vals[mask]
    return X


def _score_in_chunks(X: np.ndarray, detector: Detector, on_progress: Callable[[float], None] | None) -> np.ndarray:
    """detector.score_samples of every row of X, in chunks of SCORE_CHUNK_ROWS rows when progress
    is reported (the detector scores each distinct row of a chunk once)."""
    n = len(X)
    if on_progress is None:
        return detector.score_samples(X)
    out = np.empty(n, np.float64)
    for start in range(0, n, SCORE_CHUNK_ROWS):
        stop = min(start + SCORE_CHUNK_ROWS, n)
        out[start:stop] = detector.score_samples(X[start:stop])
        on_progress(stop / n)
    return out


def threshold_for(scores: np.ndarray, share: float | None, detector: Detector) -> float:
    """The detector's frozen threshold (share=None), else the (1 - share) quantile of the
    finite scores (the scorable rows of this batch); NaN when none is finite."""
    if share is None:
        return float(detector.threshold_)
    share = check_share(share)
    finite = scores[np.isfinite(scores)]
    return float(np.quantile(finite, 1 - share)) if finite.size else float("nan")


def flags_and_threshold(
    scores: np.ndarray,
    share: float | None,
    detector: Detector,
    features: pd.DataFrame | FeatureMatrix,
    *,
    protect_buyers: bool = DEFAULT_PROTECT_BUYERS,
) -> tuple[np.ndarray, float]:
    """The flags and threshold of ``flag_scores`` as plain numpy (the API builds no table from them)."""
    threshold = threshold_for(scores, share, detector)
    with np.errstate(invalid="ignore"):
        flags = np.isfinite(scores) & (scores >= threshold)
    return apply_policy(flags, features, protect_buyers), threshold


def flag_scores(
    scores: np.ndarray,
    share: float | None,
    detector: Detector,
    features: pd.DataFrame,
    *,
    protect_buyers: bool = DEFAULT_PROTECT_BUYERS,
) -> pd.DataFrame:
    """anomaly_score / is_anomaly / threshold from scores already computed (NaN = unscorable).

    The threshold and policy rule of ``score``; the dashboard uses it to move the share or
    toggle the policy without rescoring. The threshold is set on every scorable row's score;
    the policy then unflags visitors who bought, so fewer than ``share`` may be flagged.
    """
    scores = np.asarray(scores, np.float64)
    flags, threshold = flags_and_threshold(scores, share, detector, features, protect_buyers=protect_buyers)
    return pd.DataFrame(
        {"anomaly_score": scores, "is_anomaly": flags, "threshold": np.full(len(scores), threshold)},
        index=features.index,
    )


def provenance(detector: Detector, protect_buyers: bool, threshold: float) -> dict[str, object]:
    """The columns every scored output carries: which detector, policy and threshold."""
    return {"detector": detector.name, "policy": policy_label(protect_buyers), "threshold": float(threshold)}


def stamped(frame: pd.DataFrame, detector: Detector, protect_buyers: bool, threshold: float) -> pd.DataFrame:
    """frame plus the detector, policy and threshold columns (a shallow copy)."""
    out = frame.copy(deep=False)
    for col, value in provenance(detector, protect_buyers, threshold).items():
        out[col] = value
    return out


def score_rows(
    df: pd.DataFrame | FeatureMatrix,
    scorable: np.ndarray,
    detector: Detector,
    on_progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """The score of every row of df (NaN where ``scorable``, from ``validate_features``, is False).

    For a caller that has validated df already (the dashboard keeps the validation to show it):
    ``score`` would validate again, which at 1.4M rows costs 0.3 s and 170 MB of temporaries.
    """
    scores = np.full(len(df), np.nan)
    if scorable.any():
        X = _scorable_matrix(df, scorable, detector.features)
        scores[scorable] = _score_in_chunks(X, detector, on_progress)
        del X
    elif on_progress is not None:
        on_progress(1.0)
    return scores


def _score_validated(
    df: pd.DataFrame,
    share: float | None,
    detector: Detector,
    protect_buyers: bool,
    on_progress: Callable[[float], None] | None = None,
) -> tuple[pd.DataFrame, FeatureValidation]:
    """Scores of every row of df plus the validation behind them."""
    if share is not None:
        share = check_share(share)
    val = validate_features(df)
    scores = score_rows(df, val.scorable, detector, on_progress)
    flagged = flag_scores(scores, share, detector, df, protect_buyers=protect_buyers)
    return flagged, val


def score(
    features: pd.DataFrame,
    share: float | None = None,
    *,
    detector: Detector,
    protect_buyers: bool = DEFAULT_PROTECT_BUYERS,
    on_progress: Callable[[float], None] | None = None,
) -> pd.DataFrame:
    """anomaly_score / is_anomaly / threshold for every input row (same index and order).

    share=None uses the detector's frozen threshold; a share in (0, 1) uses this batch's own
    (1 - share) quantile over its scorable rows. ``protect_buyers`` (the "keep visitors who
    bought" policy) unflags every row with transaction > 0. Unscorable rows get NaN and False. Identical
    rows are scored once (exactly the same scores); ``on_progress`` gets the share of rows
    scored so far, after each chunk of ``SCORE_CHUNK_ROWS``.
    """
    if not isinstance(features, pd.DataFrame):
        raise DataError(f"Expected a pandas DataFrame of user features, got {type(features).__name__}.")
    return _score_validated(features, share, detector, protect_buyers, on_progress)[0]


def score_table(
    df: pd.DataFrame,
    share: float | None = None,
    *,
    detector: Detector,
    protect_buyers: bool = DEFAULT_PROTECT_BUYERS,
    on_progress: Callable[[float], None] | None = None,
) -> tuple[pd.DataFrame, FeatureValidation]:
    """The input columns + anomaly_score, is_anomaly, threshold (every row kept), and validation."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"Expected a pandas DataFrame of user features, got {type(df).__name__}.")
    scored, val = _score_validated(df, share, detector, protect_buyers, on_progress)
    out = df.copy(deep=False)
    for c in scored.columns:
        out[c] = scored[c].to_numpy()
    return out, val


def explain(features: pd.DataFrame, detector: Detector, top_n: int = 3) -> pd.Series:
    """Per row, the top_n behaviour columns by one-sided z, "name 4.2σ" ("" when unscorable or
    when no column is above the training users' usual range)."""
    k = int(top_n)
    n_cols = len(detector.centre_)
    if not 1 <= k <= n_cols:
        raise DataError(f"top_n must be between 1 and {n_cols}, got {top_n!r}.")
    mask = validate_features(features).scorable
    out = np.full(len(features), "", dtype=object)
    if mask.any():
        X = _scorable_matrix(features, mask, detector.features)
        texts = np.empty(X.shape[0], dtype=object)
        for lo in range(0, X.shape[0], EXPLAIN_BLOCK_ROWS):
            texts[lo : lo + EXPLAIN_BLOCK_ROWS] = why(detector, X[lo : lo + EXPLAIN_BLOCK_ROWS], k).to_numpy()
        out[mask] = texts
    return pd.Series(out, index=features.index, name="why", dtype=object)
