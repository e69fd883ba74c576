"""Trained rankers on other events (a user's file): every case of the file, no split, no
rare-label drop (the models are already trained), each figure with a visitor-bootstrap 95% CI
and each ranker's paired difference against the served one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from core.base.errors import DataError
from core.base.memory import release_memory
from core.base.schema import DEFAULT_SEED
from core.base.stats import CI_LEVEL, N_BOOT
from core.evaluation.tables import metric_rows_multi
from core.ranking.candidates import build_candidates
from core.ranking.cases import case_table as ranking_case_table
from core.ranking.cases import case_times, rank_in_groups
from core.ranking.markov import add_markov
from core.ranking.metrics import case_outcomes, order_within_cases
from core.ranking.models import BASELINE_SCORES, BASELINES, UNRANKED, RankingModel, rule_scores
from core.reading import data

EVAL_METRICS: tuple[str, ...] = ("coverage", "top1", "top3", "top1_all", "top3_all", "mrr5")
CASE_TOP_K = 5
# Bootstrap weights in blocks of 2M (replicate, visitor) cells, smaller than the build's: the
# upload's evaluation runs inside the dashboard's 1 GB budget (docs/PERFORMANCE.md).
EVAL_BOOT_BLOCK_CELLS = 2_000_000
POPULATION = "every case of the file (no split, no rare-label drop: the models are already trained)"


@dataclass
class EventsEvaluation:
    """The report (JSON-ready) and the per-case table of one evaluation."""

    report: dict[str, Any]
    cases: pd.DataFrame


def read_events_file(path: str | Path) -> pd.DataFrame:
    """Prepared events (with categoryid) from a parquet or CSV file, validated like the build's."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return data.read_events(path)
    if path.suffix.lower() != ".csv":
        raise DataError(f"{path.name}: expected a .parquet or .csv file of prepared events")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return prepared_events(pd.read_csv(path), path.name)


def prepared_events(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The table as prepared events; a clear DataError when it has no categoryid column."""
    if "categoryid" not in frame.columns:
        raise DataError(
            f"{name}: no categoryid column. Next-category ranking needs each event's category: use the "
            "prepared layout (timestamp, visitorid, event, itemid, transactionid, categoryid), e.g. the "
            "events_clean parquet of a build, or prepare raw files with `python -m core build --raw-dir DIR`."
        )
    return data.validate_events(frame, name)


def _served_candidates(cands: pd.DataFrame, model: RankingModel | None) -> pd.DataFrame:
    """The served ranker's candidates: the history's, plus its Markov ones when it has them."""
    if model is None or model.markov is None:
        return cands
    return add_markov(cands, model.markov, model.markov_top_n, model.lookback, model.window_ms)


def _top_k(cands: pd.DataFrame, scores: np.ndarray, n_cases: int, k: int) -> np.ndarray:
    """(n_cases, k) categoryids ranked 1..k per case (-1 where fewer were ranked)."""
    order = order_within_cases(cands, scores)
    order = order[np.asarray(scores)[order] != UNRANKED]
    case = cands["case_id"].to_numpy(np.int64)[order]
    pos = rank_in_groups(case)
    keep = pos < k
    top = np.full((n_cases, k), -1, dtype=np.int64)
    top[case[keep], pos[keep]] = cands["categoryid"].to_numpy(np.int64)[order][keep]
    return top


def evaluate_events(
    events: pd.DataFrame,
    model: RankingModel | None,
    served: str | None = None,
    top_k: int = CASE_TOP_K,
    n_boot: int = N_BOOT,
    seed: int = DEFAULT_SEED,
) -> EventsEvaluation:
    """Coverage, top1/top3 (covered), top1_all/top3_all and MRR@5 (all cases) of the baselines and
    the served ranker on every case of ``events``; ``served`` is its name (the rule when no model)."""
    served = served or (model.name if model is not None else "rule")
    cands = build_candidates(events)
    if cands.empty:
        raise DataError(
            "these events hold no ranking case: a case is a view (with a known category) that has an "
            "earlier view of the same visitor within 24 hours"
        )
    n_cases = int(cands["case_id"].iloc[-1]) + 1  # case ids are 0..n-1 (nothing is dropped)
    served_cands = _served_candidates(cands, model)
    served_scores = model.score(served_cands) if model is not None else rule_scores(cands)
    outcomes = {b: case_outcomes(cands, BASELINE_SCORES[b](cands)) for b in BASELINES}
    if served not in outcomes:
        outcomes[served] = case_outcomes(served_cands, served_scores)
    cases = case_table(events, served_cands, served_scores, outcomes[served], top_k)
    del cands, served_cands, served_scores  # only the per-case tables are needed from here on
    release_memory()
    names = [served] + [r for r in outcomes if r != served]
    # One BLAS thread: the blocks of weights x sums are small, and BLAS threads spinning against
    # other work on a busy machine slow the bootstrap many times over.
    with threadpool_limits(limits=1, user_api="blas"):
        stats = metric_rows_multi(
            {r: outcomes[r] for r in names},
            n_boot,
            seed,
            EVAL_METRICS,
            diffs=[(r, served) for r in names[1:]],
            block_cells=EVAL_BOOT_BLOCK_CELLS,
        )
    rankers = {}
    for r in names:  # a handful of rankers
        per_case = [row for row in stats[r] if row["average"] == "per case"]
        o = outcomes[r]
        entry: dict[str, Any] = {
            "n_cases": int(len(o)),
            "n_covered": int(o["covered"].sum()),
            "n_visitors": int(o["visitorid"].nunique()),
            **{row["metric"]: row["value"] for row in per_case},
            "ci": {row["metric"]: [row["ci_low"], row["ci_high"]] for row in per_case},
        }
        if r != served:
            entry["minus_served"] = {
                row["metric"]: {"value": row["value"], "ci": [row["ci_low"], row["ci_high"]]}
                for row in stats[f"{r} - {served}"]
                if row["average"] == "per case"
            }
        rankers[r] = entry
    report = {
        "cases": n_cases,
        "visitors": int(outcomes[served]["visitorid"].nunique()),
        "served": served,
        "population": POPULATION,
        "rankers": rankers,
        "ci_level": CI_LEVEL,
        "n_boot": n_boot,
        "ci_method": "percentile bootstrap over the file's visitors; differences are paired (same resampled visitors)",
        "definitions": {
            "coverage": "share of cases whose true next category is a candidate (for the baselines: a "
            "category of the history)",
            "top1, top3": "among covered cases (docs/DATA_CONTRACT.md)",
            "top1_all, top3_all, mrr5": "over all cases; MRR@5 counts 1/rank within the first five, else 0",
            "minus_served": "this ranker minus the served one on the same cases, paired CI",
        },
    }
    return EventsEvaluation(report, cases)


def case_table(
    events: pd.DataFrame, cands: pd.DataFrame, scores: np.ndarray, outcomes: pd.DataFrame, top_k: int
) -> pd.DataFrame:
    """Per case: visitor, time, true category, the served ranker's top k, hit or not, and whether
    the true category was a candidate at all (no ranker could hit it otherwise)."""
    n = len(outcomes)
    labelled, t_ref = case_times(events)
    y = ranking_case_table(cands)["y"].to_numpy()
    top = _top_k(cands, scores, n, top_k)
    table = pd.DataFrame(
        {
            "visitorid": outcomes["visitorid"].to_numpy(),
            "timestamp": labelled,
            "t_ref": t_ref,
            "true_categoryid": y,
            "candidate": outcomes["covered"].to_numpy() > 0,
            "hit_top1": outcomes["hit1"].to_numpy() > 0,
            "hit_top3": outcomes["hit3"].to_numpy() > 0,
        }
    )
    for j in range(top_k):  # a handful of columns
        table[f"rank_{j + 1}"] = pd.array(np.where(top[:, j] >= 0, top[:, j], 0), dtype="Int64")
        table.loc[top[:, j] < 0, f"rank_{j + 1}"] = pd.NA
    return table
