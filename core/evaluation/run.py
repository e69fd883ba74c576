"""The whole honest evaluation: both splits, every population, the report files."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.anomaly.detector import DETECTOR_FIT_CAP, Detector
from core.anomaly.features import user_features
from core.base import arrays
from core.base.memory import release_memory
from core.base.schema import (
    DEFAULT_SEED,
    DEFAULT_SHARE,
    DETECTOR_QUALITY_CSV,
    DETECTOR_QUALITY_JSON,
    EVALUATION_CSV,
    EVALUATION_JSON,
    LOOKBACK,
    MARKOV_CANDIDATES_CSV,
    TEST_SIZE,
    WINDOW_MS,
)
from core.base.stats import CI_LEVEL, N_BOOT
from core.evaluation.detectors import (
    STABILITY_USER_CAP,
    detector_quality,
    fit_and_flag,
    quality_table,
)
from core.evaluation.rankers import (
    EVAL_THREADS,
    EVAL_TRAIN_ROW_CAP,
    LEARNER,
    MARKOV_TOP_NS,
    fit_learned,
    markov_candidates,
    markov_top_ns_for,
    model_scores,
    train_sample,
)
from core.evaluation.splits import (
    TEST_DAYS,
    SplitSpec,
    evaluation_cases,
    group_split_spec,
    temporal_split_spec,
)
from core.evaluation.tables import (
    MARKOV_CSV_COLUMNS,
    POPULATION_KEYS,
    flat_table,
    headline,
    metric_rows_multi,
)
from core.ranking.metrics import case_outcomes
from core.ranking.models import BASELINES, fit_ranker
from core.store import artifacts

log = logging.getLogger(__name__)

# The rankers compared on the same test cases: learned on raw events, on cleaned events, and
# the simple baselines (ranking.BASELINES: the rule, recency, last category).
EVAL_RANKERS: tuple[str, ...] = ("raw", "clean") + BASELINES
REPORT_DECIMALS = 6  # report tables only; nothing here is re-used as a threshold


def _population_masks(outcomes: pd.DataFrame, flagged_test: np.ndarray) -> dict[str, np.ndarray]:
    """Per population key, the boolean mask over the outcome rows."""
    flagged = np.isin(outcomes["visitorid"].to_numpy(), flagged_test)
    return {"all": np.ones(len(outcomes), dtype=bool), "non_flagged": ~flagged, "flagged": flagged}


def evaluate_split(
    spec: SplitSpec,
    share: float,
    seed: int,
    labels: pd.DataFrame | None,
    n_boot: int = N_BOOT,
    markov_top_ns: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Detector, raw/clean/rule rankers, 2x3 populations, switch-only and Markov candidates."""
    t0 = time.perf_counter()
    flagged_train, flagged_test, det_info = fit_and_flag(spec, share, seed, labels)
    log.info("evaluation %s: detector %.1fs", spec.name, time.perf_counter() - t0)
    train_vis = spec.train["visitorid"].to_numpy()
    # The cleaned training cases are sampled on their case ids alone, then the sampled rows are
    # taken: the same rows as sampling a filtered copy, without copying ~400 MB of training rows.
    kept = spec.train.loc[~np.isin(train_vis, flagged_train), ["case_id"]]
    clean_sample = spec.train_rows(train_sample(kept, seed))
    del kept
    models = {
        "raw": fit_learned(
            spec.train_rows(train_sample(spec.train, seed)), seed, source=f"{spec.name} split, raw training cases"
        ),
        "clean": fit_learned(clean_sample, seed, source=f"{spec.name} split, cleaned training cases"),
        **{b: fit_ranker(b, spec.train) for b in BASELINES},
    }
    log.info("evaluation %s: rankers %.1fs", spec.name, time.perf_counter() - t0)
    outcomes = {r: case_outcomes(spec.test, model_scores(models[r], spec.test)) for r in EVAL_RANKERS}
    pops = _population_masks(outcomes["raw"], flagged_test)
    captions = _population_captions(spec, share)
    table: list[dict[str, Any]] = []
    long: list[dict[str, Any]] = []
    arms_diffs = [("clean", "raw"), ("raw", "recency")]
    for key in POPULATION_KEYS:  # three populations, the three rankers bootstrapped together
        arms = {r: outcomes[r].loc[pops[key]] for r in EVAL_RANKERS}
        for r, rows in metric_rows_multi(arms, n_boot, seed, diffs=arms_diffs).items():
            long.extend(
                {"split": spec.name, "ranker": r, "population_key": key, "population": captions[key], **row}
                for row in rows
            )
        table.extend(
            {"ranker": r, "population_key": key, "population": captions[key], **headline(arms[r])} for r in EVAL_RANKERS
        )
    switch_mask = outcomes["raw"]["switch"].to_numpy()
    sw_caption = captions["switch"]
    sw_arms = {r: outcomes[r].loc[switch_mask] for r in EVAL_RANKERS}
    sw_table = [
        {"ranker": r, "population_key": "switch", "population": sw_caption, **headline(sw_arms[r])}
        for r in EVAL_RANKERS
    ]
    sw_long = [
        {"split": spec.name, "ranker": r, "population_key": "switch", "population": sw_caption, **row}
        for r, rows in metric_rows_multi(sw_arms, n_boot, seed, diffs=arms_diffs).items()
        for row in rows
    ]
    log.info("evaluation %s: tables %.1fs", spec.name, time.perf_counter() - t0)
    top_ns = MARKOV_TOP_NS.get(spec.name, (5,)) if markov_top_ns is None else tuple(markov_top_ns)
    markov = markov_candidates(spec, outcomes["raw"], seed, n_boot, top_ns)
    log.info("evaluation %s: markov %.1fs", spec.name, time.perf_counter() - t0)
    n_test = len(outcomes["raw"])
    return {
        "population": captions["all"],
        "split": spec.info,
        "detector": det_info,
        "rankers": {
            "raw": {
                "trained_on": models["raw"].trained_on,
                "description": "HistGradientBoosting on the 7 spec features, trained on every "
                "training visitor's cases (raw events)",
            },
            "clean": {
                "trained_on": models["clean"].trained_on,
                "description": "the same learner trained on the training visitors minus "
                "the ones the train-fitted detector flags (cleaned)",
                "train_visitors_removed": int(arrays.unique(train_vis[np.isin(train_vis, flagged_train)]).size),
            },
            "rule": {
                "trained_on": "no training",
                "description": "count + recency rule (cnt desc, then pos_from_end asc); reference",
            },
            "recency": {
                "trained_on": "no training",
                "description": "recency baseline (pos_from_end asc: the most recently viewed category first)",
            },
            "last_category": {
                "trained_on": "no training",
                "description": "last-category baseline: only the last viewed category, ranked first",
            },
        },
        "table": table,
        "metrics": long,
        "switch_only": {
            "population": sw_caption,
            "n_cases": int(switch_mask.sum()),
            "share_of_test_cases": float(switch_mask.mean()) if n_test else float("nan"),
            "table": sw_table,
            "metrics": sw_long,
        },
        "markov_candidates": markov,
    }


def _population_captions(spec: SplitSpec, share: float) -> dict[str, str]:
    """Plain-language caption of every population of a split."""
    base = spec.caption
    pct = f"{share:.0%}" if round(share * 100) == share * 100 else f"{share * 100:g}%"
    return {
        "all": f"all {base}",
        "non_flagged": f"{base} that the train-fitted detector does NOT flag at {pct}",
        "flagged": f"{base} that the train-fitted detector flags at {pct}",
        "switch": f"switch cases of all {base}: the true next category differs from the last viewed one",
    }


def honest_evaluation(
    events: pd.DataFrame,
    labels: pd.DataFrame | None,
    seed: int = DEFAULT_SEED,
    share: float = DEFAULT_SHARE,
    n_boot: int = N_BOOT,
    test_days: int = TEST_DAYS,
    features: pd.DataFrame | None = None,
    cases: tuple[pd.DataFrame, int, int] | None = None,
) -> dict[str, Any]:
    """The whole task-1 evaluation report (JSON-ready dict, not yet rounded).

    ``features`` (user_features) and ``cases`` (ranking.prepare_cases) of ``events`` are reused
    when given, so a build computes them once.
    """
    t0 = time.perf_counter()
    cands, rare = evaluation_cases(events, cases)
    if features is None:
        features = user_features(events)
    log.info("honest evaluation: candidates and user features %.1fs", time.perf_counter() - t0)
    top_ns = markov_top_ns_for(len(events))
    group = evaluate_split(group_split_spec(cands, features, seed), share, seed, labels, n_boot, top_ns["group"])
    release_memory()  # the group split's tables, freed, go back to the OS before the next split
    temporal = evaluate_split(
        temporal_split_spec(events, cands, features, test_days), share, seed, labels, n_boot, top_ns["temporal"]
    )
    splits = {"group": group, "temporal": temporal}
    return {
        "title": "Task 1: same-population evaluation of rankers trained on raw vs cleaned events",
        "population": "every figure is on test cases only; each table row names its population",
        "settings": {
            "seed": seed,
            "share": share,
            "n_boot": n_boot,
            "ci_level": CI_LEVEL,
            "ci_method": "percentile bootstrap over test visitors (resampled with replacement)",
            "test_size": TEST_SIZE,
            "test_days": test_days,
            "learner": LEARNER,
            "learner_note": "ranking.make_estimator('hgb') = HistGradientBoostingClassifier; the "
            "same learner for the raw, clean and Markov rankers",
            "train_row_cap": EVAL_TRAIN_ROW_CAP,
            "threads": EVAL_THREADS,
            "fit_threads": "RECSYS_FIT_THREADS, default 1 (the fitted models do not depend on it)",
            "markov_top_ns": {k: list(v) for k, v in top_ns.items()},
            "detector_fit_cap": DETECTOR_FIT_CAP,
            "stability_user_cap": STABILITY_USER_CAP,
            "lookback": LOOKBACK,
            "window_ms": WINDOW_MS,
        },
        "definitions": DEFINITIONS,
        "rare_labels": rare,
        "splits": splits,
    }


DEFINITIONS: dict[str, str] = {
    "coverage": "share of cases whose true next category is among the candidates",
    "top1": "among covered cases, share with the true category ranked first",
    "top3": "among covered cases, share with the true category in the first three",
    "top1_all": "share of ALL cases with the true category ranked first (= top1 x coverage)",
    "top3_all": "share of ALL cases with the true category in the first three",
    "per case": "hits / cases pooled over every case of the population",
    "per visitor": "mean over visitors of each visitor's own hit rate (visitors with >= 1 case "
    "in the metric's denominator)",
    "ci": "95% percentile bootstrap: visitors resampled with replacement, all their cases kept",
    "switch": "cases whose true next category differs from the last viewed category",
    "markov only coverage": "share of cases with P(y | last category) > 0 under the training "
    "transitions (y reachable in the full ranking of all categories)",
    "flagged": "visitors whose anomaly score is >= the threshold frozen on the training users",
}


def write_all(
    events: pd.DataFrame,
    labels: pd.DataFrame | None,
    seed: int = DEFAULT_SEED,
    share: float = DEFAULT_SHARE,
    out: str | Path = ".",
    n_boot: int = N_BOOT,
    features: pd.DataFrame | None = None,
    cases: tuple[pd.DataFrame, int, int] | None = None,
    detectors: Mapping[str, Detector] | None = None,
    detector_scores: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write the honest-evaluation, Markov-candidate and detector-quality JSON/CSV files
    (``features`` and ``cases`` as in honest_evaluation; ``detectors`` and ``detector_scores``
    as ``fitted`` and ``fitted_scores`` of detector_quality)."""
    t0 = time.perf_counter()
    if features is None:
        features = user_features(events)
    report = honest_evaluation(events, labels, seed, share, n_boot, features=features, cases=cases)
    t1 = time.perf_counter()
    quality = detector_quality(features, labels, share, seed, fitted=detectors, fitted_scores=detector_scores)
    t2 = time.perf_counter()
    write_reports(report, quality, out)
    timings = {
        "task1_s": round(t1 - t0, 2),
        "task2_s": round(t2 - t1, 2),
        "total_s": round(time.perf_counter() - t0, 2),
    }
    log.info("honest evaluation written to %s: %s", out, timings)
    return {"report": report, "quality": quality, "timings": timings}


def write_reports(report: dict[str, Any], quality: dict[str, Any], out: str | Path) -> None:
    """The files of an honest_evaluation report and a detector_quality result, written into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(report, out / EVALUATION_JSON, decimals=REPORT_DECIMALS)
    flat_table(report["splits"]).to_csv(out / EVALUATION_CSV, index=False, float_format="%.6f")
    markov_rows = pd.DataFrame([r for s in report["splits"].values() for r in s["markov_candidates"]["rows"]]).reindex(
        columns=list(MARKOV_CSV_COLUMNS)
    )
    markov_rows.to_csv(out / MARKOV_CANDIDATES_CSV, index=False, float_format="%.6f")
    artifacts.write_json(quality, out / DETECTOR_QUALITY_JSON, decimals=REPORT_DECIMALS)
    quality_table(quality).to_csv(out / DETECTOR_QUALITY_CSV, index=False, float_format="%.6f")
