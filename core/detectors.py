"""Bot detectors in which buying is never evidence of being a bot, and how to judge them.

Design
------
Every detector sees the same *behaviour* matrix, derived row by row from the 16 user features
(see ``BEHAVIOUR_COLUMNS``). Each column is oriented so that larger = more bot-like, and only that
tail counts: a column is turned into a one-sided robust z, ``max(0, (t - median) / upper_scale)``,
fitted on the training users, so unusually *low* values (few events, no carts, long gaps) are
never evidence. Volume alone is not evidence either: intensity enters per active day, so a loyal
visitor of many weeks is not a crawler.

Conversion is protective, never incriminating:

* transactions and purchase rates are not model inputs;
* add-to-carts count only for visitors who never bought (``unbought_carts``), so heavy buyers and
  B2B resellers carry no cart evidence while cart stuffers do;
* short gaps and the gap percentile are corrected for the checkout clicks a cart or a purchase
  explains (each non-view event may explain one short gap);
* a visitor who bought gets ``buyer_margin`` sigmas of benefit of the doubt on every column
  (an ordinary heavy buyer drops out, a crawler that once bought stays far above);
* a visitor with ``transaction > 0`` scores ``min(score, score as if no purchase)``, so adding
  transactions, all else equal, can never raise a score, whatever the model.

Small-sample shares (night share, short-gap share, gap percentile) are shrunk towards the
training population with a pseudo-count, so one night-time view is not a night scraper.

Every detector is a scikit-learn-style estimator: ``__init__`` stores parameters only, ``fit``
sets fitted ``*_`` attributes (plain numpy arrays or scikit-learn objects) including
``threshold_``, the (1 - share) quantile of the training users' scores; ``score_samples`` scores
each row on its own (higher = more anomalous); ``predict`` is ``score >= threshold_``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score

from core.schema import DEFAULT_SEED, DEFAULT_SHARE, USER_FEATURES

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
# A purchase buys this many sigmas of benefit of the doubt on every behaviour column: heavy
# humans and buyers overlap (both browse a lot), and behaviour alone cannot tell a 10-views-a-day
# buyer from a 10-views-a-day bot; bots sit far beyond 2 sigma (crawlers 7-10).
DEFAULT_BUYER_MARGIN = 2.0
DEFAULT_SHARES: np.ndarray = np.round(np.arange(0.01, 0.2001, 0.01), 2)
TXN_WARNING_SHARE = 0.05


# --------------------------------------------------------------------------- behaviour matrix


def _columns(X: pd.DataFrame) -> dict[str, np.ndarray]:
    """The 16 features as float64 arrays; a clear error when any is missing or not finite."""
    missing = [f for f in USER_FEATURES if f not in X.columns]
    if missing:
        raise ValueError(f"Feature table is missing columns {missing}.")
    cols = {f: X[f].to_numpy(np.float64) for f in USER_FEATURES}
    bad = [f for f, v in cols.items() if not np.isfinite(v).all()]
    if bad:
        raise ValueError(f"Feature columns {bad} have NaN or inf values; validate rows first.")
    return cols


def _gap_counts(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(view-to-view gaps, short view-to-view gaps): checkout clicks removed, one per non-view."""
    n = c["events"]
    nonview = n - c["view"]
    gaps = np.maximum(n - 1, 0)
    short = np.rint(c["short_gap_share"] * gaps)
    return np.maximum(gaps - nonview, 0), np.maximum(short - nonview, 0)


def raw_priors(X: pd.DataFrame) -> np.ndarray:
    """Population priors of the shrunk columns: fast-gap share, log1p p95 gap, night share.

    Per-user averages, not pooled over events: a few crawlers with thousands of events must not
    set what a normal visitor looks like.
    """
    c = _columns(X)
    vg, vs = _gap_counts(c)
    some = vg >= 1
    fast = float(np.mean(vs[some] / vg[some])) if some.any() else 0.0
    many = vg >= 2
    lp95 = float(np.median(np.log1p(c["p95_gap_s"][many]))) if many.any() else 0.0
    night = float(np.mean(c["night_share"]))
    return np.array([fast, lp95, night], np.float64)


def behaviour_matrix(X: pd.DataFrame, priors: np.ndarray) -> np.ndarray:
    """The (n, len(BEHAVIOUR_COLUMNS)) bot-ward matrix of a feature table, row by row."""
    c = _columns(X)
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
    above = B > med
    dev = np.where(above, B - med, np.nan)
    with np.errstate(all="ignore"):
        semi = np.nanmedian(dev, axis=0) if above.any() else np.zeros(B.shape[1])
    semi = np.where(np.isfinite(semi), semi, 0.0)
    return med, np.maximum(MAD_TO_SIGMA * semi, SCALE_FLOOR)


def _without_purchases(X: pd.DataFrame) -> pd.DataFrame:
    """The same rows with transaction = 0 (the counterfactual a buyer's score is capped by)."""
    X0 = X.loc[:, list(USER_FEATURES)].copy()
    X0["transaction"] = 0
    return X0


# --------------------------------------------------------------------------- estimators


class OneSidedDetector(BaseEstimator):
    """Shared fit/score/predict over one-sided robust z of the behaviour matrix."""

    name = "one_sided"

    def __init__(self, share: float = DEFAULT_SHARE,
                 buyer_margin: float = DEFAULT_BUYER_MARGIN) -> None:
        self.share = share
        self.buyer_margin = buyer_margin

    def _fit_model(self, Z: np.ndarray) -> None:
        """Fit the model-specific state on the training z matrix."""

    def _score_z(self, Z: np.ndarray) -> np.ndarray:
        """Scores of a one-sided z matrix (higher = more anomalous)."""
        raise NotImplementedError

    def one_sided_z(self, X: pd.DataFrame) -> np.ndarray:
        """max(0, (behaviour - median) / scale - margin) per row and behaviour column; the
        margin is buyer_margin for visitors who bought, 0 otherwise."""
        B = behaviour_matrix(X, self.priors_)
        bought = X["transaction"].to_numpy(np.float64) > 0
        margin = np.where(bought, float(self.buyer_margin), 0.0)[:, None]
        return np.maximum((B - self.centre_) / self.scale_ - margin, 0.0)

    def fit(self, X: pd.DataFrame, y: Any = None) -> OneSidedDetector:
        """Fit priors, centre/scale and the model on training users; freeze threshold_."""
        if not 0.0 < float(self.share) < 1.0:
            raise ValueError(f"share must be strictly between 0 and 1, got {self.share!r}.")
        if len(X) < 2:
            raise ValueError(f"Cannot fit a detector on {len(X)} user(s); need at least 2.")
        self.priors_ = raw_priors(X)
        self.centre_, self.scale_ = upper_centre_scale(behaviour_matrix(X, self.priors_))
        self._fit_model(self.one_sided_z(X))
        self.n_features_in_ = len(USER_FEATURES)
        self.threshold_ = float(np.quantile(self.score_samples(X), 1.0 - float(self.share)))
        return self

    def score_samples(self, X: pd.DataFrame) -> np.ndarray:
        """Anomaly score per row (higher = more anomalous); a purchase can only lower it."""
        s = self._score_z(self.one_sided_z(X))
        bought = X["transaction"].to_numpy(np.float64) > 0
        if bought.any():
            s0 = self._score_z(self.one_sided_z(_without_purchases(X.loc[bought])))
            s[bought] = np.minimum(s[bought], s0)
        return s

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """True where the score reaches the frozen threshold."""
        return self.score_samples(X) >= self.threshold_


class IsolationForestDetector(OneSidedDetector):
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
        return -self.forest_.score_samples(Z)


class RobustZDetector(OneSidedDetector):
    """Max (or sum) over behaviour columns of the one-sided robust z."""

    name = "robust_z"

    def __init__(self, share: float = DEFAULT_SHARE,
                 buyer_margin: float = DEFAULT_BUYER_MARGIN, combine: str = "max") -> None:
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


class HBOSDetector(OneSidedDetector):
    """Histogram-based outlier score: sum of -log density, bins fitted on training users.

    Bins are equal-width on log1p(z) per column. The per-bin score is made non-decreasing in the
    bot-ward direction (a running max), so a sparse middle bin never outranks the far tail and
    low values never count.
    """

    name = "hbos"

    def __init__(self, share: float = DEFAULT_SHARE,
                 buyer_margin: float = DEFAULT_BUYER_MARGIN, n_bins: int = 20) -> None:
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


class ECODDetector(OneSidedDetector):
    """Empirical right-tail probabilities (ECOD, one tail): sum of -log P(train >= z).

    The training survival function is stored on a grid of knots dense in the upper tail, exact at
    the knots, interpolated in log between them, floored at 1 / (n + 1).
    """

    name = "ecod"

    def __init__(self, share: float = DEFAULT_SHARE,
                 buyer_margin: float = DEFAULT_BUYER_MARGIN, n_knots: int = 1024) -> None:
        self.share = share
        self.buyer_margin = buyer_margin
        self.n_knots = n_knots

    def _fit_model(self, Z: np.ndarray) -> None:
        """Per column knots and log survival at them (padded to a common length)."""
        n = len(Z)
        probs = np.unique(np.concatenate([
            np.linspace(0.0, 1.0, self.n_knots // 2),
            1.0 - np.geomspace(1.0, 1.0 / n, self.n_knots // 2),
        ]).clip(0.0, 1.0))
        knots = np.quantile(Z, probs, axis=0, method="inverted_cdf").T
        srt = np.sort(Z, axis=0)
        # P(train >= knot), exactly, by counting below the knot in the sorted column.
        below = np.stack([np.searchsorted(srt[:, j], knots[j], side="left")
                          for j in range(Z.shape[1])])
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


DETECTORS: dict[str, type[OneSidedDetector]] = {
    "isolation_forest": IsolationForestDetector,
    "robust_z": RobustZDetector,
    "hbos": HBOSDetector,
    "ecod": ECODDetector,
}
DEFAULT_DETECTOR = "isolation_forest"


def make_detector(name: str = DEFAULT_DETECTOR, **params: Any) -> OneSidedDetector:
    """A new, unfitted detector of the registry by name."""
    if name not in DETECTORS:
        raise ValueError(f"Unknown detector {name!r}; choose one of {sorted(DETECTORS)}.")
    return DETECTORS[name](**params)


def why(detector: OneSidedDetector, X: pd.DataFrame, top_n: int = 3) -> pd.Series:
    """Per row, the top_n behaviour columns by one-sided z, as "name 4.2σ" ("" when none > 0)."""
    Z = detector.one_sided_z(X)
    k = max(1, min(int(top_n), Z.shape[1]))
    idx = np.argsort(-Z, axis=1, kind="stable")[:, :k]
    zt = np.take_along_axis(Z, idx, axis=1)
    names = np.asarray(BEHAVIOUR_COLUMNS, dtype=object)
    text = np.full(len(X), "", dtype=object)
    for j in range(k):  # a loop over the k named columns, not over rows
        part = np.where(zt[:, j] > 0, names[idx[:, j]] + " "
                        + pd.Series(zt[:, j]).map("{:.1f}σ".format).to_numpy(object), "")
        sep = np.where((text != "") & (part != ""), ", ", "")
        text = text + sep + part
    return pd.Series(text, index=X.index, name="why", dtype=object)


# --------------------------------------------------------------------------- policy and cost


def apply_policy(flags: np.ndarray, features: pd.DataFrame, protect_buyers: bool) -> np.ndarray:
    """Flags after the "keep visitors who bought" policy (unflag transaction > 0 when on)."""
    flags = np.asarray(flags, bool)
    if not protect_buyers:
        return flags.copy()
    return flags & ~(features["transaction"].to_numpy(np.float64) > 0)


_COST_COUNTS = ("events", "view", "addtocart", "transaction")


def cleaning_cost(
    features: pd.DataFrame,
    scores: np.ndarray,
    shares: np.ndarray = DEFAULT_SHARES,
    frozen_threshold: float | None = None,
    protect_buyers: bool = False,
) -> pd.DataFrame:
    """What cleaning removes at each share (threshold = (1 - s) quantile of these scores) and
    at the frozen threshold: users, events, views, add-to-carts, transactions, buyers."""
    s = np.asarray(scores, np.float64)
    shares = np.asarray(shares, np.float64)
    thr = np.quantile(s, 1.0 - shares) if s.size else np.full(shares.shape, np.nan)
    labels = [f"{x:.0%}" for x in shares]
    if frozen_threshold is not None:
        thr = np.append(thr, float(frozen_threshold))
        shares = np.append(shares, np.nan)
        labels.append("frozen")
    flags = s[None, :] >= thr[:, None]  # (points, users)
    bought = features["transaction"].to_numpy(np.float64) > 0
    if protect_buyers:
        flags &= ~bought[None, :]
    vals = {"users": np.ones(len(s)), "buyers": bought.astype(np.float64)}
    vals.update({c: features[c].to_numpy(np.float64) for c in _COST_COUNTS})
    out: dict[str, Any] = {"point": labels, "share": shares, "threshold": thr,
                           "protect_buyers": protect_buyers}
    for name in ("users", *_COST_COUNTS, "buyers"):
        v = vals[name]
        removed = flags.astype(np.float64) @ v
        total = v.sum()
        out[f"{name}_removed"] = removed.astype(np.int64)
        out[f"{name}_removed_share"] = removed / total if total else np.nan
    out["txn_warning"] = out["transaction_removed_share"] > TXN_WARNING_SHARE
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- judging


def pr_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of scores against boolean truth; NaN without positives."""
    truth = np.asarray(truth, bool)
    if not truth.any():
        return float("nan")
    return float(average_precision_score(truth, np.asarray(scores, np.float64)))


def _kind_of(features: pd.DataFrame, labels: pd.DataFrame | None) -> np.ndarray:
    """Each user's labelled kind ("" when not labelled abnormal)."""
    ids = features["visitorid"].to_numpy()
    if labels is None or labels.empty:
        return np.full(len(ids), "", dtype=object)
    kind = labels["kind"] if "kind" in labels.columns else pd.Series("bot", index=labels.index)
    m = pd.Series(kind.astype(str).to_numpy(), index=labels["visitorid"].to_numpy())
    m = m[~m.index.duplicated()]
    return pd.Series(ids).map(m).fillna("").to_numpy(object)


def detector_report(
    features: pd.DataFrame,
    labels: pd.DataFrame | None,
    lookalikes: pd.DataFrame | None,
    detectors: dict[str, OneSidedDetector | str],
    shares: tuple[float, ...] = (DEFAULT_SHARE,),
) -> pd.DataFrame:
    """One row per (detector, share): PR-AUC on known bots, precision/recall, per-kind recall,
    normal buyers flagged, transactions held by flagged users, look-alike kinds flagged.

    ``labels``: visitorid + kind of the known bots. ``lookalikes``: feature rows of normal
    look-alike visitors with a ``kind`` column; they are scored with the threshold fitted on
    ``features`` and never enter the fit. A detector given as a string is the named raw-feature
    rule (e.g. "events" = the volume rule), thresholded at the same training quantile.
    Each detector is refitted on ``features`` (its parameters, that share) at each share.
    """
    kind = _kind_of(features, labels)
    bot = kind != ""
    buyer = (features["transaction"].to_numpy(np.float64) > 0) & ~bot
    txn = features["transaction"].to_numpy(np.float64)
    kinds = sorted(set(kind[bot]))
    la_kinds = [] if lookalikes is None else sorted(lookalikes["kind"].astype(str).unique())
    rows = []
    for name, det in detectors.items():  # a handful of detectors
        for share in shares:
            if isinstance(det, str):
                s = features[det].to_numpy(np.float64)
                thr = float(np.quantile(s, 1.0 - share))
                s_la = None if lookalikes is None else lookalikes[det].to_numpy(np.float64)
            else:
                fitted = make_detector(det.name, **{**det.get_params(), "share": share})
                fitted.fit(features.loc[:, list(USER_FEATURES)])
                s = fitted.score_samples(features)
                thr = fitted.threshold_
                s_la = None if lookalikes is None else fitted.score_samples(lookalikes)
            flag = s >= thr
            row: dict[str, Any] = {
                "detector": name, "share": share, "threshold": thr,
                "flagged_share": flag.mean(),
                "pr_auc": pr_auc(bot, s),
                "precision": (flag & bot).sum() / max(flag.sum(), 1),
                "recall": (flag & bot).sum() / max(bot.sum(), 1),
                "normal_buyers_flagged": (flag & buyer).sum() / max(buyer.sum(), 1),
                "txn_held_by_flagged": txn[flag].sum() / max(txn.sum(), 1.0),
            }
            for k in kinds:
                row[f"recall_{k}"] = flag[kind == k].mean()
            for k in la_kinds:
                m = lookalikes["kind"].astype(str).to_numpy() == k
                row[f"lookalike_{k}_flagged"] = (s_la[m] >= thr).mean()
            rows.append(row)
    return pd.DataFrame(rows)
