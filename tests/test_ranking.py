"""Task 1 ranking: hand-computed candidate features, rankers, metrics, rank() and the pipeline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from core.base.errors import DataError
from core.base.schema import CANDIDATE_FEATURES, LOOKBACK, MARKOV_FEATURE, WINDOW_MS
from core.ranking.candidates import CANDIDATE_COLUMNS, build_candidates
from core.ranking.cases import final_histories, history_before, pick_visitor, view_sequences
from core.ranking.markov import fit_markov
from core.ranking.metrics import order_within_cases, ranking_metrics
from core.ranking.models import (
    BASELINES,
    LEARNED_RANKERS,
    PARALLEL_MIN_ROWS,
    RankingModel,
    fit_ranker,
    rule_scores,
    with_n_jobs,
)
from core.ranking.serve import rank, rank_latest, validate_views
from core.ranking.split import drop_rare_labels, split_by_visitor
from core.ranking.train import RANKERS, train_and_evaluate

MIN = 60_000
HOUR = 60 * MIN


def events(rows: list[tuple]) -> pd.DataFrame:
    """Prepared events from (visitorid, timestamp, categoryid[, event]) tuples, in file order."""
    rows = [r if len(r) == 4 else r + ("view",) for r in rows]
    df = pd.DataFrame(rows, columns=["visitorid", "timestamp", "categoryid", "event"])
    df["itemid"] = np.arange(len(df), dtype=np.int64)
    df["transactionid"] = np.nan
    return df[["timestamp", "visitorid", "event", "itemid", "transactionid", "categoryid"]]


def case_rows(cands: pd.DataFrame, case_id: int) -> pd.DataFrame:
    """Candidates of one case, indexed by categoryid."""
    return cands[cands["case_id"] == case_id].set_index("categoryid")


def reference_candidates(ev: pd.DataFrame, lookback: int, window_ms: int) -> pd.DataFrame:
    """Straightforward per-case implementation of the case/history rule of docs/DATA_CONTRACT.md §2 (slow, for cross-checking only)."""
    v = ev[(ev["event"] == "view") & (ev["categoryid"] != -1)]
    v = v.iloc[np.lexsort((v["timestamp"].to_numpy(), v["visitorid"].to_numpy()))]
    out, case_id = [], 0
    for vid, g in v.groupby("visitorid", sort=True):
        ts, cat = g["timestamp"].tolist(), g["categoryid"].tolist()
        for i in range(len(ts)):
            hist = [j for j in range(i) if ts[j] >= ts[i] - window_ms][-lookback:]
            if not hist:
                continue
            hc = [cat[j] for j in hist]
            t_ref = ts[hist[-1]]
            streak = 0
            for c in reversed(hc):
                if c != hc[-1]:
                    break
                streak += 1
            for c in sorted(set(hc)):
                last = max(p for p, cc in enumerate(hc) if cc == c)
                out.append(
                    dict(
                        visitorid=vid,
                        case_id=case_id,
                        t_ref=t_ref,
                        categoryid=c,
                        cnt=hc.count(c),
                        share=hc.count(c) / len(hc),
                        is_last=int(c == hc[-1]),
                        last_gap_min=(t_ref - ts[hist[last]]) / MIN,
                        pos_from_end=len(hc) - 1 - last,
                        tail_streak_if_last=streak if c == hc[-1] else 0,
                        n_views=len(hc),
                        label=int(c == cat[i]),
                        y=cat[i],
                    )
                )
            case_id += 1
    return pd.DataFrame(out)


def synthetic_events(n_visitors: int = 300, seed: int = 0) -> pd.DataFrame:
    """Visitors browsing a few favourite categories with a sticky next-category process."""
    rng = np.random.default_rng(seed)
    n_views = rng.integers(1, 25, n_visitors)
    vis = np.repeat(np.arange(n_visitors, dtype=np.int64) * 7 + 3, n_views)
    favs = rng.integers(0, 12, (n_visitors, 3))
    pick = rng.integers(0, 3, len(vis))
    stay = rng.random(len(vis)) < 0.6
    cat = favs[np.repeat(np.arange(n_visitors), n_views), pick]
    cat = np.where(stay & (np.arange(len(vis)) > 0), np.roll(cat, 1), cat) + 100
    ts = np.cumsum(rng.integers(1, 40 * MIN, len(vis))) + 1_433_000_000_000
    df = pd.DataFrame(
        {
            "timestamp": ts,
            "visitorid": vis,
            "event": "view",
            "itemid": rng.integers(0, 500, len(vis)),
            "transactionid": np.nan,
            "categoryid": cat,
        }
    )
    df.loc[rng.random(len(df)) < 0.05, "event"] = "addtocart"
    df.loc[rng.random(len(df)) < 0.03, "categoryid"] = -1
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # file order != time


# ------------------------------------------------------------------------------ candidates


def test_seven_features_on_a_hand_worked_visitor():
    # H of the 6th view (t=100min): A@0, B@10, A@20, C@30, C@40 -> t_ref = 40 min
    ev = events([(1, 0, 5), (1, 10 * MIN, 6), (1, 20 * MIN, 5), (1, 30 * MIN, 7), (1, 40 * MIN, 7), (1, 100 * MIN, 6)])
    c = build_candidates(ev)
    assert list(c.columns) == list(CANDIDATE_COLUMNS)
    case = case_rows(c, 4)
    assert case["t_ref"].unique().tolist() == [40 * MIN]
    assert case["cnt"].to_dict() == {5: 2, 6: 1, 7: 2}
    assert case["share"].to_dict() == pytest.approx({5: 0.4, 6: 0.2, 7: 0.4})
    assert case["is_last"].to_dict() == {5: 0, 6: 0, 7: 1}
    assert case["last_gap_min"].to_dict() == pytest.approx({5: 20.0, 6: 30.0, 7: 0.0})
    assert case["pos_from_end"].to_dict() == {5: 2, 6: 3, 7: 0}
    assert case["tail_streak_if_last"].to_dict() == {5: 0, 6: 0, 7: 2}
    assert case["n_views"].unique().tolist() == [5]
    assert case["y"].unique().tolist() == [6]
    assert case["label"].to_dict() == {5: 0, 6: 1, 7: 0}
    assert c["case_id"].nunique() == 5  # every view but the first


def test_matches_a_straightforward_reference_on_random_data():
    ev = synthetic_events(60, seed=3)
    ev["timestamp"] = ev["timestamp"] // (15 * MIN) * (15 * MIN)  # many same-timestamp ties
    for lookback, window in [(100, WINDOW_MS), (4, 2 * HOUR)]:
        got = build_candidates(ev, lookback=lookback, window_ms=window)
        want = reference_candidates(ev, lookback, window)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_same_timestamp_views_keep_file_order():
    # two views at the same instant: the earlier one in the file is history of the later one
    ev = events([(1, 5 * MIN, 9), (1, 5 * MIN, 8), (1, 0, 7)])
    c = build_candidates(ev)
    assert c.groupby("case_id")["y"].first().tolist() == [9, 8]
    last = case_rows(c, 1)
    assert last["cnt"].to_dict() == {7: 1, 9: 1}
    assert last["is_last"].to_dict() == {7: 0, 9: 1}  # 9 came first in the file -> last of H
    assert last["pos_from_end"].to_dict() == {7: 1, 9: 0}


def test_one_view_visitor_unknown_categories_and_non_views_give_no_case():
    ev = events(
        [
            (1, 0, 5),
            (2, 0, -1),
            (2, MIN, 6),
            (3, 0, 4, "addtocart"),
            (3, MIN, 4),
            (4, 0, 3, "transaction"),
            (4, MIN, -1),
        ]
    )
    assert build_candidates(ev).empty


def test_unknown_categories_and_non_views_do_not_enter_history():
    ev = events([(1, 0, 5), (1, MIN, -1), (1, 2 * MIN, 6, "addtocart"), (1, 3 * MIN, 7)])
    c = build_candidates(ev)
    assert len(c) == 1
    row = c.iloc[0]
    assert (row["categoryid"], row["n_views"], row["y"], row["t_ref"]) == (5, 1, 7, 0)
    assert row["last_gap_min"] == 0.0


def test_24h_boundary_is_inclusive():
    inside = events([(1, 0, 5), (1, WINDOW_MS, 6)])
    outside = events([(1, 0, 5), (1, WINDOW_MS + 1, 6)])
    assert len(build_candidates(inside)) == 1
    assert build_candidates(outside).empty
    # the window is counted from the case's own view, not from t_ref
    ev = events([(1, 0, 5), (1, 10 * HOUR, 6), (1, WINDOW_MS + 1, 7)])
    last = case_rows(build_candidates(ev), 1)
    assert last.index.tolist() == [6] and last["n_views"].iloc[0] == 1


def test_lookback_truncates_to_the_last_views():
    ev = events([(1, i * MIN, c) for i, c in enumerate([5, 6, 7, 7, 6, 9])])
    case = case_rows(build_candidates(ev, lookback=3), 4)  # H = views 3..5: 7, 7, 6
    assert case["cnt"].to_dict() == {6: 1, 7: 2}
    assert case["n_views"].unique().tolist() == [3]
    assert case["share"].to_dict() == pytest.approx({6: 1 / 3, 7: 2 / 3})
    assert case["pos_from_end"].to_dict() == {6: 0, 7: 1}


def test_visitors_do_not_mix_and_case_ids_follow_visitor_then_time():
    ev = events([(2, 0, 5), (1, 0, 6), (2, MIN, 7), (1, MIN, 8), (1, 2 * MIN, 9)])
    c = build_candidates(ev)
    per_case = c.groupby("case_id").agg(v=("visitorid", "first"), y=("y", "first"), cats=("categoryid", list))
    assert per_case["v"].tolist() == [1, 1, 2]
    assert per_case["y"].tolist() == [8, 9, 7]
    assert per_case["cats"].tolist() == [[6], [6, 8], [5]]
    assert c["label"].tolist() == [0, 0, 0, 0]


# ------------------------------------------------------------------------------ rule, metrics


def test_rule_scores_count_first_then_recency():
    cands = pd.DataFrame(
        {
            "case_id": [0, 0, 0, 1, 1],
            "categoryid": [1, 2, 3, 1, 2],
            "cnt": [2, 2, 3, 1, 1],
            "pos_from_end": [4, 1, 9, 0, 1],
            "label": [0, 1, 0, 0, 1],
        }
    )
    s = rule_scores(cands)
    assert s[2] > s[1] > s[0]  # higher count wins even if older; same count -> more recent
    assert s[3] > s[4]
    m = ranking_metrics(cands, s)
    assert (m["top1"], m["top3"], m["n_covered"]) == (0.0, 1.0, 2)


def test_metrics_on_a_hand_made_example():
    # case 0: label ranked 1st; case 1: 2nd; case 2: 4th; case 3: not covered
    cands = pd.DataFrame(
        {
            "case_id": [0, 0, 1, 1, 2, 2, 2, 2, 3, 3],
            "categoryid": [1, 2, 1, 2, 1, 2, 3, 4, 1, 2],
            "pos_from_end": [0, 1, 0, 1, 0, 1, 2, 3, 0, 1],
            "label": [1, 0, 0, 1, 0, 0, 0, 1, 0, 0],
        }
    )
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.4, 0.3, 0.2, 0.1, 0.5, 0.5])
    m = ranking_metrics(cands, scores)
    assert (m["n_cases"], m["n_covered"]) == (4, 3)
    assert m["coverage"] == pytest.approx(0.75)
    assert m["top1"] == pytest.approx(1 / 3) and m["top3"] == pytest.approx(2 / 3)
    assert m["top1_all"] == pytest.approx(m["top1"] * m["coverage"]) == pytest.approx(0.25)
    assert m["top3_all"] == pytest.approx(0.5)
    # ties: lower pos_from_end first, then smaller categoryid
    tie = pd.DataFrame(
        {"case_id": [0, 0, 1, 1], "categoryid": [7, 3, 7, 3], "pos_from_end": [0, 1, 4, 4], "label": [1, 0, 0, 1]}
    )
    assert ranking_metrics(tie, np.zeros(4))["top1"] == 1.0


def test_drop_rare_labels_counts_cases_not_rows():
    # label 9: two cases with 3 candidate rows each (6 rows); label 8: three cases
    cands = pd.DataFrame(
        {
            "case_id": [0, 0, 0, 1, 1, 1, 2, 3, 4],
            "visitorid": [1, 1, 1, 1, 1, 1, 2, 2, 3],
            "categoryid": [1, 2, 3, 1, 2, 3, 1, 1, 1],
            "y": [9, 9, 9, 9, 9, 9, 8, 8, 8],
        }
    )
    kept, dropped = drop_rare_labels(cands, min_count=3)
    assert dropped == 2 and kept["case_id"].unique().tolist() == [2, 3, 4]
    kept, dropped = drop_rare_labels(cands, min_count=2)
    assert dropped == 0 and len(kept) == len(cands)


def test_split_by_visitor_is_disjoint_and_reports_unseen_labels():
    c = build_candidates(synthetic_events(200, seed=1))
    train, test, info = split_by_visitor(c, test_size=0.2, random_state=42)
    assert set(train["visitorid"]).isdisjoint(test["visitorid"])
    assert info["disjoint"] and info["visitor_overlap"] == 0
    assert info["n_train_cases"] == train["case_id"].nunique()
    assert info["n_test_cases"] == test["case_id"].nunique()
    assert info["n_train_cases"] + info["n_test_cases"] == c["case_id"].nunique()
    tcases = test.groupby("case_id")["y"].first()
    unseen = (~tcases.isin(set(train["y"]))).mean()
    assert info["test_label_unseen_share"] == pytest.approx(unseen)


# ------------------------------------------------------------------------------ Markov


def test_markov_model_probabilities_and_top():
    cases = pd.DataFrame({"prev_cat": [1, 1, 1, 1, 2], "y": [5, 5, 6, 7, 1]})
    mk = fit_markov(cases)
    p = mk.prob(np.array([1, 1, 1, 2, 9]), np.array([5, 6, 8, 1, 5]))
    np.testing.assert_allclose(p, [0.5, 0.25, 0.0, 1.0, 0.0])
    q, cat, prob = mk.top(np.array([1, 9, 2]), 2)
    assert q.tolist() == [0, 0, 2] and cat.tolist() == [5, 6, 1]  # tie 6/7 -> smaller id
    np.testing.assert_allclose(prob, [0.5, 0.25, 1.0])
    smooth = fit_markov(cases, alpha=1.0)  # 5 categories seen: 1, 2, 5, 6, 7
    np.testing.assert_allclose(smooth.prob(np.array([1, 9]), np.array([5, 5])), [3 / 9, 1 / 5])


def test_markov_extra_candidates_and_markov_prob():
    # transitions learned: 5 -> 8 (x2), 5 -> 6 (x1), 5 -> 7 (x1)
    mk = fit_markov(pd.DataFrame({"prev_cat": [5, 5, 5, 5], "y": [8, 8, 6, 7]}))
    ev = events([(1, 0, 6), (1, MIN, 5), (1, 2 * MIN, 7)])  # case 1: H = 6, 5 (last 5), y = 7
    c = build_candidates(ev, markov=mk, markov_top_n=2)
    case = case_rows(c, 1)
    assert case.index.tolist() == [5, 6, 8, 7]  # own candidates first, then extras best first
    assert case[MARKOV_FEATURE].to_dict() == pytest.approx({5: 0.0, 6: 0.25, 8: 0.5, 7: 0.25})
    extra = case.loc[[8, 7]]
    assert (extra["cnt"] == 0).all() and (extra["share"] == 0).all()
    assert (extra["is_last"] == 0).all() and (extra["tail_streak_if_last"] == 0).all()
    assert (extra["pos_from_end"] == 100).all() and (extra["last_gap_min"] == 1440.0).all()
    assert (extra["n_views"] == 2).all() and extra["label"].to_dict() == {8: 0, 7: 1}
    # case 0 (last category 6) has no learned transitions -> no extras
    assert case_rows(c, 0).index.tolist() == [6]
    m = ranking_metrics(c, c[MARKOV_FEATURE].to_numpy())
    assert (m["n_covered"], m["coverage"]) == (1, 0.5)


# ------------------------------------------------------------------------------ rank()


def test_rank_uses_the_training_features_for_the_equivalent_case():
    hist = [(0, 5), (3 * HOUR, 6), (3 * HOUR, 5), (5 * HOUR, 7), (25 * HOUR, 5), (26 * HOUR, 7)]
    # shuffled, but the two 3h views keep their relative (file) order
    shuffled = [hist[i] for i in (5, 1, 0, 4, 2, 3)]
    views = [{"timestamp": t, "categoryid": c, "itemid": 1} for t, c in shuffled]
    res = rank(views, model=None, top_k=None)
    # the equivalent training case: the same views then any next view at the last timestamp
    ev = events([(1, t, c) for t, c in hist] + [(1, 26 * HOUR, 99)])
    c = build_candidates(ev)
    want = case_rows(c, c["case_id"].max()).reset_index()
    got = res.ranking.sort_values("categoryid").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got[["categoryid", *CANDIDATE_FEATURES]], want[["categoryid", *CANDIDATE_FEATURES]], check_dtype=False
    )
    assert res.n_history_views == 5  # views at >= 26h - 24h: 3h, 3h, 5h, 25h, 26h
    assert res.ranking["rank"].tolist() == [1, 2, 3]
    # 7: cnt 2 at pos 0; 5: cnt 2 at pos 1; 6: cnt 1
    assert res.ranking["categoryid"].tolist() == [7, 5, 6]
    assert rank(views).ranking["categoryid"].tolist() == [7, 5, 6]  # top_k=3 default
    assert rank(views, top_k=1).ranking["categoryid"].tolist() == [7]


def test_rank_applies_the_lookback_of_the_model():
    views = [{"timestamp": i * MIN, "categoryid": c} for i, c in enumerate([5, 5, 5, 6, 7])]
    model = RankingModel("rule", None, ("cnt", "pos_from_end"), lookback=2)
    res = rank(views, model=model, top_k=None)
    assert res.n_history_views == 2 and res.ranking["categoryid"].tolist() == [7, 6]
    assert res.fallback_reason is None


def test_rank_fallback_and_model():
    views = pd.DataFrame({"timestamp": [0, MIN, 2 * MIN, 3 * MIN], "categoryid": [5, 5, 7, 7]})
    res = rank(views)
    assert res.ranker == "rule" and res.fallback_reason == "no model given"
    assert res.ranking["categoryid"].tolist() == [7, 5]  # same count, 7 more recent
    model = RankingModel(
        "markov",
        None,
        (MARKOV_FEATURE,),
        markov=fit_markov(pd.DataFrame({"prev_cat": [7], "y": [9]})),
        markov_top_n=1,
    )
    res = rank(views, model=model, top_k=1)
    assert res.ranker == "markov" and res.fallback_reason is None
    assert res.ranking["categoryid"].tolist() == [9] and res.n_history_views == 4
    with pytest.raises(DataError, match="top_k"):
        rank(views, top_k=0)
    broken = RankingModel("logreg", object(), ("no_such_feature",))
    res = rank(views, model=broken)
    assert res.ranker == "rule" and "no_such_feature" in res.fallback_reason


@pytest.mark.parametrize(
    "views, needle",
    [
        (
            [{"timestamp": 1, "categoryid": 2}, {"timestamp": "abc", "categoryid": 2}],
            "row 1: timestamp is not a number",
        ),
        ([{"timestamp": 1, "categoryid": 2}, {"timestamp": 2, "categoryid": None}], "row 1: categoryid is missing"),
        (
            [{"timestamp": 1, "categoryid": 2}, {"timestamp": 2, "categoryid": 3}, {"timestamp": -5, "categoryid": 3}],
            "row 2: timestamp is negative",
        ),
        ([{"timestamp": 1, "categoryid": -1}], "row 0: categoryid is -1 (unknown category)"),
        ([{"timestamp": 1.5, "categoryid": 2}], "row 0: timestamp is not an integer"),
        ([{"timestamp": 1, "categoryid": 2, "itemid": -3}], "row 0: itemid is negative"),
        ([{"categoryid": 2}], "missing column"),
        ([], "no rows"),
        ([{"timestamp": i, "categoryid": 1} for i in range(1001)], "at most 1000"),
        (pd.DataFrame({"timestamp": pd.to_datetime([0, 1]), "categoryid": [1, 2]}), "int milliseconds"),
    ],
)
def test_validate_views_errors_name_the_row(views, needle):
    with pytest.raises(DataError) as err:
        validate_views(views)
    assert needle in str(err.value)


def test_validate_views_accepts_numeric_input_and_optional_itemid():
    out = validate_views([{"timestamp": 2.0, "categoryid": "7"}, {"timestamp": 1, "categoryid": 8}])
    assert out.dtypes.tolist() == [np.int64, np.int64]
    assert out["categoryid"].tolist() == [7, 8]
    out = validate_views(
        [{"timestamp": 2, "categoryid": 7, "itemid": 5}, {"timestamp": 1, "categoryid": 8, "itemid": None}]
    )
    assert out["itemid"].isna().tolist() == [False, True]


def rank_via_build_candidates(views: list[dict], model, top_k):
    """rank() as it was computed before its numpy path: build_candidates on the equivalent
    training case (the views, then a next view at the last timestamp), score, order, frame."""
    ev = events([(1, v["timestamp"], v["categoryid"]) for v in views] + [(1, max(v["timestamp"] for v in views), 0)])
    lookback = model.lookback if model is not None else LOOKBACK
    window_ms = model.window_ms if model is not None else WINDOW_MS
    markov = model.markov if model is not None else None
    top_n = model.markov_top_n if model is not None else 0
    c = build_candidates(ev, lookback, window_ms, markov=markov, markov_top_n=top_n)
    case = c[c["case_id"] == c["case_id"].max()].reset_index(drop=True)
    scores = rule_scores(case) if model is None else model.score(case)
    order = order_within_cases(case, scores)
    feats = [f for f in (*CANDIDATE_FEATURES, MARKOV_FEATURE) if f in case.columns]
    want = case.iloc[order][["categoryid", *feats]].reset_index(drop=True)
    want.insert(1, "score", np.asarray(scores)[order])
    want.insert(2, "rank", np.arange(1, len(want) + 1))
    return (want if top_k is None else want.head(top_k)), int(case["n_views"].iloc[0])


def view_tables() -> dict[str, list[dict]]:
    """Fixed histories: a 100-view request, ties, a window cut, a lookback cut, one view."""
    rng = np.random.default_rng(11)
    t0 = 1_433_000_000_000
    out = {
        "100_views": [
            {"timestamp": t0 + i * MIN, "categoryid": int(c), "itemid": int(i)}
            for i, c in enumerate(rng.integers(100, 112, 100))
        ],
        "ties_shuffled": [
            {"timestamp": t0 + int(t) * 15 * MIN, "categoryid": int(c)}
            for t, c in zip(rng.integers(0, 8, 40), rng.integers(100, 106, 40))
        ],
        "window_cut": [
            {"timestamp": t0 + int(t), "categoryid": int(c)}
            for t, c in zip(np.sort(rng.integers(0, 2 * WINDOW_MS, 60)), rng.integers(100, 112, 60))
        ],
        "lookback_cut": [
            {"timestamp": t0 + i * 5 * MIN, "categoryid": int(c)} for i, c in enumerate(rng.integers(100, 112, 250))
        ],
        "one_view": [{"timestamp": t0, "categoryid": 104}],
        "unknown_categories": [
            {"timestamp": t0 + i * MIN, "categoryid": int(c)} for i, c in enumerate([7, 104, 900, 900, 104, 5])
        ],
    }
    return out


@pytest.fixture(scope="module")
def fitted_models(default_artifacts) -> dict[str, RankingModel | None]:
    """Every kind of ranker rank() can serve, fitted once on synthetic events (one thread)."""
    with threadpool_limits(1):
        ev = synthetic_events(300, seed=7)
        c = build_candidates(ev)
        mk = fit_markov(c)
        with_mk = build_candidates(ev, markov=mk, markov_top_n=5)
        feats = (*CANDIDATE_FEATURES, MARKOV_FEATURE)
        models = {
            "rule_none": None,
            "rule": RankingModel("rule", None, ("cnt", "pos_from_end"), lookback=20),
            "markov": RankingModel("markov", None, (MARKOV_FEATURE,), markov=mk, markov_top_n=3),
            "logreg": fit_ranker("logreg", c),
            "hgb": fit_ranker("hgb", c),
            "rf": fit_ranker("rf", c),
            "hgb_markov5": fit_ranker("hgb", with_mk, feats, markov=mk, markov_top_n=5),
        }
    served = default_artifacts.ranking_model  # the served model too, when it is built
    if served is not None:
        models["served"] = served
    return models


@pytest.mark.parametrize("table", sorted(view_tables()))
def test_rank_equals_the_build_candidates_computation(fitted_models, table):
    # rank() builds its single case with numpy (no DataFrame until the output) through the same
    # feature code as build_candidates: ranking, scores, features and dtypes must all be equal.
    views = view_tables()[table]
    for name, model in fitted_models.items():
        for top_k in (3, None):
            res = rank(views, model=model, top_k=top_k)
            want, n_views = rank_via_build_candidates(views, model, top_k)
            pd.testing.assert_frame_equal(res.ranking, want, check_exact=True, obj=name)
            assert res.n_history_views == n_views
            assert res.ranker == (model.name if model is not None else "rule")
    # DataFrame input goes the same way
    df = pd.DataFrame(views)
    again = rank(df, model=fitted_models["hgb_markov5"], top_k=None).ranking
    pd.testing.assert_frame_equal(again, rank(views, fitted_models["hgb_markov5"], None).ranking)


def test_rank_values_are_those_of_the_pre_numpy_implementation():
    # computed with the DataFrame implementation of rank() before its numpy path was added
    views = [
        {"timestamp": t, "categoryid": c}
        for t, c in [
            (26 * HOUR, 7),
            (3 * HOUR, 6),
            (0, 5),
            (25 * HOUR, 5),
            (3 * HOUR, 5),
            (5 * HOUR, 7),
            (25 * HOUR, 8),
            (26 * HOUR, 9),
        ]
    ]
    res = rank(views, top_k=None)
    assert res.n_history_views == 7
    assert res.ranking["categoryid"].tolist() == [7, 5, 9, 8, 6]
    assert res.ranking["score"].tolist() == [
        1.99009900990099,
        1.9702970297029703,
        1.0,
        0.9801980198019802,
        0.9405940594059405,
    ]
    assert res.ranking.dtypes.astype(str).tolist() == [
        "int64",
        "float64",
        "int64",
        "int32",
        "float64",
        "int8",
        "float64",
        "int32",
        "int32",
        "int32",
    ]
    mk = fit_markov(pd.DataFrame({"prev_cat": [9, 9, 9, 9, 7, 5], "y": [7, 4, 4, 3, 9, 9]}))
    model = RankingModel("markov", None, (MARKOV_FEATURE,), markov=mk, markov_top_n=2)
    res = rank(views, model=model, top_k=None)
    assert res.ranking["categoryid"].tolist() == [4, 7, 3, 9, 8, 5, 6]
    assert res.ranking["score"].tolist() == [0.5, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0]
    assert res.ranking["pos_from_end"].tolist() == [100, 1, 100, 0, 2, 3, 6]


def test_forest_predicts_sequentially_and_deterministically_for_small_inputs(fitted_models):
    model = fitted_models["rf"]
    assert model.estimator.n_jobs == 1  # stored sequential after the (parallel) fit
    views = view_tables()["100_views"]
    first = rank(views, model=model, top_k=None).ranking
    for _ in range(5):  # a thread-order sum would differ in the last bit now and then
        pd.testing.assert_frame_equal(rank(views, model=model, top_k=None).ranking, first, check_exact=True)
    # big batches use the threads, on a shallow copy: the shared model is never changed
    threaded = with_n_jobs(model.estimator, -1)
    assert threaded.n_jobs == -1 and model.estimator.n_jobs == 1
    assert threaded.estimators_ is model.estimator.estimators_
    big = pd.concat([first] * (PARALLEL_MIN_ROWS // len(first) + 1), ignore_index=True)
    big["case_id"] = 0
    np.testing.assert_allclose(model.score(big)[: len(first)], first["score"], rtol=1e-12)
    assert with_n_jobs(fitted_models["hgb"].estimator, 1) is fitted_models["hgb"].estimator


def test_validate_views_numpy_path_and_row_checks_agree():
    ints = [{"timestamp": 5, "categoryid": 7, "itemid": 1}, {"timestamp": 3, "categoryid": 8, "itemid": 2}]
    want = validate_views(ints)
    assert want.dtypes.astype(str).tolist() == ["int64", "int64", "Int64"]
    same = [
        [{"timestamp": 5.0, "categoryid": "7", "itemid": 1}, {"timestamp": 3, "categoryid": 8, "itemid": 2.0}],
        [
            {"timestamp": np.int32(5), "categoryid": np.int64(7), "itemid": np.uint8(1)},
            {"timestamp": 3, "categoryid": 8, "itemid": 2},
        ],
        pd.DataFrame(ints),
        pd.DataFrame(ints).astype(object),
        pd.DataFrame(ints, index=[10, 3]),
    ]
    for views in same:
        pd.testing.assert_frame_equal(validate_views(views), want)


@pytest.mark.parametrize(
    "items",
    [
        [5, None, 7],  # null
        [5, float("nan"), 7],  # NaN
        [5, "absent", 7],  # key not in the row
        [2**53 + 1, None, 7],  # exact beyond float precision
    ],
)
def test_validate_views_itemid_is_optional_per_row(items):
    views = [
        {"timestamp": i, "categoryid": 3} | ({} if it == "absent" else {"itemid": it}) for i, it in enumerate(items)
    ]
    out = validate_views(views)
    assert out["itemid"].isna().tolist() == [False, True, False]
    assert out["itemid"].iloc[0] == items[0] and out["itemid"].iloc[2] == 7
    assert rank(views).n_history_views == 3  # every view ranks, with or without itemid


@pytest.mark.parametrize(
    "item, needle",
    [
        (-3, "row 1: itemid is negative"),
        (1.5, "row 1: itemid is not an integer (value 1.5)"),
        ("x", "row 1: itemid is not a number (value x)"),
        (True, "row 1: itemid is not a number (value True)"),
        (2**63, "row 1: itemid is out of the int64 range"),
    ],
)
def test_validate_views_rejects_a_present_bad_itemid(item, needle):
    views = [{"timestamp": 1, "categoryid": 3}, {"timestamp": 2, "categoryid": 3, "itemid": item}]
    with pytest.raises(DataError) as err:
        validate_views(views)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "views, needle",
    [
        ([{"timestamp": True, "categoryid": 2}], "row 0: timestamp is not a number (value True)"),
        ([{"timestamp": 2**63, "categoryid": 2}], "row 0: timestamp is out of the int64 range"),
        (
            [{"timestamp": 1, "categoryid": 2}, {"timestamp": 2, "categoryid": -1}],
            "row 1: categoryid is -1 (unknown category); drop unknown-category views before ranking",
        ),
        ([{"timestamp": 1}, {"timestamp": 2, "categoryid": 4}], "row 0: categoryid is missing (value nan)"),
        (pd.DataFrame({"timestamp": [1, -2], "categoryid": [3, 3]}), "row 1: timestamp is negative (value -2)"),
        (
            pd.DataFrame({"timestamp": np.array([1, 2**63], dtype=np.uint64), "categoryid": [3, 3]}),
            "row 1: timestamp is out of the int64 range",
        ),
        (
            [{"timestamp": -1, "categoryid": -1}] * 7,
            "row 0: timestamp is negative (value -1); categoryid is -1 (unknown category)",
        ),
    ],
)
def test_validate_views_failing_columns_still_name_the_row(views, needle):
    with pytest.raises(DataError) as err:
        validate_views(views)
    assert needle in str(err.value)


# ------------------------------------------------------------------------------ pipeline


@pytest.fixture
def one_thread():
    """Tiny fits are slower with OpenMP threads on a busy shared machine; results are the same."""
    with threadpool_limits(1):
        yield


def test_train_and_evaluate_is_deterministic_and_reports_every_ranker(one_thread):
    ev = synthetic_events(300, seed=7)
    a = train_and_evaluate(ev, seed=42)
    b = train_and_evaluate(ev, seed=42)
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    assert a.chosen_ranker == b.chosen_ranker
    assert set(a.metrics["ranker"]) == set(RANKERS)
    assert set(a.metrics["split"]) == {"validation", "test"}
    test = a.metrics[a.metrics["split"] == "test"]
    assert (test["n_cases"] == a.leakage["n_test_cases"]).all()
    np.testing.assert_allclose(test["top1_all"], test["top1"] * test["coverage"])
    chosen = a.metrics[a.metrics["split"] == "validation"].set_index("ranker")["top1_all"]
    serving = a.serving  # the serving rule: the best baseline unless a learned ranker earns it
    assert serving["served"] == a.chosen_ranker
    assert chosen[serving["best_baseline"]] == chosen[list(BASELINES)].max()
    assert chosen[serving["best_learned"]] == chosen[list(LEARNED_RANKERS)].max()
    assert serving["learned_served"] == (serving["difference"]["ci_low"] > 0)
    fit_on = test.set_index("ranker")["fit_on"]
    assert (fit_on[list(BASELINES)] == "no fitting").all()
    if serving["learned_served"]:
        assert fit_on[a.chosen_ranker] == "train" and (fit_on.drop(a.chosen_ranker) != "train").all()
    assert a.metrics[["ranker", "split"]].values.tolist()[:2] == [["rule", "validation"], ["rule", "test"]]
    assert a.leakage["disjoint"] and a.leakage["validation_disjoint_from_test"]
    assert a.best_model.name == a.chosen_ranker and "train cases" in a.best_model.trained_on
    assert a.dataset_sample["case_id"].nunique() > 0 and not a.dataset_is_sample
    json.dumps(a.info)  # JSON-safe for the pipeline's metrics file
    # the chosen model ranks a single history through the same code path
    res = rank([{"timestamp": 0, "categoryid": 101}, {"timestamp": MIN, "categoryid": 103}], model=a.best_model)
    assert res.ranker == a.chosen_ranker and len(res.ranking) == 2


def test_train_and_evaluate_with_markov_candidates(one_thread):
    ev = synthetic_events(300, seed=8)
    r = train_and_evaluate(ev, seed=1, markov_top_n=2, rankers=("rule", "markov", "hgb"))
    test = r.metrics[r.metrics["split"] == "test"].set_index("ranker")
    base = train_and_evaluate(ev, seed=1, rankers=("rule",))
    base_cov = base.metrics.query("split == 'test'")["coverage"].iloc[0]
    assert (test["coverage"] >= base_cov).all()  # extras can only add covered cases
    assert MARKOV_FEATURE in r.config["features"] and r.best_model.markov is not None


# --------------------------------------------------------------------------- demo visitors and histories


def _sampler_events():
    return pd.DataFrame(
        {
            "timestamp": [0, 1000, 2000, 10**9, 5, 6],
            "visitorid": [1, 1, 1, 1, 2, 3],
            "event": ["view", "view", "addtocart", "view", "view", "view"],
            "itemid": [1, 2, 3, 4, 5, 6],
            "categoryid": [10, 11, 11, 12, 10, -1],
        }
    )


def test_view_sequences_mark_ranking_cases():
    seqs = view_sequences(_sampler_events())
    assert seqs["visitorid"].tolist() == [1, 1, 1, 2]  # addtocart and unknown categories dropped
    assert seqs["has_history"].tolist() == [False, True, False, False]  # 10**9 ms is > 24 h later


def test_sample_visitor_is_deterministic_and_eligible():
    seqs = view_sequences(_sampler_events())
    assert pick_visitor(seqs, seed=1) == pick_visitor(seqs, seed=1) == 1
    assert pick_visitor(seqs.iloc[3:], seed=1) is None


def test_history_before_applies_window_and_lookback():
    views = pd.DataFrame({"timestamp": [0, 10, 20, 30], "categoryid": [1, 2, 3, 4]})
    assert history_before(views, 3, window_ms=20, lookback=100)["categoryid"].tolist() == [2, 3]
    assert history_before(views, 3, window_ms=100, lookback=1)["categoryid"].tolist() == [3]


def test_pick_visitor_by_final_history_and_by_categories():
    events = pd.DataFrame(
        {
            "timestamp": [0, 10, 20, 30, 0, 10, 20, 0, 5],
            "visitorid": [1, 1, 1, 1, 2, 2, 2, 3, 3],
            "event": ["view"] * 9,
            "itemid": range(9),
            "categoryid": [5, 5, 5, 6, 7, 8, 9, 7, 7],
        }
    )
    seqs = view_sequences(events)
    per = final_histories(seqs)
    assert per["history"].tolist() == [3, 2, 1] and per["history_categories"].tolist() == [1, 2, 1]
    assert pick_visitor(seqs) == 1  # the longest final history
    assert pick_visitor(seqs, max_history=2, min_history_categories=2) == 2
    assert pick_visitor(seqs, by=("categories", "views")) == 2
    assert pick_visitor(seqs, min_history_categories=3) is None


def test_seeded_draw_prefers_visitors_with_several_categories():
    events = pd.DataFrame(
        {
            "timestamp": [0, 10, 20, 0, 10, 20],
            "visitorid": [1, 1, 1, 2, 2, 2],
            "event": ["view"] * 6,
            "itemid": range(6),
            "categoryid": [5, 5, 5, 7, 8, 9],
        }
    )
    seqs = view_sequences(events)
    assert {pick_visitor(seqs, seed=s, prefer_categories=3) for s in range(10)} == {2}
    assert pick_visitor(seqs, seed=1, prefer_categories=9) in (1, 2)  # nobody that varied: anyone


@pytest.mark.parametrize("name", ["hgb", "rf"])
def test_tree_rankers_score_each_split_pattern_once_bit_for_bit(name, one_thread, monkeypatch):
    from core.ranking import models

    cands = build_candidates(synthetic_events(500, seed=4))  # just over PARALLEL_MIN_ROWS candidates
    model = fit_ranker(name, cands, seed=1)
    splits = models.tree_splits(model.estimator)
    assert splits is not None and len(splits) == len(CANDIDATE_FEATURES)
    sides = models.split_sides([cands[f].to_numpy() for f in CANDIDATE_FEATURES], splits)
    first, _ = models.distinct_rows(sides)
    assert len(cands) >= models.PARALLEL_MIN_ROWS and len(first) < len(cands)  # the fast path runs
    monkeypatch.setattr(models, "FOREST_JOBS", 1)  # sequential sums: comparable to the last bit
    fast = model.score(cands)
    monkeypatch.setattr(models, "tree_splits", lambda estimator: None)
    assert np.array_equal(fast, model.score(cands))


def test_linear_ranker_has_no_split_points(one_thread):
    from core.ranking import models

    model = fit_ranker("logreg", build_candidates(synthetic_events(200, seed=4)), seed=1)
    assert models.tree_splits(model.estimator) is None


def test_markov_run_cuts_fit_rows_to_the_cap_and_keeps_its_fit(one_thread, monkeypatch):
    from core.ranking import models

    ev = synthetic_events(600, seed=9)
    full = train_and_evaluate(ev, seed=1, markov_top_n=2, rankers=("hgb",))
    assert full.metrics.query("split == 'test'")["fit_on"].tolist() == ["train"]  # small: refitted
    monkeypatch.setitem(models.TRAIN_ROW_CAPS, "hgb", 3000)
    capped = train_and_evaluate(ev, seed=1, markov_top_n=2, rankers=("hgb",))
    test = capped.metrics.query("split == 'test'")
    assert test["fit_on"].tolist() == ["train minus validation visitors"]  # kept, not refitted
    rows = int(capped.best_model.trained_on.split("(")[1].split(" ")[0])
    assert 0 < rows <= 3000
    assert test["n_cases"].iloc[0] == full.metrics.query("split == 'test'")["n_cases"].iloc[0]  # same test cases


def test_history_window_is_the_history_rule_of_every_view():
    """history_window (shared by view_usage and the realism report) gives the same history
    lengths as history_lengths, on random visitors."""
    from core.ranking.cases import history_lengths, history_window

    rng = np.random.default_rng(0)
    vis = np.sort(rng.integers(0, 30, 2000))
    ts = np.concatenate([np.sort(rng.integers(0, 5 * WINDOW_MS, (vis == v).sum())) for v in np.unique(vis)])
    window_start, lookback_start = history_window(vis, ts, lookback=7, window_ms=WINDOW_MS)
    lengths = np.arange(len(vis)) - np.maximum(window_start, lookback_start)
    assert np.array_equal(lengths, history_lengths(vis, ts, lookback=7, window_ms=WINDOW_MS))


def test_view_usage_says_which_views_the_next_ranking_uses_and_why():
    from core.ranking.cases import view_usage

    hour = 3_600_000
    views = pd.DataFrame({"timestamp": [30 * hour, 0, 29 * hour, 31 * hour, 32 * hour], "categoryid": [1, 2, 3, 4, 5]})
    usage = view_usage(views, window_ms=24 * hour, lookback=3)
    assert usage["timestamp"].tolist() == sorted(views["timestamp"])  # oldest first
    assert usage["used"].tolist() == [
        "not used: over 24 hours before the last view",
        "not used: beyond the 3 most recent views",
        "used",
        "used",
        "used",
    ]


def test_complete_rows_drops_blank_rows_and_names_half_entered_ones():
    from core.userfiles.export import complete_rows

    views = pd.DataFrame({"timestamp": [1.0, None, None, 4.0], "categoryid": [7.0, None, 3.0, None]})
    kept, notes, rows = complete_rows(views)
    assert kept["timestamp"].tolist() == [1.0] and rows == [0]
    assert notes == ["row 2 (no timestamp)", "row 3 (no categoryid)"]


def test_rank_of_each_visitor_equals_the_batch_rank_latest(fitted_models):
    # The API's per-request path (rank, numpy columns, no DataFrame) and the batch path
    # (rank_latest over every visitor) give the same ranking, scores and history sizes,
    # repeated events and same-timestamp views included.
    ev = synthetic_events(30, seed=11)
    ev = pd.concat([ev, ev.iloc[:40]], ignore_index=True)
    views = ev[(ev["event"] == "view") & (ev["categoryid"] != -1)]
    for name, model in fitted_models.items():
        batch = rank_latest(ev, model, top_k=3)
        for vid, rows in views.groupby("visitorid", sort=True):
            res = rank(rows[["timestamp", "categoryid", "itemid"]].to_dict("records"), model=model, top_k=3)
            want = batch[batch["visitorid"] == vid]
            assert res.columns["categoryid"].tolist() == want["categoryid"].tolist(), (name, vid)
            # logreg's scores of one case and of all cases at once differ in the 8th digit (this
            # differs outside the serving path); every other ranker's are equal bit for bit.
            rtol = 1e-6 if name == "logreg" else 0.0
            np.testing.assert_allclose(res.columns["score"], want["score"].to_numpy(), rtol=rtol, atol=0, err_msg=name)
            assert res.columns["rank"].tolist() == want["rank"].tolist()
            assert [res.n_history_views] * len(want) == want["n_history_views"].tolist()
            pd.testing.assert_frame_equal(res.ranking, pd.DataFrame(res.columns))  # the table is the columns
