"""Rankers of Task 1: the count + recency rule, the learned estimators and RankingModel."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController, threadpool_limits

from core.base.distinct import distinct_rows
from core.base.errors import DataError
from core.base.forest_eval import MAX_FAST_ROWS, forest_positive_proba, is_random_forest_classifier
from core.base.schema import CANDIDATE_FEATURES, DEFAULT_SEED, LOOKBACK, MARKOV_FEATURE, WINDOW_MS
from core.ranking.cases import cap_by_case
from core.ranking.markov import MarkovModel

LEARNED_RANKERS: tuple[str, ...] = ("logreg", "hgb", "rf")
# The simple baselines of the data contract, strongest-first is not assumed: the build measures.
BASELINES: tuple[str, ...] = ("rule", "recency", "last_category")
# A score of -inf means "not ranked": the last-category baseline ranks only the is_last candidate.
UNRANKED = -np.inf
# Training rows are capped (a deterministic sample of whole cases) so the full build stays within
# its time budget at RetailRocket scale: the forest is the slow one, so it gets the smallest cap;
# accuracy is flat beyond these sizes (`python -m core bench`).
TRAIN_ROW_CAPS: dict[str, int] = {"logreg": 1_000_000, "hgb": 500_000, "rf": 200_000}
# OpenMP/BLAS threads for scoring: the API scores concurrent requests on its own threads, and
# OpenMP threads inside each would spin against each other. The forest parallelises with joblib
# threads (n_jobs=-1), which this does not limit.
ESTIMATOR_THREADS = 1


# OpenMP threads for fitting: one unless RECSYS_FIT_THREADS says otherwise. The gradient
# boosting fits the same model on any number of threads (1 vs 2 threads: identical predictions);
# more threads fit faster only on idle cores: with any other job on the machine the spinning
# OpenMP threads slow the evaluation's fits down (RECSYS_FIT_THREADS sets more on a quiet host).
# BLAS stays on one thread.
FIT_THREADS = int(os.environ.get("RECSYS_FIT_THREADS") or 1)
SCORE_CHUNK = 1_000_000
# The forest predicts with joblib threads (n_jobs=-1) only from this many rows: below it, threads
# cost more than they save (a /rank request is a few views) and make the sum over trees,
# hence the last bit of a score, depend on thread timing. Sequential scores are deterministic.
PARALLEL_MIN_ROWS = 10_000
FOREST_JOBS = -1

# Candidates: a DataFrame, or the dict of numpy columns rank() builds (no pandas per request).
Candidates: TypeAlias = pd.DataFrame | Mapping[str, np.ndarray]


def rule_scores(cands: Candidates) -> np.ndarray:
    """Count + recency: cnt desc, ties by pos_from_end asc, as one strictly consistent score."""
    pos = np.asarray(cands["pos_from_end"], dtype=np.float64)
    # pos_from_end <= lookback (the Markov sentinel), so pos / (max + 1) < 1 never beats a count.
    denom = max(float(pos.max(initial=0.0)), float(LOOKBACK)) + 1.0
    return np.asarray(cands["cnt"], dtype=np.float64) - pos / denom


def recency_scores(cands: Candidates) -> np.ndarray:
    """Recency: pos_from_end asc (the most recently viewed category first)."""
    return -np.asarray(cands["pos_from_end"], dtype=np.float64)


def last_category_scores(cands: Candidates) -> np.ndarray:
    """Last category: only the is_last candidate is ranked (first); every other one is UNRANKED."""
    return np.where(np.asarray(cands["is_last"]) == 1, 1.0, UNRANKED)


BASELINE_SCORES = {"rule": rule_scores, "recency": recency_scores, "last_category": last_category_scores}
BASELINE_FEATURES: dict[str, tuple[str, ...]] = {
    "rule": ("cnt", "pos_from_end"),
    "recency": ("pos_from_end",),
    "last_category": ("is_last",),
}


def make_estimator(name: str, seed: int = DEFAULT_SEED):
    """The scikit-learn estimator of a learned ranker (fixed random_state)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    if name == "hgb":
        return HistGradientBoostingClassifier(random_state=seed)
    if name == "rf":
        # max_samples: each tree sees a 50% bootstrap, halving fit time with no loss the evaluation shows.
        # 50 trees, not 100: half the full build's forest time, with validation and test top1_all
        # well within their bootstrap noise (docs/PERFORMANCE.md, "The whole build").
        return RandomForestClassifier(
            n_estimators=50,
            max_depth=12,
            min_samples_leaf=20,
            max_samples=0.5,
            n_jobs=-1,
            random_state=seed,
        )
    raise ValueError(f"unknown learned ranker {name!r}; expected one of {LEARNED_RANKERS}")


@dataclass
class RankingModel:
    """A ranker plus everything needed to rebuild its candidates at prediction time."""

    name: str
    estimator: Any = None  # None for the baselines and "markov"
    features: tuple[str, ...] = CANDIDATE_FEATURES
    markov: MarkovModel | None = None
    markov_top_n: int = 0
    lookback: int = LOOKBACK
    window_ms: int = WINDOW_MS
    trained_on: str = ""

    def score(self, cands: Candidates) -> np.ndarray:
        """Higher = more likely the next category; one score per candidate row."""
        if self.name in BASELINE_SCORES:
            return BASELINE_SCORES[self.name](cands)
        if self.name == "markov":
            return np.asarray(cands[MARKOV_FEATURE], dtype=np.float64)
        cols = [np.asarray(cands[f]) for f in self.features]
        n = len(cols[0]) if cols else 0
        if n <= MAX_FAST_ROWS and is_random_forest_classifier(self.estimator):
            # A few rows (an API request): all trees at once, identical scores, no joblib per tree.
            return forest_positive_proba(self.estimator, _feature_matrix(cols, 0, n))
        codes = None
        splits = tree_splits(self.estimator) if n >= PARALLEL_MIN_ROWS else None
        if splits is not None:
            # Rows on the same side of every split of every tree get the same score: score one
            # row per distinct side pattern (2M candidate rows have ~270,000) and spread it.
            first, codes = distinct_rows(split_sides(cols, splits))
            cols = [c[first] for c in cols]
            n = len(first)
        est = with_n_jobs(self.estimator, FOREST_JOBS if n >= PARALLEL_MIN_ROWS else 1)
        with _threadpools().limit(limits=ESTIMATOR_THREADS):
            parts = [  # chunks of rows bound the memory of predict_proba
                est.predict_proba(_feature_matrix(cols, a, min(a + SCORE_CHUNK, n)))[:, 1]
                for a in range(0, n, SCORE_CHUNK)
            ]
        scores = np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)
        return scores if codes is None else scores[codes]


def tree_splits(estimator: Any) -> list[np.ndarray] | None:
    """Per feature, the sorted thresholds a fitted tree ensemble compares it with (``x <= t``
    goes left); None for anything else (a linear model, categorical splits)."""
    if hasattr(estimator, "_predictors"):  # HistGradientBoosting: one predictor per iteration
        nodes = np.concatenate([p.nodes for it in estimator._predictors for p in it])
        split = nodes["is_leaf"] == 0
        if nodes["is_categorical"][split].any():
            return None
        feature, threshold = nodes["feature_idx"][split], nodes["num_threshold"][split]
    elif getattr(estimator, "estimators_", None) is not None and all(
        hasattr(t, "tree_") for t in estimator.estimators_
    ):  # a random forest
        feature = np.concatenate([t.tree_.feature for t in estimator.estimators_])
        threshold = np.concatenate([t.tree_.threshold for t in estimator.estimators_])
        split = feature >= 0  # leaves have feature -2
        feature, threshold = feature[split], threshold[split]
    else:
        return None
    return [np.unique(threshold[feature == j]) for j in range(int(estimator.n_features_in_))]


def split_sides(cols: Sequence[np.ndarray], splits: Sequence[np.ndarray]) -> np.ndarray:
    """Per row and feature, how many thresholds lie below the value (NaN gets its own code).

    Two values with the same count are on the same side of every threshold. Values are compared
    as the float32 the estimators see, widened to float64 like the thresholds.
    """
    sides = np.empty((len(cols[0]), len(cols)), np.int32, order="F")
    for j, (col, thresholds) in enumerate(zip(cols, splits, strict=True)):  # a handful of features
        x = np.asarray(col).astype(np.float32).astype(np.float64)
        sides[:, j] = np.where(np.isnan(x), len(thresholds) + 1, np.searchsorted(thresholds, x, side="left"))
    return sides


def _feature_matrix(cols: Sequence[np.ndarray], a: int, b: int) -> np.ndarray:
    """Rows a:b of the feature columns as float32, laid out as DataFrame.to_numpy gives it."""
    # Column-major, each column cast straight to float32, exactly as pandas interleaves blocks:
    # the same layout means the same BLAS path and bit-identical scores in both callers.
    X = np.empty((len(cols), b - a), dtype=np.float32)
    for j, col in enumerate(cols):  # a handful of features
        X[j] = col[a:b]
    return X.T


def with_n_jobs(estimator: Any, n_jobs: int) -> Any:
    """The estimator predicting with n_jobs joblib workers (a shallow copy; the model is shared)."""
    if getattr(estimator, "n_jobs", None) in (None, n_jobs) or not hasattr(estimator, "estimators_"):
        return estimator  # no joblib parallelism to set (HGB, pipelines) or already as wanted
    est = copy.copy(estimator)  # not set in place: concurrent requests share the model
    est.n_jobs = n_jobs
    return est


_THREADPOOLS: ThreadpoolController | None = None


def _threadpools() -> ThreadpoolController:
    """OpenMP/BLAS pools of the process, found once: entering threadpool_limits() scans the
    loaded libraries on every call, a cost per request; limiting a cached controller is cheap."""
    global _THREADPOOLS
    if _THREADPOOLS is None:  # first score: numpy and scikit-learn's OpenMP are loaded by now
        _THREADPOOLS = ThreadpoolController()
    return _THREADPOOLS


def cap_binds(name: str, n_rows: int) -> bool:
    """True when a learned ranker would train on its row cap, not on all ``n_rows`` rows."""
    return name in TRAIN_ROW_CAPS and n_rows > TRAIN_ROW_CAPS[name]


def fit_ranker(
    name: str,
    train: pd.DataFrame,
    features: Sequence[str] = CANDIDATE_FEATURES,
    seed: int = DEFAULT_SEED,
    markov: MarkovModel | None = None,
    markov_top_n: int = 0,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
    source: str = "events",
) -> RankingModel:
    """Fit one ranker on candidate rows (target `label`); baselines and markov need no fitting."""
    n_cases = int(pd.unique(train["case_id"].to_numpy()).size)
    common: dict[str, Any] = dict(markov=markov, markov_top_n=markov_top_n, lookback=lookback, window_ms=window_ms)
    if name in BASELINE_SCORES or name == "markov":
        feats = BASELINE_FEATURES.get(name, (MARKOV_FEATURE,))
        return RankingModel(name, None, feats, trained_on=f"{source}, {n_cases} train cases (no fitting)", **common)
    rows = cap_by_case(train, TRAIN_ROW_CAPS[name], seed)
    y = rows["label"].to_numpy()
    if np.unique(y).size < 2:
        raise DataError(f"cannot train {name}: training rows have a single label class")
    est = make_estimator(name, seed)
    with threadpool_limits(limits=FIT_THREADS, user_api="openmp"), threadpool_limits(limits=1, user_api="blas"):
        est.fit(rows[list(features)].to_numpy(np.float32), y)
    if getattr(est, "n_jobs", None) is not None:
        est.n_jobs = 1  # stored sequential (deterministic); score() uses threads for big batches
    used = int(pd.unique(rows["case_id"].to_numpy()).size)
    trained_on = f"{source}, {used} of {n_cases} train cases ({len(rows)} candidate rows)"
    return RankingModel(name, est, tuple(features), trained_on=trained_on, **common)
