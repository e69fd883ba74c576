"""Task 1 end to end: candidates, rare-label drop, visitor split, validation choice, test report."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.base import arrays
from core.base.errors import DataError
from core.base.schema import (
    CANDIDATE_FEATURES,
    DEFAULT_SEED,
    LOOKBACK,
    MARKOV_FEATURE,
    MIN_LABEL_COUNT,
    TEST_SIZE,
    WINDOW_MS,
)
from core.ranking.candidates import build_candidates
from core.ranking.cases import cap_by_case
from core.ranking.markov import MarkovModel, add_markov, cross_fit_markov, fit_markov, transition_pairs
from core.ranking.metrics import case_outcomes, ranking_metrics
from core.ranking.models import BASELINES, LEARNED_RANKERS, TRAIN_ROW_CAPS, RankingModel, cap_binds, fit_ranker
from core.ranking.select import serving_choice
from core.ranking.split import drop_rare_labels, holdout_mask, visitor_split

logger = logging.getLogger(__name__)

RANKERS: tuple[str, ...] = BASELINES + LEARNED_RANKERS
DATASET_SAMPLE_ROWS = 200_000


@dataclass
class Task1Result:
    """Everything Task 1 reports: per-ranker metrics, the validation choice and the best model."""

    best_model: RankingModel
    metrics: pd.DataFrame  # ranker, split, coverage, top1, top3, top1_all, top3_all, n_cases, ...
    chosen_ranker: str
    chosen_by: str
    leakage: dict[str, Any]
    n_cases: int
    n_cases_dropped_rare: int
    n_candidate_rows: int
    dataset_sample: pd.DataFrame
    dataset_is_sample: bool
    timings: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)  # select.serving_choice's record
    # Per ranker: the per-case validation outcomes and the model fitted on the fit part.
    validation_outcomes: dict[str, pd.DataFrame] = field(default_factory=dict)
    models: dict[str, RankingModel] = field(default_factory=dict)

    @property
    def info(self) -> dict[str, Any]:
        """JSON-safe facts of the run (no tables, no estimator)."""
        return {
            "chosen_ranker": self.chosen_ranker,
            "chosen_by": self.chosen_by,
            "serving": self.serving,
            "trained_on": self.best_model.trained_on,
            "n_cases": self.n_cases,
            "n_cases_dropped_rare": self.n_cases_dropped_rare,
            "n_candidate_rows": self.n_candidate_rows,
            "leakage": self.leakage,
            "dataset_is_sample": self.dataset_is_sample,
            "dataset_rows": int(len(self.dataset_sample)),
            "timings_s": self.timings,
            "config": self.config,
        }


def _with_markov(
    pairs: pd.DataFrame,
    parts: Iterable[pd.DataFrame],
    test: pd.DataFrame,
    top_n: int,
    seed: int,
    lookback: int,
    window_ms: int,
) -> tuple[list[pd.DataFrame], pd.DataFrame, MarkovModel]:
    """Markov features: cross-fitted on `parts` of train (no own-label leak), the model of all
    of train's transition `pairs` on `test`.

    Every fold model is fitted on all of train's transitions but the fold's visitors'; only the
    rows of `parts` get features. Rows of a part come back grouped by fold (each fold in case
    order); no consumer needs case order.
    """
    parts_aug = [cross_fit_markov(pairs, part, top_n, seed, lookback, window_ms) for part in parts]
    markov = fit_markov(pairs[["prev_cat", "y"]])
    return parts_aug, add_markov(test, markov, top_n, lookback, window_ms), markov


def _dataset_sample(cands: pd.DataFrame, test_visitors: np.ndarray, seed: int) -> tuple[pd.DataFrame, bool]:
    """Deterministic case sample (<= DATASET_SAMPLE_ROWS rows) with a split column."""
    sample = cap_by_case(cands, DATASET_SAMPLE_ROWS, seed)
    is_sample = len(sample) < len(cands)
    sample = sample.reset_index(drop=True)
    sample["split"] = np.where(np.isin(sample["visitorid"].to_numpy(), test_visitors), "test", "train")
    sample.attrs["is_sample"] = is_sample
    sample.attrs["rows_total"] = int(len(cands))
    return sample, is_sample


def train_and_evaluate(
    events: pd.DataFrame,
    seed: int = DEFAULT_SEED,
    markov_top_n: int = 0,
    rankers: Sequence[str] = RANKERS,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
    min_count: int = MIN_LABEL_COUNT,
    source: str = "events",
    cases: tuple[pd.DataFrame, int, int] | None = None,
) -> Task1Result:
    """Candidates -> rare-label drop -> visitor split -> validation choice -> test report.

    ``cases`` is ``prepare_cases(events, lookback, window_ms, min_count)`` when the caller has
    it already (the build computes it once for several runs); it is not recomputed then.
    """
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[stage] = round(now - t, 3)
        logger.info("task1 %s: %.2fs", stage, now - t)
        t = now

    unknown = [r for r in rankers if r not in BASELINES + ("markov",) + LEARNED_RANKERS]
    if unknown or not rankers:
        raise ValueError(f"unknown rankers {unknown}; expected some of {BASELINES}, markov, {LEARNED_RANKERS}")
    use_markov = markov_top_n > 0 or "markov" in rankers
    if cases is None:
        cands = build_candidates(events, lookback, window_ms)
        n_cases_all = int(cands["case_id"].nunique()) if len(cands) else 0
        lap("candidates")
        cands, n_dropped = drop_rare_labels(cands, min_count)
    else:
        cands, n_cases_all, n_dropped = cases
    if cands.empty:
        raise DataError("no ranking cases left after dropping rare labels")
    lap("drop_rare_labels")
    # The parts are taken from cands by mask: the whole training table (~400 MB at RetailRocket
    # scale) is only built for a refit, which happens when the row caps do not bind.
    is_test, leakage = holdout_mask(cands, TEST_SIZE, seed)
    n_rows = int(len(cands))
    vis = cands["visitorid"].to_numpy()
    test_v = arrays.unique(vis[is_test])
    sample, is_sample = _dataset_sample(cands, test_v, seed)
    test = cands.loc[is_test].reset_index(drop=True)
    features = CANDIDATE_FEATURES
    markov: MarkovModel | None = None
    top_n = markov_top_n if use_markov else 0
    fit_v, val_v = visitor_split(vis[~is_test], TEST_SIZE, seed + 1)
    in_val = np.isin(vis, val_v)  # validation visitors are training visitors, never test ones
    in_fit = ~is_test & ~in_val
    val_part = cands.loc[in_val].reset_index(drop=True)
    leakage["validation_visitors"] = int(len(val_v))
    leakage["validation_disjoint_from_test"] = bool(arrays.intersect(val_v, test_v).size == 0)
    presampled = False
    if use_markov:
        # Fit and validation rows get cross-fitted Markov features (folds by visitor: a case's own
        # label never enters its features), test rows the model fitted on all of train. Top-N
        # adds N rows per case, so the fit rows are first cut to whole cases within the largest
        # row cap: the learners could not use more, and the extra rows would cost gigabytes.
        features = CANDIDATE_FEATURES + (MARKOV_FEATURE,)
        caps = [TRAIN_ROW_CAPS[r] for r in rankers if r in TRAIN_ROW_CAPS]
        if caps and int(in_fit.sum()) > max(caps):
            # Whole cases sampled on their ids alone (as cap_by_case of the fit rows would), then
            # only their rows taken whole: no copy of every fit row.
            ids = pd.DataFrame({"case_id": cands["case_id"].to_numpy()[in_fit]}, index=np.flatnonzero(in_fit))
            keep = cap_by_case(ids, max(caps), seed).index.to_numpy()
            fit_part, presampled = cands.iloc[keep].reset_index(drop=True), True
        else:
            fit_part = cands.loc[in_fit].reset_index(drop=True)
        pairs = transition_pairs(cands.loc[~is_test, ["case_id", "visitorid", "is_last", "categoryid", "y"]])
        (fit_part, val_part), test, markov = _with_markov(
            pairs, [fit_part, val_part], test, top_n, seed, lookback, window_ms
        )
        lap("markov")
    else:
        # The fitting only reads the features, the label and the case ids of the fit rows (~3M
        # of them at RetailRocket scale): the other columns are not copied.
        fit_part = cands.loc[in_fit, [*features, "label", "case_id"]].reset_index(drop=True)
    lap("split")
    learned = [r for r in rankers if r in TRAIN_ROW_CAPS]
    refit_possible = not presampled and not (learned and all(cap_binds(r, len(fit_part)) for r in learned))
    results: dict[tuple[str, str], dict[str, Any]] = {}
    fitted: dict[str, RankingModel] = {}
    val_outcomes: dict[str, pd.DataFrame] = {}
    fit_on = "train minus validation visitors"
    for name in rankers:  # a handful of rankers
        fitted[name] = model = fit_ranker(name, fit_part, features, seed, markov, top_n, lookback, window_ms, source)
        for split, part in (("validation", val_part), ("test", test)):
            scores = model.score(part)
            results[name, split] = {
                "ranker": name,
                "split": split,
                "fit_on": "no fitting" if name in BASELINES else fit_on,
                **ranking_metrics(part, scores),
            }
            if split == "validation":
                val_outcomes[name] = case_outcomes(part, scores)
        lap(f"{name}: fit, score validation and test")
    # Choice on validation only (select.serving_choice): a learned ranker must beat the best
    # baseline with a paired bootstrap interval above zero.
    serving = serving_choice(
        val_outcomes, [r for r in rankers if r in BASELINES], [r for r in rankers if r not in BASELINES], seed
    )
    best_name = serving["served"]
    val_top1 = {r: results[r, "validation"]["top1_all"] for r in rankers}
    # The winner is refitted on the full train, unless its row cap already binds on the fit part:
    # a refit would then see as many rows, only others, for the cost of a fit and a scoring.
    # The others keep their fit-part models. The table says which is which.
    if best_name in BASELINES:
        best = fitted[best_name]  # nothing to fit
    elif not refit_possible or cap_binds(best_name, len(fit_part)):
        best = fitted[best_name]
        lap(f"{best_name}: kept (its row cap binds on the fit part)")
    else:
        train = cands.loc[~is_test].reset_index(drop=True)
        if use_markov:  # the whole train's rows, cross-fitted as the parts were
            train = cross_fit_markov(pairs, train, top_n, seed, lookback, window_ms)
        best = fit_ranker(best_name, train, features, seed, markov, top_n, lookback, window_ms, source)
        results[best_name, "test"] = {
            "ranker": best_name,
            "split": "test",
            "fit_on": "train",
            **ranking_metrics(test, best.score(test)),
        }
        lap(f"{best_name}: refit on train, score test")
    metrics = pd.DataFrame([results[r, sp] for r in rankers for sp in ("validation", "test")])
    logger.info("task1 chosen ranker %s (validation top1_all %.4f)", best_name, val_top1[best_name])
    return Task1Result(
        best_model=best,
        metrics=metrics,
        chosen_ranker=best_name,
        chosen_by=serving["reason"],
        leakage=leakage,
        n_cases=n_cases_all,
        n_cases_dropped_rare=n_dropped,
        n_candidate_rows=n_rows,
        dataset_sample=sample,
        dataset_is_sample=is_sample,
        timings=timings,
        config={
            "seed": seed,
            "lookback": lookback,
            "window_ms": window_ms,
            "min_count": min_count,
            "markov_top_n": markov_top_n,
            "rankers": list(rankers),
            "features": list(features),
            "train_row_caps": dict(TRAIN_ROW_CAPS),
            "test_size": TEST_SIZE,
        },
        serving=serving,
        validation_outcomes=val_outcomes,
        models=fitted,
    )
