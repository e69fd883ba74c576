"""Tests of core.evaluation (honest evaluation) on small hand-made data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.anomaly.detector import fit_detector
from core.anomaly.features import user_features
from core.base import stats
from core.base.schema import (
    DETECTOR_QUALITY_CSV,
    DETECTOR_QUALITY_JSON,
    EVALUATION_CSV,
    EVALUATION_JSON,
    MARKOV_CANDIDATES_CSV,
    METRICS,
    USER_FEATURES,
)
from core.evaluation.detectors import detection_stats, detector_quality, fit_and_flag, quality_table
from core.evaluation.run import EVAL_RANKERS, REPORT_DECIMALS, evaluate_split, write_all
from core.evaluation.splits import (
    evaluation_cases,
    group_split_spec,
    switch_case_ids,
    switch_only,
    temporal_split,
    temporal_split_spec,
)
from core.evaluation.tables import CSV_COLUMNS, POPULATION_KEYS, headline, metric_rows, metric_rows_multi
from core.ranking.candidates import build_candidates
from core.ranking.cases import case_table, case_times
from core.ranking.markov import add_markov, cross_fit_markov, fit_markov, transition_pairs
from core.ranking.metrics import case_outcomes, markov_only_outcomes, ranking_metrics
from core.ranking.models import rule_scores
from core.ranking.split import drop_rare_labels

# Tiny user tables: IsolationForest warns that max_samples (256) exceeds the user count.
pytestmark = pytest.mark.filterwarnings("ignore:max_samples.*:UserWarning")

MIN = 60_000
DAY = 86_400_000
A, B, C = 10, 20, 30


def views(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    """Prepared events from (visitorid, timestamp, categoryid) view rows."""
    vis, ts, cat = (np.array(c, dtype=np.int64) for c in zip(*rows))
    return pd.DataFrame(
        {
            "timestamp": ts,
            "visitorid": vis,
            "event": pd.Categorical(["view"] * len(rows), categories=["view", "addtocart", "transaction"]),
            "itemid": cat * 100 + vis,
            "transactionid": np.nan,
            "categoryid": cat,
        }
    )


def tiny_world(seed: int = 0, n_normal: int = 240, n_bots: int = 12, days: int = 30):
    """Normal visitors (2-6 views in one or two categories) and fast category-hopping bots."""
    rng = np.random.default_rng(seed)
    n_vis = n_normal + n_bots
    is_bot = np.arange(n_vis) >= n_normal
    n_views = np.where(is_bot, rng.integers(40, 80, n_vis), rng.integers(2, 7, n_vis))
    owner = np.repeat(np.arange(n_vis), n_views)
    start = rng.integers(0, (days - 1) * DAY, n_vis)
    step = np.where(is_bot[owner], rng.integers(1_000, 4_000, owner.size), rng.integers(MIN, 20 * MIN, owner.size))
    first_of_visitor = np.cumsum(n_views) - n_views
    pos = np.arange(owner.size) - np.repeat(first_of_visitor, n_views)
    # Timestamps: the visitor's start plus the cumulative steps within the visitor.
    csum = np.cumsum(step)
    before_first = np.repeat(csum[first_of_visitor] - step[first_of_visitor], n_views)
    ts = start[owner] + (csum - before_first)
    home = rng.integers(0, 6, n_vis)
    normal_cat = np.where(rng.random(owner.size) < 0.8, home[owner], rng.integers(0, 6, owner.size))
    bot_cat = (home[owner] + pos) % 8  # bots walk through the categories in order
    cat = 100 + np.where(is_bot[owner], bot_cat, normal_cat)
    events = views(list(zip(owner + 1, ts, cat)))
    labels = pd.DataFrame({"visitorid": np.flatnonzero(is_bot) + 1, "kind": "crawler"})
    return events, labels


# ------------------------------------------------------------------------------ small pieces


def test_jaccard():
    assert stats.jaccard([1, 2, 3], [2, 3, 4]) == pytest.approx(0.5)
    assert stats.jaccard([1, 2], [3]) == 0.0
    assert stats.jaccard([], []) == 1.0
    assert stats.jaccard(np.array([5, 5, 6]), np.array([6, 5])) == 1.0


def test_flag_top_share_exact_count_and_tie_break():
    assert stats.flag_top_share(np.array([1.0, 5.0, 4.0, 3.0]), 0.5).tolist() == [False, True, True, False]
    # Three tied top scores, two slots: the two smallest visitor ids win.
    flags = stats.flag_top_share(np.array([5.0, 5.0, 5.0, 1.0]), 0.5, ids=np.array([30, 10, 20, 40]))
    assert flags.tolist() == [False, True, True, False]


def test_pr_auc_perfect_and_random():
    truth = np.array([0, 0, 1, 0, 1], dtype=bool)
    assert stats.pr_auc(truth, np.array([0.1, 0.2, 0.9, 0.3, 0.8])) == pytest.approx(1.0)
    assert stats.pr_auc(truth, np.array([0.9, 0.8, 0.1, 0.7, 0.2])) < 0.5
    assert np.isnan(stats.pr_auc(np.zeros(3, bool), np.arange(3.0)))


def test_per_case_vs_per_visitor_averages_hand_computed():
    # Visitor 1: 3 cases, all hits; visitor 2: 1 case, no hit.
    hits, cases, vis = np.array([1, 1, 1, 0]), np.ones(4), np.array([1, 1, 1, 2])
    assert stats.per_case_average(hits, cases) == pytest.approx(3 / 4)
    assert stats.per_visitor_average(hits, cases, vis) == pytest.approx((1 + 0) / 2)


def test_metric_rows_hand_computed_with_covered_denominators():
    out = pd.DataFrame(
        {
            "case_id": [0, 1, 2, 3],
            "visitorid": [1, 1, 1, 2],
            "one": 1.0,
            "covered": [1.0, 1.0, 0.0, 1.0],
            "hit1": [1.0, 0.0, 0.0, 1.0],
            "hit3": [1.0, 1.0, 0.0, 1.0],
        }
    )
    rows = {(r["metric"], r["average"]): r for r in metric_rows(out, n_boot=50, seed=0)}
    assert rows[("coverage", "per case")]["value"] == pytest.approx(3 / 4)
    assert rows[("coverage", "per visitor")]["value"] == pytest.approx((2 / 3 + 1) / 2)
    assert rows[("top1", "per case")]["value"] == pytest.approx(2 / 3)
    assert rows[("top1", "per case")]["n_cases"] == 3  # covered cases only
    assert rows[("top1", "per visitor")]["value"] == pytest.approx((1 / 2 + 1) / 2)
    assert rows[("top1_all", "per case")]["value"] == pytest.approx(2 / 4)
    assert rows[("top1_all", "per visitor")]["value"] == pytest.approx((1 / 3 + 1) / 2)
    assert rows[("top3", "per case")]["value"] == pytest.approx(1.0)
    assert rows[("top1_all", "per case")]["n_cases"] == 4
    assert rows[("top1_all", "per case")]["n_visitors"] == 2


def _outcomes(hit1: list[float], vis: list[int]) -> pd.DataFrame:
    n = len(hit1)
    return pd.DataFrame(
        {"case_id": np.arange(n), "visitorid": vis, "one": 1.0, "covered": 1.0, "hit1": hit1, "hit3": 1.0}
    )


def test_metric_rows_multi_paired_difference():
    vis = [1, 1, 2, 3, 3, 3, 4, 5]
    a = _outcomes([1, 1, 0, 1, 1, 0, 1, 1], vis)
    b = _outcomes([1, 0, 0, 1, 0, 0, 1, 0], vis)
    res = metric_rows_multi({"a": a, "b": b}, n_boot=200, seed=1, diffs=[("a", "b")])
    key = lambda rows: {(r["metric"], r["average"]): r for r in rows}  # noqa: E731
    ra, d = key(res["a"]), key(res["a - b"])
    assert ra == key(metric_rows(a, n_boot=200, seed=1))  # same as one arm alone
    assert d[("top1_all", "per case")]["value"] == pytest.approx(6 / 8 - 3 / 8)
    assert d[("top1_all", "per visitor")]["value"] == pytest.approx(
        np.mean([1, 0, 2 / 3, 1, 1]) - np.mean([1 / 2, 0, 1 / 3, 1, 0])
    )
    # a >= b on every case: every paired replicate difference is >= 0, so the CI is too.
    assert d[("top1_all", "per case")]["ci_low"] >= 0
    assert d[("coverage", "per case")]["value"] == 0 and d[("coverage", "per case")]["ci_high"] == 0
    with pytest.raises(Exception, match="same cases"):
        metric_rows_multi({"a": a, "b": b.iloc[1:]})


def test_bootstrap_weights_resample_every_visitor_count():
    w = stats.bootstrap_weights(7, 11, np.random.default_rng(0))
    assert w.shape == (11, 7)
    assert (w.sum(axis=1) == 7).all() and (w >= 0).all()


def _bootstrap_data(n_vis: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 6, n_vis)
    vis = np.repeat(np.arange(n_vis), per)
    p = rng.uniform(0.2, 0.9, n_vis)[vis]  # visitors differ: clustered hits
    hits = (rng.random(vis.size) < p).astype(float)
    return hits, np.ones(vis.size), vis


def test_bootstrap_ci_contains_estimate_and_shrinks_with_more_data():
    small = stats.bootstrap_ci(*_bootstrap_data(30, 1), n_boot=400, seed=3)
    large = stats.bootstrap_ci(*_bootstrap_data(3000, 1), n_boot=400, seed=3)
    for res in (small, large):
        for avg in ("per case", "per visitor"):
            r = res[avg]
            assert r["ci_low"] <= r["value"] <= r["ci_high"]
            assert r["ci_low"] < r["ci_high"]
    for avg in ("per case", "per visitor"):
        width_small = small[avg]["ci_high"] - small[avg]["ci_low"]
        width_large = large[avg]["ci_high"] - large[avg]["ci_low"]
        assert width_large < width_small / 4  # ~ 1/sqrt(100) = 1/10 expected
    again = stats.bootstrap_ci(*_bootstrap_data(30, 1), n_boot=400, seed=3)
    assert again == small  # fixed seed: identical


def test_bootstrap_resamples_visitors_not_cases():
    # One visitor with all the hits: a case bootstrap would give a narrow CI, a visitor one must
    # reach 0 (replicates that miss the visitor) — the interval spans the visitor clustering.
    hits = np.r_[np.ones(50), np.zeros(5)]
    vis = np.r_[np.zeros(50), np.arange(1, 6)]
    res = stats.bootstrap_ci(hits, np.ones(55), vis, n_boot=400, seed=0)
    assert res["per case"]["ci_low"] < 0.2 and res["per case"]["ci_high"] == pytest.approx(1.0, abs=0.05)


# ------------------------------------------------------------------------------ splits


def test_temporal_split_boundary_is_exactly_14_days():
    t_max = 100 * DAY
    ts = np.array([0, t_max - 14 * DAY - 1, t_max - 14 * DAY, t_max - 1, t_max])
    events = views([(1, t, A) for t in ts])
    before, after, cutoff = temporal_split(events, test_days=14)
    assert cutoff == t_max - 14 * DAY
    assert before["timestamp"].tolist() == [0, t_max - 14 * DAY - 1]
    assert after["timestamp"].tolist() == [t_max - 14 * DAY, t_max - 1, t_max]


def test_temporal_spec_cases_at_the_cutoff_are_test_and_keep_old_history():
    cutoff = 50 * DAY
    rows = [
        (1, cutoff - 2 * MIN, A),
        (1, cutoff, B),  # view exactly at the cutoff: test case
        (2, cutoff - 3 * MIN, A),
        (2, cutoff - 1, A),  # one ms before: train case
        (3, 0, C),
        (3, MIN, C),  # early train case
        (4, cutoff + 14 * DAY - MIN, A),
        (4, cutoff + 14 * DAY, C),  # the last event defines max
    ]
    events = views(rows)
    cands, _ = drop_rare_labels(build_candidates(events), min_count=1)
    spec = temporal_split_spec(events, cands, user_features(events), test_days=14)
    assert sorted(spec.test["visitorid"].unique()) == [1, 4]
    assert sorted(spec.train["visitorid"].unique()) == [2, 3]
    # Visitor 1's test case has its history (view of A) before the cutoff: allowed and kept.
    t1 = spec.test[spec.test["visitorid"] == 1]
    assert t1["categoryid"].tolist() == [A] and (t1["t_ref"] < cutoff).all()
    assert spec.info["cutoff_ms"] == cutoff


def test_case_view_times_match_ranking_case_ids():
    events, _ = tiny_world(seed=3)
    cands = build_candidates(events)
    view_ts, ref_ts = case_times(events)
    cases = case_table(cands)
    assert view_ts.size == len(cases)
    t_ref = cands.groupby("case_id")["t_ref"].first().to_numpy()
    assert np.array_equal(ref_ts[cases["case_id"].to_numpy()], t_ref)
    assert (view_ts >= ref_ts).all()


# ------------------------------------------------------------------------------ switch-only


def _hand_cands() -> pd.DataFrame:
    """Case 0 stays (y = last), case 1 switches to an older category, case 2 switches to a new one."""
    return pd.DataFrame(
        {
            "visitorid": [1, 1, 1, 1, 2],
            "case_id": [0, 0, 1, 1, 2],
            "t_ref": 0,
            "categoryid": [A, B, A, B, C],
            "cnt": [2, 1, 1, 3, 1],
            "share": 0.5,
            "is_last": [1, 0, 1, 0, 1],
            "last_gap_min": 0.0,
            "pos_from_end": [0, 1, 0, 1, 0],
            "tail_streak_if_last": [1, 0, 1, 0, 1],
            "n_views": 3,
            "label": [1, 0, 0, 1, 0],
            "y": [A, A, B, B, A],
        }
    )


def test_switch_only_selects_cases_whose_next_differs_from_last():
    cands = _hand_cands()
    assert switch_case_ids(cands).tolist() == [1, 2]
    assert sorted(switch_only(cands)["case_id"].unique()) == [1, 2]
    out = case_outcomes(cands, rule_scores(cands))
    assert out["switch"].tolist() == [False, True, True]
    # Rule: case 0 -> A first (hit), case 1 -> B (cnt 3) first (hit), case 2 not covered.
    assert out["covered"].tolist() == [1, 1, 0]
    assert out["hit1"].tolist() == [1, 1, 0]


def test_case_outcomes_agree_with_ranking_metrics():
    events, _ = tiny_world(seed=5)
    cands = build_candidates(events)
    scores = rule_scores(cands)
    h = headline(case_outcomes(cands, scores))
    m = ranking_metrics(cands, scores)
    for k in ("coverage", "top1", "top3", "top1_all", "top3_all"):
        assert h[k] == pytest.approx(m[k])
    assert h["n_cases"] == m["n_cases"]


# ------------------------------------------------------------------------------ Markov


def _markov_events() -> pd.DataFrame:
    # Training transitions (last of H -> y): A->B twice, A->C once, B->A once.
    return views(
        [
            (1, 0, A),
            (1, MIN, B),
            (2, 0, A),
            (2, MIN, B),
            (3, 0, A),
            (3, MIN, C),
            (4, 0, B),
            (4, MIN, A),
        ]
    )


def test_markov_transition_probabilities_hand_computed():
    cands = build_candidates(_markov_events())
    pairs = transition_pairs(cands)
    assert sorted(zip(pairs["prev_cat"], pairs["y"])) == [(A, B), (A, B), (A, C), (B, A)]
    mk = fit_markov(pairs[["prev_cat", "y"]])
    p = mk.prob(np.array([A, A, B, B]), np.array([B, C, A, C]))
    assert p == pytest.approx([2 / 3, 1 / 3, 1.0, 0.0])


def test_markov_extra_candidates_raise_coverage_on_the_same_cases():
    mk = fit_markov(transition_pairs(build_candidates(_markov_events()))[["prev_cat", "y"]])
    # Test visitor 9 views A then C: C is not in the history, so history-only cannot cover it.
    test = build_candidates(views([(9, 0, A), (9, MIN, C), (8, 0, B), (8, MIN, B)]))
    hist = case_outcomes(test, rule_scores(test))
    aug = add_markov(test, mk, top_n=2)
    assert set(
        aug.loc[aug["case_id"] == case_table(test).query("visitorid == 9")["case_id"].iloc[0], "categoryid"]
    ) == {A, B, C}
    with_markov = case_outcomes(aug, aug["markov_prob"].to_numpy())
    assert with_markov["case_id"].tolist() == hist["case_id"].tolist()  # same case ids
    assert hist["covered"].sum() == 1 and with_markov["covered"].sum() == 2
    # Markov-only over all categories: for last = A, B (2/3) ranks above C (1/3).
    only = markov_only_outcomes(case_table(test), mk)
    row = only[only["visitorid"] == 9].iloc[0]
    assert (row["covered"], row["hit1"], row["hit3"]) == (1.0, 0.0, 1.0)
    # Visitor 8: last = B, y = B; P(B | B) = 0 in training: not covered.
    assert only[only["visitorid"] == 8]["covered"].iloc[0] == 0.0


def test_cross_fitted_markov_never_uses_a_case_own_transition():
    events = _markov_events()
    cands = build_candidates(events)
    pairs = transition_pairs(cands)
    aug = cross_fit_markov(pairs, cands, top_n=0, seed=0, folds=4)  # one visitor per fold
    # Visitor 3 (A -> C) is the only A -> C transition: without it, P(C | A) is 0.
    v3 = aug[aug["visitorid"] == 3]
    assert v3["markov_prob"].tolist() == [0.0]  # its only candidate is A; P(A | A) = 0 too
    aug_top = cross_fit_markov(pairs, cands, top_n=3, seed=0, folds=4)
    assert C not in aug_top.loc[aug_top["visitorid"] == 3, "categoryid"].tolist()


# ------------------------------------------------------------------------------ whole split


@pytest.fixture(scope="module")
def world():
    events, labels = tiny_world(seed=11)
    cands, _ = evaluation_cases(events)
    features = user_features(events)
    return events, labels, cands, features


def test_group_split_table_has_2x3_populations_and_counts_add_up(world):
    events, labels, cands, features = world
    spec = group_split_spec(cands, features, seed=0)
    assert np.intersect1d(spec.train["visitorid"], spec.test["visitorid"]).size == 0
    assert np.intersect1d(spec.detector_train["visitorid"], spec.detector_test["visitorid"]).size == 0
    res = evaluate_split(spec, share=0.05, seed=0, labels=labels, n_boot=40, markov_top_ns=(5,))
    table = pd.DataFrame(res["table"])
    assert set(zip(table["ranker"], table["population_key"])) == {(r, p) for r in EVAL_RANKERS for p in POPULATION_KEYS}
    assert table["population"].str.len().min() > 20  # plain-language captions
    for r in EVAL_RANKERS:
        t = table[table["ranker"] == r].set_index("population_key")
        assert t.loc["flagged", "n_cases"] + t.loc["non_flagged", "n_cases"] == t.loc["all", "n_cases"]
        assert t.loc["flagged", "n_visitors"] + t.loc["non_flagged", "n_visitors"] == t.loc["all", "n_visitors"]
        assert t.loc["all", "n_cases"] == spec.test["case_id"].nunique()  # one fixed test set
    assert (table.loc[table["population_key"] == "flagged", "n_cases"] > 0).all()
    long = pd.DataFrame(res["metrics"])
    assert set(long["ranker"]) == set(EVAL_RANKERS) | {"clean - raw", "raw - recency"}
    assert len(long) == (len(EVAL_RANKERS) + 2) * 3 * len(METRICS) * 2
    assert set(long["average"]) == {"per case", "per visitor"}
    finite = long.dropna(subset=["value", "ci_low", "ci_high"])
    assert ((finite["ci_low"] <= finite["value"] + 1e-12) & (finite["value"] <= finite["ci_high"] + 1e-12)).mean() > 0.9
    sw = res["switch_only"]
    assert 0 < sw["n_cases"] < table.loc[table["population_key"] == "all", "n_cases"].iloc[0]
    rows = pd.DataFrame(res["markov_candidates"]["rows"])
    assert rows["n_cases"].nunique() == 1  # the same test cases for every candidate set
    hist = rows.set_index("candidate_set")
    assert hist.loc["history + markov top5", "coverage"] >= hist.loc["history", "coverage"]


def test_detector_is_fitted_on_training_users_only(world, monkeypatch):
    events, labels, cands, features = world
    spec = group_split_spec(cands, features, seed=0)
    seen = []
    real = fit_detector

    def spy(feats, share, seed):
        seen.append(set(feats["visitorid"]))
        return real(feats, share=share, seed=seed)

    monkeypatch.setattr("core.evaluation.detectors.fit_detector", spy)  # where fit_and_flag looks it up
    fit_and_flag(spec, 0.05, 0, labels)
    assert seen and not (seen[0] & set(spec.detector_test["visitorid"]))


@pytest.mark.e2e  # writes every evaluation file twice (over 5 s)
def test_write_all_files_captions_and_byte_identical_rerun(world, tmp_path):
    events, labels, _, _ = world
    write_all(events, labels, seed=0, share=0.05, out=tmp_path / "a", n_boot=30)
    write_all(events, labels, seed=0, share=0.05, out=tmp_path / "b", n_boot=30)
    for name in (
        EVALUATION_JSON,
        EVALUATION_CSV,
        MARKOV_CANDIDATES_CSV,
        DETECTOR_QUALITY_JSON,
        DETECTOR_QUALITY_CSV,
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    report = json.loads((tmp_path / "a" / EVALUATION_JSON).read_text())
    assert set(report["splits"]) == {"group", "temporal"}
    for split in report["splits"].values():
        assert all(isinstance(r["population"], str) and r["population"] for r in split["table"])
        assert all(r["population"] for r in split["markov_candidates"]["rows"])
    flat = pd.read_csv(tmp_path / "a" / EVALUATION_CSV)
    assert list(flat.columns) == list(CSV_COLUMNS)
    assert set(flat["split"]) == {"group", "temporal"}
    markov = pd.read_csv(tmp_path / "a" / MARKOV_CANDIDATES_CSV)
    assert {"history", "history + markov top5", "markov only (all categories)"} <= set(markov["candidate_set"])


# ------------------------------------------------------------------------------ detector quality


def _feature_table(n: int = 100, n_bad: int = 4, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random visitors that obey the contract's feature-row rules; n_bad of them are crawlers."""
    rng = np.random.default_rng(seed)
    bad = np.arange(n_bad) * 7 + 3
    addtocart, transaction = rng.integers(0, 3, n), rng.integers(0, 2, n)
    view = rng.integers(1, 6, n)
    view[bad] = 2000 - addtocart[bad] - transaction[bad]
    events = view + addtocart + transaction
    n_sessions = rng.integers(1, events + 1)
    days = np.where(np.isin(np.arange(n), bad), 4, rng.integers(1, n_sessions + 1))
    uniq_items, uniq_cats = rng.integers(1, events + 1), rng.integers(0, events + 1)
    f = pd.DataFrame(
        {
            "events": events,
            "view": view,
            "addtocart": addtocart,
            "transaction": transaction,
            "uniq_items": uniq_items,
            "uniq_cats": uniq_cats,
            "cat_entropy": rng.uniform(0, 1, n) * np.log2(np.maximum(uniq_cats, 1)),
            "events_per_active_day": events / days,
            "add_to_view_rate": addtocart / np.maximum(view, 1),
            "txn_to_cart_rate": transaction / np.maximum(addtocart, 1),
            "night_share": rng.uniform(0, 1, n),
            "p95_gap_s": np.where(events < 2, 0.0, rng.uniform(0.5, 200, n)),
            "short_gap_share": rng.uniform(0, 1, n),
            "n_sessions": n_sessions,
            "sessions_per_day": n_sessions / days,
            "uniq_item_ratio": uniq_items / events,
        }
    )[list(USER_FEATURES)]
    f.insert(0, "visitorid", np.arange(n, dtype=np.int64) + 1000)
    labels = pd.DataFrame({"visitorid": f["visitorid"].to_numpy()[bad], "kind": "crawler"})
    return f, labels


def test_detection_stats_hand_computed():
    flags = np.array([1, 1, 0, 0, 1], dtype=bool)
    truth = np.array([1, 0, 1, 0, 1], dtype=bool)
    s = detection_stats(flags, np.array([0.9, 0.8, 0.1, 0.2, 0.7]), truth)
    assert s["n_flagged"] == 3
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["pr_auc"] == pytest.approx(stats.pr_auc(truth, np.array([0.9, 0.8, 0.1, 0.2, 0.7])))


def test_detector_quality_baselines_on_a_tiny_labelled_example():
    f, labels = _feature_table()
    q = detector_quality(f, labels, share=0.04, seed=0, seeds=(0, 1, 2))
    m = {r["method"]: r for r in q["methods"]}
    assert set(m) == {"isolation_forest", "robust_z", "hbos", "ecod", "volume_rule"}
    vol = m["volume_rule"]
    assert vol["n_flagged"] == 4
    assert (vol["precision"], vol["recall"], vol["pr_auc"]) == (1.0, 1.0, 1.0)
    assert vol["jaccard_with_volume_rule"] == 1.0
    assert m["volume_rule"]["recall_by_kind"] == {"crawler": 1.0}
    for name in ("isolation_forest", "robust_z", "hbos", "ecod"):
        assert m[name]["pr_auc"] > q["labels"]["base_rate"], name
        assert 0 <= m[name]["normal_buyers_flagged"] <= 1 and 0 <= m[name]["txn_held_by_flagged"] <= 1
    table = quality_table(q)
    assert {"recall_crawler", "normal_buyers_flagged", "txn_held_by_flagged", "pr_auc"} <= set(table.columns)
    st = q["stability"]
    assert st["seeds"] == [0, 1, 2] and 0 <= st["jaccard_pairwise_min"] <= st["jaccard_pairwise_mean"] <= 1
    assert len(st["pr_auc_by_seed"]) == 3


def test_detector_quality_without_labels_reports_only_overlap_and_stability():
    f, _ = _feature_table()
    q = detector_quality(f, None, share=0.04, seed=0, seeds=(0, 1))
    assert q["labels"]["present"] is False and "absent" in q["labels"]["note"]
    for r in q["methods"]:
        assert r["precision"] is None and r["recall"] is None and r["pr_auc"] is None
        assert 0.0 <= r["jaccard_with_volume_rule"] <= 1.0
    assert q["stability"]["pr_auc_mean"] is None
    assert q["stability"]["jaccard_pairwise_mean"] is not None


def test_json_rounding_and_nan_handling(tmp_path):
    from core.store.artifacts import write_json

    obj = {"b": float("nan"), "a": [np.float64(1 / 3), np.int64(2), np.bool_(True)]}
    write_json(obj, tmp_path / "x.json", decimals=REPORT_DECIMALS)
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [0.333333, 2, True], "b": None}
    write_json(obj, tmp_path / "exact.json")  # thresholds and model figures are never rounded
    assert json.loads((tmp_path / "exact.json").read_text())["a"][0] == 1 / 3
