"""The rankers the evaluation compares: one learner (ranking's hgb), row caps and Markov candidates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from core.base.schema import CANDIDATE_FEATURES, MARKOV_FEATURE
from core.base.stats import N_BOOT
from core.evaluation.splits import SplitSpec
from core.evaluation.tables import headline, metric_rows_multi
from core.ranking.cases import cap_by_case, case_table
from core.ranking.markov import MarkovModel, add_markov, cross_fit_markov, fit_markov, transition_pairs
from core.ranking.metrics import case_outcomes, markov_only_outcomes
from core.ranking.models import RankingModel, fit_ranker

LEARNER = "hgb"  # HistGradientBoostingClassifier, ranking.make_estimator("hgb"); see docs
# Each learned ranker is trained on at most this many history candidate rows (a deterministic
# sample of whole cases, ranking.cap_by_case), so the eight fits stay within the build's budget
# at RetailRocket scale. Markov rankers train on the same cases plus their extra candidates.
EVAL_TRAIN_ROW_CAP = 100_000
# Scoring runs single-threaded; fits use ranking's FIT_THREADS (the fitted model does not depend
# on the thread count).
EVAL_THREADS = 1
# Extra Markov candidates per case: N = 5 and 10 on the group split, N = 5 on the temporal one.
# Above MARKOV_TOP10_MAX_EVENTS the group split also keeps N = 5 only (each N costs a fit and
# scoring ~2-3M candidate rows at RetailRocket scale; at demo scale top-10 adds ~0.5 pp coverage).
MARKOV_TOP_NS: dict[str, tuple[int, ...]] = {"group": (5, 10), "temporal": (5,)}
MARKOV_TOP10_MAX_EVENTS = 1_000_000


def markov_top_ns_for(n_events: int) -> dict[str, tuple[int, ...]]:
    """The Markov N values per split: MARKOV_TOP_NS, without N = 10 above MARKOV_TOP10_MAX_EVENTS."""
    if n_events <= MARKOV_TOP10_MAX_EVENTS:
        return dict(MARKOV_TOP_NS)
    return {k: tuple(n for n in v if n <= 5) or (5,) for k, v in MARKOV_TOP_NS.items()}


def train_sample(train: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Deterministic sample of whole training cases with at most EVAL_TRAIN_ROW_CAP history rows."""
    return cap_by_case(train, EVAL_TRAIN_ROW_CAP, seed)


def fit_learned(
    rows: pd.DataFrame,
    seed: int,
    features: Sequence[str] = CANDIDATE_FEATURES,
    markov: MarkovModel | None = None,
    markov_top_n: int = 0,
    source: str = "events",
) -> RankingModel:
    """The evaluation learner (ranking's hgb) on the given training rows."""
    return fit_ranker(LEARNER, rows, tuple(features), seed, markov, markov_top_n, source=source)


def model_scores(model: RankingModel, cands: pd.DataFrame) -> np.ndarray:
    """model.score(cands), single-threaded like the fits."""
    with threadpool_limits(limits=EVAL_THREADS):
        return model.score(cands)


def markov_candidates(
    spec: SplitSpec,
    history_outcomes: pd.DataFrame,
    seed: int,
    n_boot: int = N_BOOT,
    top_ns: Sequence[int] = (5,),
) -> dict[str, Any]:
    """Coverage/top1_all/top3_all of history-only vs history + Markov top-N vs Markov-only."""
    train_pairs = transition_pairs(spec.train)
    markov = fit_markov(train_pairs[["prev_cat", "y"]])
    test_cases = case_table(spec.test)
    caption = f"all {spec.caption}; the same case ids for every candidate set"
    arms: dict[str, pd.DataFrame] = {"history": history_outcomes}
    rankers = {"history": f"{LEARNER} on the 7 spec features (the 'raw' ranker)"}
    sample = spec.train_rows(train_sample(spec.train, seed))
    feats = CANDIDATE_FEATURES + (MARKOV_FEATURE,)
    for n in top_ns:  # N = 5 (and 10)
        train_aug = cross_fit_markov(train_pairs, sample, n, seed)
        # Rows in case order: the order of training rows can change a fit.
        train_aug = train_aug.iloc[np.argsort(train_aug["case_id"].to_numpy(), kind="stable")]
        train_aug = train_aug.reset_index(drop=True)
        model = fit_learned(
            train_aug, seed, feats, markov, n, source=f"{spec.name} split, raw training cases + Markov top-{n}"
        )
        test_aug = add_markov(spec.test, markov, n)
        arms[f"history + markov top{n}"] = case_outcomes(test_aug, model_scores(model, test_aug))
        rankers[f"history + markov top{n}"] = f"{LEARNER} on 7 features + markov_prob"
        del test_aug
    arms["markov only (all categories)"] = markov_only_outcomes(test_cases, markov)
    rankers["markov only (all categories)"] = "P(next | last category), learned on training cases"
    shown = ("coverage", "top1_all", "top3_all")
    # One shared bootstrap: CIs of every set and paired CIs of each gain over history
    # (metric_rows_multi also checks that every set is on the same case ids).
    others = [a for a in arms if a != "history"]
    stats = metric_rows_multi(arms, n_boot, seed, metrics=shown, diffs=[(a, "history") for a in others])
    rows: list[dict[str, Any]] = []
    for cset, outcomes in arms.items():
        row = {
            "split": spec.name,
            "candidate_set": cset,
            "ranker": rankers[cset],
            "population": caption,
            **headline(outcomes),
        }
        for r in stats[cset]:
            if r["average"] == "per case":
                row[f"{r['metric']}_ci_low"], row[f"{r['metric']}_ci_high"] = r["ci_low"], r["ci_high"]
        rows.append(row)
    gains = {
        a: {
            r["metric"]: {"value": r["value"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}
            for r in stats[f"{a} - history"]
            if r["average"] == "per case"
        }
        for a in others
    }
    return {
        "population": caption,
        "markov": {
            "fitted_on": f"{markov.n_cases} training cases' (last category of H -> y) transitions",
            "categories": int(len(markov.categories)),
            "test_cases_last_category_unseen": int(
                (~np.isin(test_cases["last_cat"].to_numpy(), markov.categories)).sum()
            ),
        },
        "rows": rows,
        "gain_vs_history": gains,
        "gain_note": "candidate set minus history on the same test cases, per case, with a "
        "paired visitor-bootstrap 95% CI",
    }
