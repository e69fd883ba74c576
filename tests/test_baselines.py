"""The simple baselines (recency, last category), MRR@5, the serving rule and its paired interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.base.stats import paired_difference_ci
from core.ranking.metrics import case_outcomes, ranking_metrics
from core.ranking.models import BASELINES, fit_ranker, last_category_scores, recency_scores, rule_scores
from core.ranking.select import serving_choice
from core.ranking.serve import rank

MIN = 60_000


def hand_cases() -> pd.DataFrame:
    """Three cases, candidates with hand-set features (label = the true next category).

    case 0: H = a a a b (b last) -> y = a; case 1: H = c d (d last) -> y = d;
    case 2: H = e e f (f last) -> y = g, not a candidate.
    """
    return pd.DataFrame(
        {
            "case_id": [0, 0, 1, 1, 2, 2],
            "visitorid": [1, 1, 1, 1, 2, 2],
            "categoryid": [10, 20, 30, 40, 50, 60],
            "cnt": [3, 1, 1, 1, 2, 1],
            "pos_from_end": [1, 0, 1, 0, 1, 0],
            "is_last": [0, 1, 0, 1, 0, 1],
            "label": [1, 0, 0, 1, 0, 0],
            "y": [10, 10, 40, 40, 70, 70],
        }
    )


def test_recency_ranks_the_most_recent_category_first():
    c = hand_cases()
    s = recency_scores(c)
    assert s[1] > s[0] and s[3] > s[2] and s[5] > s[4]
    m = ranking_metrics(c, s)
    # case 0: y=10 ranked 2nd; case 1: y=40 first; case 2: not covered
    assert (m["n_cases"], m["n_covered"], m["n_top1"], m["n_top3"]) == (3, 2, 1, 2)
    assert m["top1"] == pytest.approx(0.5) and m["top1_all"] == pytest.approx(1 / 3)
    assert m["mrr5"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_last_category_ranks_only_the_last_candidate():
    c = hand_cases()
    m = ranking_metrics(c, last_category_scores(c))
    # coverage is the case's (history candidates); only case 1 has y == the last category
    assert m["coverage"] == pytest.approx(2 / 3)
    assert (m["n_top1"], m["n_top3"]) == (1, 1)  # y=10 in case 0 is not ranked at all
    assert m["top3"] == m["top1"] == pytest.approx(0.5)
    assert m["mrr5"] == pytest.approx(1 / 3)
    out = case_outcomes(c, last_category_scores(c))
    assert out["rr5"].tolist() == [0.0, 1.0, 0.0] and out["covered"].tolist() == [1.0, 1.0, 0.0]


def test_rule_on_the_same_cases():
    c = hand_cases()
    m = ranking_metrics(c, rule_scores(c))
    assert (m["n_top1"], m["n_top3"]) == (2, 2)  # case 0: count wins; case 1: tie -> recent (40)
    assert m["mrr5"] == pytest.approx(2 / 3)


def test_rank_serves_every_baseline():
    views = [
        {"timestamp": 0, "categoryid": 5},
        {"timestamp": MIN, "categoryid": 5},
        {"timestamp": 2 * MIN, "categoryid": 7},
    ]
    res = {b: rank(views, fit_ranker(b, hand_cases()), top_k=5) for b in BASELINES}
    assert res["rule"].ranking["categoryid"].tolist() == [5, 7]
    assert res["recency"].ranking["categoryid"].tolist() == [7, 5]
    assert res["last_category"].ranking["categoryid"].tolist() == [7]  # only the last one
    assert all(r.ranker == b and r.fallback_reason is None for b, r in res.items())


def outcomes(hit1: np.ndarray, visitors: np.ndarray) -> pd.DataFrame:
    """A per-case outcome table with the given top-1 hits."""
    n = len(hit1)
    return pd.DataFrame(
        {"case_id": np.arange(n), "visitorid": visitors, "one": 1.0, "covered": 1.0, "hit1": hit1.astype(float)}
    )


def test_paired_difference_interval_contains_the_point_and_is_zero_for_equal_arms():
    rng = np.random.default_rng(0)
    vis = rng.integers(0, 200, 2000)
    a = rng.random(2000) < 0.6
    b = rng.random(2000) < 0.5
    d = paired_difference_ci(a, b, vis, n_boot=200, seed=1)
    assert d["value"] == pytest.approx(a.mean() - b.mean())
    assert d["ci_low"] < d["value"] < d["ci_high"] and d["ci_low"] > 0
    same = paired_difference_ci(a, a, vis, n_boot=200, seed=1)
    assert same["value"] == same["ci_low"] == same["ci_high"] == 0.0


def test_serving_rule_serves_a_learned_ranker_only_when_its_interval_is_above_zero():
    rng = np.random.default_rng(3)
    n = 3000
    vis = rng.integers(0, 300, n)
    base = rng.random(n) < 0.5
    clear_win = base | (rng.random(n) < 0.3)  # many more hits, never fewer: interval above zero
    flip = rng.random(n) < 0.05
    tie = np.where(flip, ~base, base)  # about as many gains as losses
    val = {"rule": outcomes(base, vis), "recency": outcomes(base & (rng.random(n) < 0.9), vis)}
    won = serving_choice({**val, "hgb": outcomes(clear_win, vis)}, ["rule", "recency"], ["hgb"], n_boot=200)
    assert won["served"] == "hgb" and won["learned_served"] and won["best_baseline"] == "rule"
    assert won["difference"]["ci_low"] > 0 and "hgb is served" in won["reason"]
    lost = serving_choice({**val, "hgb": outcomes(tie, vis)}, ["rule", "recency"], ["hgb"], n_boot=200)
    assert lost["served"] == "rule" and not lost["learned_served"]
    assert lost["difference"]["ci_low"] <= 0 and "baseline rule is served" in lost["reason"]


def test_why_text_says_in_plain_words_why_each_category_is_ranked():
    from core.ranking.explain import why_text

    views = [
        {"timestamp": 0, "categoryid": 5},
        {"timestamp": 3 * MIN, "categoryid": 5},
        {"timestamp": 5 * MIN, "categoryid": 5},
        {"timestamp": 7 * MIN, "categoryid": 7},
    ]
    res = rank(views, None, top_k=5)
    assert why_text(res.ranking).tolist() == [
        "first: last viewed 2 min before the last view, 3 of the 4 views",
        "second: viewed last, 1 of the 4 views",
    ]
