"""Ranking metrics of Task 1: order within cases, per-case outcomes and the contract metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.ranking.cases import case_table, rank_in_groups
from core.ranking.markov import MarkovModel
from core.ranking.models import UNRANKED, Candidates

MRR_K = 5  # MRR@5: 1/rank when the true category is ranked within the first five, else 0
NOT_RANKED = np.iinfo(np.int64).max  # the 0-based rank of a candidate the ranker leaves out


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


def reciprocal_rank(ranks: np.ndarray, k: int = MRR_K) -> np.ndarray:
    """1 / (rank + 1) for 0-based ranks below k, else 0."""
    ranks = np.asarray(ranks, dtype=np.int64)
    inside = ranks < k
    return np.where(inside, 1.0 / (np.where(inside, ranks, 0) + 1.0), 0.0)


def _outcome_frame(
    cases: pd.DataFrame, covered: np.ndarray, hit1: np.ndarray, hit3: np.ndarray, rr5: np.ndarray
) -> pd.DataFrame:
    """The per-case outcome table: case_id, visitorid, one, covered, hit1, hit3, rr5, switch."""
    return pd.DataFrame(
        {
            "case_id": cases["case_id"].to_numpy(),
            "visitorid": cases["visitorid"].to_numpy(),
            "one": np.ones(len(cases)),
            "covered": covered.astype(float),
            "hit1": hit1.astype(float),
            "hit3": hit3.astype(float),
            "rr5": rr5.astype(float),
            "switch": cases["last_cat"].to_numpy() != cases["y"].to_numpy(),
        }
    )


def label_ranks(cands: Candidates, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(case_id, 0-based rank) of every label row (at most one per case, as candidates are
    distinct); NOT_RANKED where the ranker leaves the label out (an UNRANKED score)."""
    scores = np.asarray(scores, dtype=np.float64)
    label = np.asarray(cands["label"]) == 1
    case_id = np.asarray(cands["case_id"], dtype=np.int64)
    if not len(scores):
        return case_id[label], np.zeros(0, dtype=np.int64)
    ranks = _counted_label_ranks(cands, scores, label, case_id)
    if ranks is None:  # case ids too sparse for a lookup table, or NaN scores: sort
        ranks = case_ranks_by_score(cands, scores)[label]
    ranks[scores[label] == UNRANKED] = NOT_RANKED
    return case_id[label], ranks


def _counted_label_ranks(
    cands: Candidates, scores: np.ndarray, label: np.ndarray, case_id: np.ndarray
) -> np.ndarray | None:
    """The label rows' ranks in order_within_cases's order, counted instead of sorted: a label's
    rank is the number of its case's rows ordered before it (linear, where the lexsort of every
    row was the metrics' largest cost). None when the count does not apply (NaN scores, which
    the sort places last, or case ids too sparse for a lookup table)."""
    if np.isnan(scores).any() or case_id.min() < 0 or case_id.max() > 4 * len(case_id) + 1024:
        return None
    lab = np.flatnonzero(label)
    slot = np.full(int(case_id.max()) + 1, -1, dtype=np.int64)
    slot[case_id[lab]] = np.arange(lab.size)
    row_slot = slot[case_id]  # the label of each row's case (-1: the case has no label row)
    rows = np.flatnonzero(row_slot >= 0)
    j = row_slot[rows]
    pos, cat = np.asarray(cands["pos_from_end"]), np.asarray(cands["categoryid"])
    s, ls = scores[rows], scores[lab][j]
    p, lp = pos[rows], pos[lab][j]
    ahead = (s > ls) | ((s == ls) & ((p < lp) | ((p == lp) & (cat[rows] < cat[lab][j]))))
    return np.bincount(j[ahead], minlength=lab.size).astype(np.int64)


def label_hits(cands: Candidates, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(case_id, hit1, hit3) of every label row."""
    case_id, ranks = label_ranks(cands, scores)
    return case_id, ranks == 0, ranks < 3


def case_ranks(cands: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """Per case (sorted by case_id): case_id, visitorid, y, last_cat and the label's 0-based
    rank (NOT_RANKED when the label is not a candidate or the ranker leaves it out)."""
    cases = case_table(cands)
    label_case, ranks = label_ranks(cands, scores)
    rank = np.full(len(cases), NOT_RANKED, dtype=np.int64)
    covered = np.zeros(len(cases), dtype=bool)
    pos = np.searchsorted(cases["case_id"].to_numpy(), label_case)
    rank[pos] = ranks
    covered[pos] = True
    return cases.assign(rank=rank, covered=covered)


def case_outcomes(cands: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """Per case (sorted by case_id): case_id, visitorid, one, covered, hit1, hit3, rr5, switch."""
    cases = case_ranks(cands, scores)
    rank = cases["rank"].to_numpy()
    return _outcome_frame(cases, cases["covered"].to_numpy(), rank == 0, rank < 3, reciprocal_rank(rank))


def markov_only_outcomes(cases: pd.DataFrame, markov: MarkovModel) -> pd.DataFrame:
    """Per case: rank ALL categories by P(next | last category of H); y covered iff P(y|last) > 0.

    Ties by transition count are broken by category id (MarkovModel.top's order). A case whose last
    category was never seen in training has no ranking: not covered, no hit.
    """
    last = cases["last_cat"].to_numpy(np.int64)
    y = cases["y"].to_numpy(np.int64)
    covered = markov.prob(last, y) > 0 if len(cases) else np.zeros(0, dtype=bool)
    q, cat, _ = markov.top(last, MRR_K)
    hit = cat == y[q]
    rank = rank_in_groups(q)  # 0 = best
    n = len(cases)
    hit1 = np.bincount(q[hit & (rank == 0)], minlength=n) > 0
    hit3 = np.bincount(q[hit & (rank < 3)], minlength=n) > 0
    rr5 = np.bincount(q[hit], weights=reciprocal_rank(rank[hit]), minlength=n)
    return _outcome_frame(cases, covered, hit1, hit3, rr5)


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
    """coverage, top1/top3 (covered cases), top1_all/top3_all and mrr5 (all cases), with case counts."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(cands):
        raise ValueError("scores must have one value per candidate row")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n_cases = int(pd.unique(cands["case_id"].to_numpy()).size) if len(cands) else 0
    label_case, ranks = label_ranks(cands, scores)
    n_covered, hit1, hit3 = len(label_case), int((ranks == 0).sum()), int((ranks < 3).sum())
    return {
        **rates(n_cases, n_covered, hit1, hit3),
        "mrr5": float(reciprocal_rank(ranks).sum() / n_cases) if n_cases else float("nan"),
        "n_cases": n_cases,
        "n_covered": n_covered,
        "n_top1": hit1,
        "n_top3": hit3,
    }
