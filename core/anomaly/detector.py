"""Bot detectors in which buying is never evidence of being a bot: estimators and registry.

Every detector sees the behaviour matrix of ``core.anomaly.behaviour`` and turns each column into
a one-sided robust z, ``max(0, (b - median) / upper_scale)``, fitted on the training users, so
unusually *low* values (few events, no carts, long gaps) are never evidence. A visitor who bought
gets ``buyer_margin`` sigmas of benefit of the doubt on every column (an ordinary heavy buyer
drops out, a crawler that once bought stays far above), and a visitor with ``transaction > 0``
scores ``min(score, score as if no purchase)``, so adding transactions, all else equal, can never
raise a score, whatever the model.

Every detector is a scikit-learn-style estimator: ``__init__`` stores parameters only, ``fit``
sets fitted ``*_`` attributes (plain numpy arrays or scikit-learn objects) including
``threshold_``, the (1 - share) quantile of the training users' scores; ``score_samples`` scores
each row on its own (higher = more anomalous); ``predict`` is ``score >= threshold_``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted

from core import __version__
from core.anomaly.behaviour import (
    BEHAVIOUR_COLUMNS,
    TRANSACTION,
    behaviour_matrix,
    feature_matrix,
    raw_priors,
    upper_centre_scale,
    without_purchases,
)
from core.anomaly.validation import check_share, validate_features
from core.base.distinct import distinct_rows
from core.base.errors import DataError
from core.base.forest_eval import MAX_FAST_ROWS, isolation_score_samples
from core.base.schema import DEFAULT_DETECTOR, DEFAULT_SEED, DEFAULT_SHARE, DETECTOR_PREFIX, MODEL_SUFFIX, USER_FEATURES

log = logging.getLogger(__name__)

# A purchase buys this many sigmas of benefit of the doubt on every behaviour column: heavy
# humans and buyers overlap (both browse a lot), and behaviour alone cannot tell a 10-views-a-day
# buyer from a 10-views-a-day bot; bots sit far beyond 2 sigma (crawlers 7-10).
DEFAULT_BUYER_MARGIN = 2.0
# Detectors are fitted on at most this many users, a fixed random sample (fit_sample): the forest
# looks at 256 users per tree anyway, and the (1 - share) quantile of 300,000 training scores
# moves the threshold by less than the seed does; every user is still scored.
DETECTOR_FIT_CAP = 300_000
SCORE_DEFINITION = (
    "anomaly_score of the {name} detector on the one-sided robust z of the behaviour columns "
    "({columns}); higher = more anomalous; a purchase can only lower it. A user is flagged when "
    "anomaly_score >= threshold, the (1 - share) quantile of the training users' scores."
)


class Detector(BaseEstimator):
    """Shared fit/score/predict over one-sided robust z of the behaviour matrix.

    Fitted state: ``priors_``, ``centre_``, ``scale_``, the model's own ``*_`` arrays,
    ``threshold_``, ``n_users_``, ``fingerprint_`` and ``version_``.
    """

    name = "one_sided"
    features: tuple[str, ...] = USER_FEATURES

    def __init__(self, share: float = DEFAULT_SHARE, buyer_margin: float = DEFAULT_BUYER_MARGIN) -> None:
        self.share = share
        self.buyer_margin = buyer_margin

    def _fit_model(self, Z: np.ndarray) -> None:
        """Fit the model-specific state on the training z matrix."""

    def _score_z(self, Z: np.ndarray) -> np.ndarray:
        """Scores of a one-sided z matrix (higher = more anomalous)."""
        raise NotImplementedError

    def one_sided_z(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """max(0, (behaviour - median) / scale - margin) per row and behaviour column; the
        margin is buyer_margin for visitors who bought, 0 otherwise."""
        check_is_fitted(self, "centre_")
        M = feature_matrix(X)
        B = behaviour_matrix(M, self.priors_)
        bought = M[:, TRANSACTION] > 0
        margin = np.where(bought, float(self.buyer_margin), 0.0)[:, None]
        return np.maximum((B - self.centre_) / self.scale_ - margin, 0.0)

    def fit(self, X: pd.DataFrame | np.ndarray, y: Any = None, *, fingerprint: str = "") -> Detector:
        """Fit priors, centre/scale and the model on training users; freeze threshold_."""
        share = check_share(self.share)
        X = feature_matrix(X)
        if len(X) < 2:
            raise DataError(f"Cannot fit a detector on {len(X)} user(s); need at least 2.")
        self.priors_ = raw_priors(X)
        self.centre_, self.scale_ = upper_centre_scale(behaviour_matrix(X, self.priors_))
        self._fit_model(self.one_sided_z(X))
        self.n_features_in_ = len(USER_FEATURES)
        self.n_users_ = len(X)
        self.fingerprint_ = fingerprint
        self.version_ = __version__
        self.threshold_ = float(np.quantile(self.score_samples(X), 1.0 - share))
        log.info("%s fitted on %d users: share %.3f, threshold %.6f", self.name, self.n_users_, share, self.threshold_)
        return self

    def score_samples(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Anomaly score per row (higher = more anomalous); a purchase can only lower it."""
        # One float64 matrix, then numpy only: per-column pandas steps add a fixed cost to every API request.
        M = feature_matrix(X)
        if len(M) == 0:
            return np.empty(0, np.float64)
        bought = M[:, TRANSACTION] > 0
        # A buyer's score is capped by its score as if it had not bought: both rows are turned
        # into z rows (row by row, so together in one call) and go to the model in one call.
        Z = self.one_sided_z(np.concatenate([M, without_purchases(M[bought])]) if bought.any() else M)
        # The only de-duplication of the scoring path: a score depends on its z row alone, and
        # most users share theirs (1.9M users have ~230,000 distinct z rows), so the model
        # scores each distinct z row once.
        first, codes = distinct_rows(Z)
        z_scores = self._score_z(Z[first])[codes] if len(first) < len(Z) else self._score_z(Z)
        s = z_scores[: len(M)]
        if bought.any():
            s[bought] = np.minimum(s[bought], z_scores[len(M) :])
        return s

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """True where the score reaches the frozen threshold."""
        return self.score_samples(X) >= self.threshold_

    def operating_point(self) -> dict[str, Any]:
        """The frozen operating point, as written to task2_operating_point.json."""
        check_is_fitted(self, "threshold_")
        return {
            "detector": self.name,
            "share": float(self.share),
            "threshold": float(self.threshold_),
            "score_definition": SCORE_DEFINITION.format(name=self.name, columns=", ".join(BEHAVIOUR_COLUMNS)),
            "flag_rule": "anomaly_score >= threshold",
            "features": list(self.features),
            "behaviour_columns": list(BEHAVIOUR_COLUMNS),
            "n_users": int(self.n_users_),
            "data_fingerprint": self.fingerprint_,
            "version": self.version_,
            "params": {k: v for k, v in self.get_params().items()},
        }


class IsolationForestDetector(Detector):
    """IsolationForest on the one-sided z matrix: only the bot-ward tails can be isolated."""

    name = "isolation_forest"

    def __init__(
        self,
        share: float = DEFAULT_SHARE,
        buyer_margin: float = DEFAULT_BUYER_MARGIN,
        n_estimators: int = 200,
        max_samples: int = 256,
        random_state: int = DEFAULT_SEED,
        n_jobs: int = 1,
    ) -> None:
        self.share = share
        self.buyer_margin = buyer_margin
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit_model(self, Z: np.ndarray) -> None:
        """Fit the forest."""
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(Z)),
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        ).fit(Z)

    def _score_z(self, Z: np.ndarray) -> np.ndarray:
        """Minus the forest's score_samples."""
        if len(Z) <= MAX_FAST_ROWS:  # a few rows (an API request): identical scores, all trees at once
            return -isolation_score_samples(self.forest_, Z)
        return -self.forest_.score_samples(Z)


class RobustZDetector(Detector):
    """Max (or sum) over behaviour columns of the one-sided robust z."""

    name = "robust_z"

    def __init__(
        self, share: float = DEFAULT_SHARE, buyer_margin: float = DEFAULT_BUYER_MARGIN, combine: str = "max"
    ) -> None:
        self.share = share
        self.buyer_margin = buyer_margin
        self.combine = combine

    def _fit_model(self, Z: np.ndarray) -> None:
        """Nothing beyond centre and scale; checks the combine rule."""
        if self.combine not in ("max", "sum"):
            raise ValueError(f"combine must be 'max' or 'sum', got {self.combine!r}.")

    def _score_z(self, Z: np.ndarray) -> np.ndarray:
        """Row max or sum of z."""
        return Z.max(axis=1) if self.combine == "max" else Z.sum(axis=1)


class HBOSDetector(Detector):
    """Histogram-based outlier score: sum of -log density, bins fitted on training users.

    Bins are equal-width on log1p(z) per column. The per-bin score is made non-decreasing in the
    bot-ward direction (a running max), so a sparse middle bin never outranks the far tail and
    low values never count.
    """

    name = "hbos"

    def __init__(
        self, share: float = DEFAULT_SHARE, buyer_margin: float = DEFAULT_BUYER_MARGIN, n_bins: int = 20
    ) -> None:
        self.share = share
        self.buyer_margin = buyer_margin
        self.n_bins = n_bins

    def _fit_model(self, Z: np.ndarray) -> None:
        """Per column bin width and running-max bin scores."""
        L = np.log1p(Z)
        n, k = L.shape
        self.bin_width_ = np.maximum(L.max(axis=0) / self.n_bins, 1e-9)
        idx = np.minimum((L / self.bin_width_).astype(np.int64), self.n_bins - 1)
        counts = np.zeros((k, self.n_bins))
        np.add.at(counts, (np.broadcast_to(np.arange(k), idx.shape), idx), 1.0)
        # +1 smoothing: an empty bin is as rare as one user, beyond the range rarer still.
        dens = (counts + 1.0) / (n + self.n_bins)
        bin_score = np.maximum.accumulate(-np.log(dens), axis=1)
        beyond = np.maximum(bin_score[:, -1], -np.log(1.0 / (n + self.n_bins)))
        self.bin_score_ = np.column_stack([bin_score, beyond])
        self.bin_score_ -= bin_score[:, :1]  # the first bin (the bulk) scores 0

    def _score_z(self, Z: np.ndarray) -> np.ndarray:
        """Sum of per-column bin scores."""
        idx = np.minimum((np.log1p(Z) / self.bin_width_).astype(np.int64), self.n_bins)
        return self.bin_score_[np.arange(Z.shape[1]), idx].sum(axis=1)


class ECODDetector(Detector):
    """Empirical right-tail probabilities (ECOD, one tail): sum of -log P(train >= z).

    The training survival function is stored on a grid of knots dense in the upper tail, exact at
    the knots, interpolated in log between them, floored at 1 / (n + 1).
    """

    name = "ecod"

    def __init__(
        self, share: float = DEFAULT_SHARE, buyer_margin: float = DEFAULT_BUYER_MARGIN, n_knots: int = 1024
    ) -> None:
        self.share = share
        self.buyer_margin = buyer_margin
        self.n_knots = n_knots

    def _fit_model(self, Z: np.ndarray) -> None:
        """Per column knots and log survival at them (padded to a common length)."""
        n = len(Z)
        probs = np.unique(
            np.concatenate(
                [
                    np.linspace(0.0, 1.0, self.n_knots // 2),
                    1.0 - np.geomspace(1.0, 1.0 / n, self.n_knots // 2),
                ]
            ).clip(0.0, 1.0)
        )
        knots = np.quantile(Z, probs, axis=0, method="inverted_cdf").T
        srt = np.sort(Z, axis=0)
        # P(train >= knot), exactly, by counting below the knot in the sorted column.
        below = np.stack([np.searchsorted(srt[:, j], knots[j], side="left") for j in range(Z.shape[1])])
        self.knots_ = knots
        self.log_sf_ = np.log((n - below + 1.0) / (n + 1.0))
        self.log_floor_ = float(np.log(1.0 / (n + 1.0)))

    def _score_z(self, Z: np.ndarray) -> np.ndarray:
        """Sum over columns of -log tail probability."""
        total = np.zeros(len(Z))
        for j in range(Z.shape[1]):  # a loop over the ~10 behaviour columns, not over users
            k, ls = self.knots_[j], self.log_sf_[j]
            v = np.interp(Z[:, j], k, ls, left=0.0, right=self.log_floor_)
            total -= np.where(Z[:, j] > k[-1], self.log_floor_, v)
        return total


DETECTORS: dict[str, type[Detector]] = {
    "isolation_forest": IsolationForestDetector,
    "robust_z": RobustZDetector,
    "hbos": HBOSDetector,
    "ecod": ECODDetector,
}


def detector_file(name: str) -> str:
    """The artifact file name of a named detector."""
    return f"{DETECTOR_PREFIX}{name}{MODEL_SUFFIX}"


def make_detector(name: str = DEFAULT_DETECTOR, **params: Any) -> Detector:
    """A new, unfitted detector of the registry by name."""
    if name not in DETECTORS:
        raise DataError(f"Unknown detector {name!r}; choose one of {sorted(DETECTORS)}.")
    return DETECTORS[name](**params)


def fit_sample(features: pd.DataFrame, cap: int = DETECTOR_FIT_CAP, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """All users when at most cap, else a fixed random sample of cap users (row order kept)."""
    if len(features) <= cap:
        return features
    idx = np.sort(np.random.default_rng(seed).choice(len(features), cap, replace=False))
    return features.iloc[idx].reset_index(drop=True)


def fit_detector(
    features: pd.DataFrame,
    name: str = DEFAULT_DETECTOR,
    share: float = DEFAULT_SHARE,
    seed: int = DEFAULT_SEED,
    *,
    fingerprint: str = "",
    **params: Any,
) -> Detector:
    """A named detector fitted on a validated user-feature table; DataError if a row is unscorable."""
    check_share(share)
    val = validate_features(features)
    if val.missing_columns or not val.scorable.all():
        raise DataError("Cannot fit the detector: " + " ".join(val.messages()))
    detector = make_detector(name, share=share, **params)
    if "random_state" in detector.get_params() and "random_state" not in params:
        detector.set_params(random_state=seed)
    return detector.fit(features.loc[:, list(USER_FEATURES)], fingerprint=fingerprint)


def why(detector: Detector, X: pd.DataFrame | np.ndarray, top_n: int = 3) -> pd.Series:
    """Per row, the top_n behaviour columns by one-sided z, as "name 4.2σ" ("" when none > 0)."""
    Z = detector.one_sided_z(X)
    k = max(1, min(int(top_n), Z.shape[1]))
    idx = np.argsort(-Z, axis=1, kind="stable")[:, :k]
    zt = np.take_along_axis(Z, idx, axis=1)
    names = np.asarray(BEHAVIOUR_COLUMNS, dtype=object)
    text = np.full(len(X), "", dtype=object)
    for j in range(k):  # a loop over the k named columns, not over rows
        part = np.where(
            zt[:, j] > 0, names[idx[:, j]] + " " + pd.Series(zt[:, j]).map("{:.1f}σ".format).to_numpy(object), ""
        )
        sep = np.where((text != "") & (part != ""), ", ", "")
        text = text + sep + part
    index = X.index if isinstance(X, pd.DataFrame) else None
    return pd.Series(text, index=index, name="why", dtype=object)
