"""Ranking metrics of Task 1: order within cases, per-case outcomes and the contract metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.ranking.cases import case_table, rank_in_groups
from core.ranking.markov import MarkovModel
from core.ranking.models import Candidates


def order_within_cases(cands: Candidates, scores: np.ndarray) -> np.ndarray:
    """Row order by (case_id, score desc, pos_from_end asc, categoryid asc)."""
    return np.lexsort(
        (
            np.asarray(cands["categoryid"]),
            np.asarray(cands["pos_from_end"]),
            -np.asarray(scores, dtype=np.float64),
            np.asarray(cands["case_id"]),
        )
    )


def case_ranks_by_score(cands: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
    """0-based rank of every row within its case (deterministic tie-break)."""
    order = order_within_cases(cands, scores)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = rank_in_groups(cands["case_id"].to_numpy()[order])
    return ranks


def _outcome_frame(cases: pd.DataFrame, covered: np.ndarray, hit1: np.ndarray, hit3: np.ndarray) -> pd.DataFrame:
    """The per-case outcome table: case_id, visitorid, one, covered, hit1, hit3, switch."""
    return pd.DataFrame(
        {
            "case_id": cases["case_id"].to_numpy(),
            "visitorid": cases["visitorid"].to_numpy(),
            "one": np.ones(len(cases)),
            "covered": covered.astype(float),
            "hit1": hit1.astype(float),
            "hit3": hit3.astype(float),
            "switch": cases["last_cat"].to_numpy() != cases["y"].to_numpy(),
        }
    )


def label_hits(cands: pd.DataFrame, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(case_id, hit1, hit3) of every label row: at most one per case, as candidates are distinct."""
    label = cands["label"].to_numpy() == 1
    if len(cands):
        ranks = case_ranks_by_score(cands, np.asarray(scores, dtype=np.float64))[label]
    else:
        ranks = np.zeros(0, dtype=np.int64)
    return cands["case_id"].to_numpy(np.int64)[label], ranks == 0, ranks < 3


def case_outcomes(cands: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """Per case (sorted by case_id): case_id, visitorid, one, covered, hit1, hit3, switch."""
    cases = case_table(cands)
    label_case, is_hit1, is_hit3 = label_hits(cands, scores)
    pos = np.searchsorted(cases["case_id"].to_numpy(), label_case)
    n = len(cases)
    covered, hit1, hit3 = np.zeros(n), np.zeros(n), np.zeros(n)
    covered[pos] = 1.0
    hit1[pos] = is_hit1
    hit3[pos] = is_hit3
    return _outcome_frame(cases, covered, hit1, hit3)


def markov_only_outcomes(cases: pd.DataFrame, markov: MarkovModel) -> pd.DataFrame:
    """Per case: rank ALL categories by P(next | last category of H); y covered iff P(y|last) > 0.

    Ties by transition count are broken by category id (MarkovModel.top's order). A case whose last
    category was never seen in training has no ranking: not covered, no hit.
    """
    last = cases["last_cat"].to_numpy(np.int64)
    y = cases["y"].to_numpy(np.int64)
    covered = markov.prob(last, y) > 0 if len(cases) else np.zeros(0, dtype=bool)
    q, cat, _ = markov.top(last, 3)
    hit = cat == y[q]
    rank = rank_in_groups(q)  # 0 = best
    n = len(cases)
    hit1 = np.bincount(q[hit & (rank == 0)], minlength=n) > 0
    hit3 = np.bincount(q[hit], minlength=n) > 0
    return _outcome_frame(cases, covered, hit1, hit3)


def rates(n_cases: int, n_covered: int, n_top1: int, n_top3: int) -> dict[str, float]:
    """coverage, top1/top3 among covered cases, top1_all/top3_all among all (NaN on 0 cases)."""

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "coverage": ratio(n_covered, n_cases),
        "top1": ratio(n_top1, n_covered),
        "top3": ratio(n_top3, n_covered),
        "top1_all": ratio(n_top1, n_cases),
        "top3_all": ratio(n_top3, n_cases),
    }


def ranking_metrics(cands: pd.DataFrame, scores: np.ndarray) -> dict[str, Any]:
    """coverage, top1/top3 (covered cases), top1_all/top3_all (all cases), with case counts."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(cands):
        raise ValueError("scores must have one value per candidate row")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n_cases = int(pd.unique(cands["case_id"].to_numpy()).size) if len(cands) else 0
    label_case, is_hit1, is_hit3 = label_hits(cands, scores)
    n_covered, hit1, hit3 = len(label_case), int(is_hit1.sum()), int(is_hit3.sum())
    return {
        **rates(n_cases, n_covered, hit1, hit3),
        "n_cases": n_cases,
        "n_covered": n_covered,
        "n_top1": hit1,
        "n_top3": hit3,
    }
