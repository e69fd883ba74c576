"""The anomaly detector: log1p preprocessing + IsolationForest with a frozen operating point.

Preprocessing (fixed, no fitted state): ``log1p`` on the count features (``COUNT_FEATURES``) and
on the heavy-tailed ``events_per_active_day``, ``p95_gap_s`` and ``sessions_per_day``; the rates
and shares (already in [0, 1]-ish ranges) and ``cat_entropy`` are left as they are. The anomaly
score is ``-IsolationForest.score_samples`` (higher = more anomalous). The frozen threshold of an
operating point with flagged share s is ``np.quantile(training scores, 1 - s)``; a user is
flagged when its score is ``>= threshold``. The robust z-scores behind the "why" strings use
``(x - median) / (1.4826 * MAD)`` per preprocessed feature on the training users (the standard
deviation replaces a zero MAD, and every scale is at least ``SCALE_FLOOR``).

Forest size: 200 trees of 256-sample subsamples (the IsolationForest paper's defaults). Scoring
cost grows with trees x log2(max_samples), not with the training size; scoring runs in row
blocks on threads, which keeps every score bit-identical whatever the thread count.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_is_fitted

from core import __version__
from core.anomaly.validation import check_share, validate_features
from core.errors import DataError
from core.schema import COUNT_FEATURES, DEFAULT_SEED, DEFAULT_SHARE, USER_FEATURES

log = logging.getLogger(__name__)

# Heavy-tailed non-count features that also go through log1p before the forest.
LOG_EXTRA_FEATURES: tuple[str, ...] = ("events_per_active_day", "p95_gap_s", "sessions_per_day")
LOG_FEATURES: tuple[str, ...] = tuple(
    f for f in USER_FEATURES if f in COUNT_FEATURES or f in LOG_EXTRA_FEATURES
)
DEFAULT_N_ESTIMATORS = 200
DEFAULT_MAX_SAMPLES = 256
MAD_TO_SIGMA = 1.4826
# Scale floor on the preprocessed scale (log units / shares), so a feature that is constant in
# training still gives a finite z.
SCALE_FLOOR = 1e-3
# Below this many rows one thread scores faster than starting a pool.
THREADED_MIN_ROWS = 20_000
SCORE_DEFINITION = (
    "anomaly_score = -IsolationForest.score_samples(preprocessed features); higher = more "
    "anomalous. Preprocessing: log1p on {logs}; other features as is. A user is flagged when "
    "anomaly_score >= threshold, the (1 - share) quantile of the training users' scores."
)


def log1p_columns(X: np.ndarray, columns: tuple[int, ...] = ()) -> np.ndarray:
    """Copy of X (float64) with log1p applied to the given column positions."""
    X = np.array(X, dtype=np.float64, copy=True)
    for j in columns:
        np.log1p(X[:, j], out=X[:, j])
    return X


def robust_centre_scale(Xp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column median and scale (1.4826 * MAD, else the std, floored) of a preprocessed matrix.

    A zero MAD happens for features that are constant for most users (e.g. addtocart).
    """
    med = np.empty(Xp.shape[1])
    scale = np.empty(Xp.shape[1])
    for j in range(Xp.shape[1]):  # column by column: temporaries of one column, not the matrix
        col = Xp[:, j]
        med[j] = np.median(col)
        mad = np.median(np.abs(col - med[j]))
        scale[j] = MAD_TO_SIGMA * mad if mad > 0 else col.std()
    return med, np.maximum(scale, SCALE_FLOOR)


def n_workers(n_jobs: int | None) -> int:
    """Thread count for scoring: n_jobs, with -1 = all cores."""
    cpus = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return 1
    return max(1, min(cpus, n_jobs if n_jobs > 0 else cpus + 1 + n_jobs))


class Detector(BaseEstimator):
    """log1p + IsolationForest whose ``fit`` freezes the (1 - share) training-score quantile.

    Fitted state: ``model_`` (the sklearn Pipeline), ``threshold_``, ``centre_`` and ``scale_``
    (robust z on the preprocessed scale), ``n_users_``, ``fingerprint_`` and ``version_``.
    """

    def __init__(
        self,
        features: tuple[str, ...] = USER_FEATURES,
        share: float = DEFAULT_SHARE,
        n_estimators: int = DEFAULT_N_ESTIMATORS,
        max_samples: int | str = DEFAULT_MAX_SAMPLES,
        random_state: int = DEFAULT_SEED,
        log_features: tuple[str, ...] = LOG_FEATURES,
    ) -> None:
        self.features = features
        self.share = share
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state
        self.log_features = log_features

    def fit(self, X: np.ndarray | pd.DataFrame, y: Any = None, *, fingerprint: str = "") -> Detector:
        """Fit the forest and freeze threshold_, centre_ and scale_ on the rows of X."""
        share = check_share(self.share)
        X = self._matrix(X)
        if len(X) < 2:
            raise DataError(f"Cannot fit the detector on {len(X)} user(s); need at least 2.")
        positions = tuple(i for i, f in enumerate(self.features) if f in self.log_features)
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            random_state=self.random_state,
            n_jobs=-1,
        )
        model = Pipeline(
            [
                ("log1p", FunctionTransformer(log1p_columns, kw_args={"columns": positions})),
                ("iforest", forest),
            ]
        )
        model.fit(X)
        self.model_ = model
        self.centre_, self.scale_ = robust_centre_scale(model[:-1].transform(X))
        self.n_users_ = len(X)
        self.fingerprint_ = fingerprint
        self.version_ = __version__
        self.threshold_ = float(np.quantile(self.score_samples(X), 1 - share))
        log.info(
            "Detector fitted on %d users: share %.3f, threshold %.6f",
            self.n_users_,
            share,
            self.threshold_,
        )
        return self

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

    def preprocess(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """The preprocessed (log1p) matrix the forest and the z-scores see."""
        check_is_fitted(self, "model_")
        return self.model_[:-1].transform(self._matrix(X))

    def score_samples(self, X: np.ndarray | pd.DataFrame, n_jobs: int = -1) -> np.ndarray:
        """Anomaly scores (higher = more anomalous) of the rows of X."""
        check_is_fitted(self, "model_")
        X = self._matrix(X)
        n = X.shape[0]
        if n == 0:
            return np.empty(0, np.float64)
        workers = n_workers(n_jobs)
        # Row blocks on threads (tree traversal releases the GIL). Each row's score sums its
        # tree depths in tree order whatever the blocking, so results are bit-identical for
        # any n_jobs, unlike sklearn's tree-parallel scoring.
        if workers == 1 or n < THREADED_MIN_ROWS:
            return -self.model_.score_samples(X)
        bounds = np.linspace(0, n, workers + 1).astype(int)
        out = np.empty(n, np.float64)

        def run(k: int) -> None:
            lo, hi = bounds[k], bounds[k + 1]
            out[lo:hi] = -self.model_.score_samples(X[lo:hi])

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, range(workers)))
        return out

    def predict(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """1 for rows flagged at the frozen threshold (score >= threshold_), else 0."""
        return (self.score_samples(X) >= self.threshold_).astype(np.int64)

    def robust_z(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Robust z-scores of the preprocessed features: (x - centre_) / scale_."""
        return (self.preprocess(X) - self.centre_) / self.scale_

    def operating_point(self) -> dict[str, Any]:
        """The frozen operating point, as written to task2_operating_point.json."""
        check_is_fitted(self, "threshold_")
        logs = [f for f in self.features if f in self.log_features]
        return {
            "share": float(self.share),
            "threshold": float(self.threshold_),
            "score_definition": SCORE_DEFINITION.format(logs=", ".join(logs)),
            "flag_rule": "anomaly_score >= threshold",
            "features": list(self.features),
            "log1p_features": logs,
            "n_users": int(self.n_users_),
            "data_fingerprint": self.fingerprint_,
            "version": self.version_,
            "model": {
                "model": "IsolationForest",
                "n_estimators": self.n_estimators,
                "max_samples": self.max_samples,
                "random_state": self.random_state,
            },
        }


def fit_detector(
    features: pd.DataFrame,
    share: float = DEFAULT_SHARE,
    seed: int = DEFAULT_SEED,
    *,
    n_estimators: int = DEFAULT_N_ESTIMATORS,
    max_samples: int | str = DEFAULT_MAX_SAMPLES,
    fingerprint: str = "",
) -> Detector:
    """A Detector fitted on a validated user-feature table; DataError if any row is unscorable."""
    check_share(share)
    val = validate_features(features)
    if val.missing_columns or not val.scorable.all():
        raise DataError("Cannot fit the detector: " + " ".join(val.messages()))
    detector = Detector(
        share=share, n_estimators=n_estimators, max_samples=max_samples, random_state=seed
    )
    return detector.fit(features, fingerprint=fingerprint)
