"""Bot detectors: interface, row independence, one-sidedness, cleaning cost and policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.anomaly.behaviour import BEHAVIOUR_COLUMNS
from core.anomaly.detector import DETECTORS, make_detector, why
from core.anomaly.policy import apply_policy, cleaning_cost
from core.anomaly.quality import detector_report
from core.base.schema import USER_FEATURES


def _features(n: int, seed: int = 0) -> pd.DataFrame:
    """A consistent random feature table: mostly short visits, some buyers, a few fast bots."""
    rng = np.random.default_rng(seed)
    view = 1 + rng.geometric(0.5, n) - 1
    addtocart = np.where(rng.random(n) < 0.1, rng.integers(1, 4, n), 0)
    transaction = np.where((addtocart > 0) & (rng.random(n) < 0.5), 1, 0)
    bot = rng.random(n) < 0.03
    view = np.where(bot, rng.integers(100, 500, n), view)
    events = view + addtocart + transaction
    uniq_items = np.maximum(1, (events * rng.uniform(0.3, 1.0, n)).astype(np.int64))
    uniq_cats = np.minimum(uniq_items, rng.integers(1, 6, n))
    days = np.minimum(events, rng.integers(1, 4, n))
    n_sessions = np.minimum(events, days + rng.integers(0, 2, n))
    gaps = np.maximum(events - 1, 0)
    short = np.where(bot, gaps, (gaps * rng.uniform(0, 0.2, n)).astype(np.int64))
    return pd.DataFrame(
        {
            "visitorid": np.arange(n, dtype=np.int64),
            "events": events,
            "view": view,
            "addtocart": addtocart,
            "transaction": transaction,
            "uniq_items": uniq_items,
            "uniq_cats": uniq_cats,
            "cat_entropy": np.log2(np.maximum(uniq_cats, 1)) * rng.uniform(0, 1, n),
            "events_per_active_day": events / days,
            "add_to_view_rate": addtocart / np.maximum(view, 1),
            "txn_to_cart_rate": transaction / np.maximum(addtocart, 1),
            "night_share": rng.uniform(0, 1, n) * (rng.random(n) < 0.3),
            "p95_gap_s": np.where(events < 2, 0.0, np.where(bot, 2.0, rng.lognormal(6, 2, n))),
            "short_gap_share": short / np.maximum(gaps, 1),
            "n_sessions": n_sessions,
            "sessions_per_day": n_sessions / days,
            "uniq_item_ratio": uniq_items / events,
        }
    )


@pytest.fixture(scope="module")
def feats() -> pd.DataFrame:
    """2,000 users, shared by the tests."""
    return _features(2000)


@pytest.fixture(scope="module")
def fitted(feats: pd.DataFrame) -> dict:
    """One fitted detector of every kind (small forest for speed)."""
    params = {"isolation_forest": {"n_estimators": 50}}
    return {n: make_detector(n, **params.get(n, {})).fit(feats) for n in DETECTORS}


def test_registry_and_unfitted_params() -> None:
    """make_detector builds every registered detector; __init__ stores parameters only."""
    for name in DETECTORS:
        det = make_detector(name, share=0.1)
        assert det.name == name and det.get_params()["share"] == 0.1
        assert not [a for a in vars(det) if a.endswith("_")]
    with pytest.raises(ValueError):
        make_detector("nope")


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_fit_sets_threshold_at_training_quantile(name: str, feats: pd.DataFrame, fitted: dict) -> None:
    """threshold_ is the (1 - share) quantile of training scores; predict = score >= threshold."""
    det = fitted[name]
    s = det.score_samples(feats)
    assert s.shape == (len(feats),) and np.isfinite(s).all()
    assert det.threshold_ == pytest.approx(np.quantile(s, 1 - det.share))
    np.testing.assert_array_equal(det.predict(feats), s >= det.threshold_)
    assert 0.03 <= det.predict(feats).mean() <= 0.2


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_row_independence(name: str, feats: pd.DataFrame, fitted: dict) -> None:
    """A row scores the same alone, in a batch and in another batch order."""
    det = fitted[name]
    batch = det.score_samples(feats.iloc[:300])
    alone = np.array([det.score_samples(feats.iloc[[i]])[0] for i in (0, 17, 123, 299)])
    np.testing.assert_array_equal(alone, batch[[0, 17, 123, 299]])
    rev = det.score_samples(feats.iloc[:300].iloc[::-1])[::-1]
    np.testing.assert_array_equal(rev, batch)


def test_determinism_with_a_seed(feats: pd.DataFrame) -> None:
    """The same seed gives identical scores; the score does not depend on extra columns."""
    a = make_detector("isolation_forest", n_estimators=30, random_state=3).fit(feats)
    b = make_detector("isolation_forest", n_estimators=30, random_state=3).fit(feats)
    np.testing.assert_array_equal(a.score_samples(feats), b.score_samples(feats))
    assert a.threshold_ == b.threshold_
    extra = feats.assign(other=1.0)[["other", *feats.columns]]
    np.testing.assert_array_equal(a.score_samples(extra), a.score_samples(feats))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_more_transactions_never_score_higher(name: str, feats: pd.DataFrame, fitted: dict) -> None:
    """All else equal, raising transaction never raises a score (every user, 0..3 purchases)."""
    det = fitted[name]
    base = feats.iloc[:400]
    prev = None
    for k in range(4):
        s = det.score_samples(base.assign(transaction=k))
        if prev is not None:
            assert (s <= prev + 1e-12).all()
        prev = s


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_low_tail_is_never_evidence(name: str, feats: pd.DataFrame, fitted: dict) -> None:
    """A quieter, slower user than the median never scores above the median-like user."""
    det = fitted[name]
    quiet = feats.iloc[[0]].copy()
    quiet.loc[:, list(USER_FEATURES)] = 0.0
    quiet = quiet.assign(
        events=1,
        view=1,
        uniq_items=1,
        uniq_cats=1,
        n_sessions=1,
        events_per_active_day=1.0,
        sessions_per_day=1.0,
        uniq_item_ratio=1.0,
    )
    z = det.one_sided_z(quiet)
    assert (z == 0).all()
    assert det.score_samples(quiet)[0] <= np.median(det.score_samples(feats)) + 1e-12


def test_bots_rank_above_buyers(feats: pd.DataFrame, fitted: dict) -> None:
    """The fast high-volume rows outrank the buyers for every detector."""
    bot = (feats["short_gap_share"] > 0.9) & (feats["events"] >= 100)
    buyer = feats["transaction"] > 0
    for det in fitted.values():
        s = det.score_samples(feats)
        assert np.median(s[bot]) > np.quantile(s[buyer], 0.9)


def test_why_names_bot_ward_columns(feats: pd.DataFrame, fitted: dict) -> None:
    """why() names behaviour columns of the fast bots and nothing for a one-view visitor."""
    det = fitted["robust_z"]
    bot = feats[(feats["short_gap_share"] > 0.9) & (feats["events"] >= 100)].head(3)
    texts = why(det, bot)
    assert all(t.split(" ")[0] in BEHAVIOUR_COLUMNS for t in texts)
    one = feats[(feats["events"] == 1) & (feats["night_share"] == 0)].head(1)
    assert why(det, one).iloc[0] == ""


def _cost_example() -> tuple[pd.DataFrame, np.ndarray]:
    """Ten users with known counts and distinct scores 0..9."""
    f = pd.DataFrame(
        {
            "events": [1, 2, 3, 4, 5, 6, 7, 8, 9, 100],
            "view": [1, 2, 3, 2, 5, 6, 7, 8, 9, 100],
            "addtocart": [0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            "transaction": [0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        }
    )
    f.loc[8, ["view", "addtocart", "transaction"]] = [5, 2, 2]
    return f, np.arange(10, dtype=np.float64)


def test_cleaning_cost_known_answers() -> None:
    """Shares 10% / 20% and a frozen point: counts and shares computed by hand."""
    f, s = _cost_example()
    cost = cleaning_cost(f, s, shares=np.array([0.1, 0.2]), frozen_threshold=7.5)
    # 10%: quantile 0.9 of 0..9 = 8.1 -> user 9 only; 20%: 7.2 -> users 8, 9; frozen 7.5 -> 8, 9.
    assert list(cost["point"]) == ["10%", "20%", "frozen"]
    assert list(cost["users_removed"]) == [1, 2, 2]
    assert list(cost["events_removed"]) == [100, 109, 109]
    assert cost["events_removed_share"].iloc[0] == pytest.approx(100 / 145)
    assert list(cost["view_removed"]) == [100, 105, 105]
    assert list(cost["transaction_removed"]) == [0, 2, 2]
    assert cost["transaction_removed_share"].iloc[1] == pytest.approx(2 / 3)
    assert list(cost["buyers_removed"]) == [0, 1, 1]
    assert cost["buyers_removed_share"].iloc[1] == pytest.approx(0.5)
    assert list(cost["txn_warning"]) == [False, True, True]
    assert np.isnan(cost["share"].iloc[2]) and cost["threshold"].iloc[2] == 7.5


def test_cleaning_cost_with_policy_spares_buyers() -> None:
    """With the buyer policy on, no transaction or buyer is ever removed."""
    f, s = _cost_example()
    cost = cleaning_cost(f, s, shares=np.array([0.2, 0.5]), protect_buyers=True)
    assert list(cost["transaction_removed"]) == [0, 0]
    assert list(cost["buyers_removed"]) == [0, 0]
    # 50%: quantile 0.5 = 4.5 -> users 5..9, minus buyer 8 = 4 users.
    assert list(cost["users_removed"]) == [1, 4]
    assert not cost["txn_warning"].any()


def test_default_shares_grid() -> None:
    """The default grid is 1%..20% in 1% steps."""
    f, s = _cost_example()
    cost = cleaning_cost(f, s)
    assert len(cost) == 20 and cost["share"].iloc[0] == 0.01 and cost["share"].iloc[-1] == 0.2
    assert (np.diff(cost["users_removed"]) >= 0).all()


@pytest.mark.parametrize("protect_buyers", [False, True])
def test_cleaning_cost_equals_flagging_every_user_at_every_threshold(protect_buyers: bool) -> None:
    """The sorted cumulative sums give the counts of flagging each user against each threshold,
    with tied scores, NaN scores (never flagged, still in the totals) and the frozen point."""
    rng = np.random.default_rng(7)
    n = 5_000
    events = rng.integers(1, 50, n)
    f = pd.DataFrame(
        {"events": events, "view": events - 1, "addtocart": np.ones(n, int), "transaction": rng.integers(0, 2, n)}
    )
    s = np.round(rng.normal(size=n), 1)  # about 60 distinct values: many ties
    s[rng.choice(n, 200, replace=False)] = np.nan
    cost = cleaning_cost(f, s, frozen_threshold=0.3, protect_buyers=protect_buyers)
    finite = s[np.isfinite(s)]
    for _, row in cost.iterrows():
        thr = 0.3 if row["point"] == "frozen" else np.quantile(finite, 1 - row["share"])
        assert row["threshold"] == thr
        flags = np.nan_to_num(s, nan=-np.inf) >= thr
        if protect_buyers:
            flags &= f["transaction"].to_numpy() == 0
        assert row["users_removed"] == flags.sum()
        for col in ("events", "view", "addtocart", "transaction"):
            assert row[f"{col}_removed"] == f.loc[flags, col].sum()
            assert row[f"{col}_removed_share"] == f.loc[flags, col].sum() / f[col].sum()
        assert row["buyers_removed"] == (flags & (f["transaction"].to_numpy() > 0)).sum()


def test_apply_policy() -> None:
    """The policy unflags buyers only when on, and never flags anyone new."""
    f, _ = _cost_example()
    flags = np.array([True, False] * 5)
    np.testing.assert_array_equal(apply_policy(flags, f, False), flags)
    kept = apply_policy(flags, f, True)
    assert not kept[[3, 8]].any() and (kept <= flags).all()
    assert kept.sum() == flags.sum() - int(flags[[3, 8]].sum())


def test_detector_report_columns(feats: pd.DataFrame) -> None:
    """The report has the judging columns, per-kind recall and look-alike shares."""
    bots = feats.loc[feats["events"] >= 100, "visitorid"]
    labels = pd.DataFrame({"visitorid": bots, "kind": "crawler"})
    la = feats[feats["transaction"] > 0].head(20).assign(kind="heavy_buyer")
    rep = detector_report(feats, labels, la, {"rz": make_detector("robust_z"), "volume": "events"}, (0.05,))
    for col in (
        "pr_auc",
        "precision",
        "recall",
        "normal_buyers_flagged",
        "txn_held_by_flagged",
        "recall_crawler",
        "lookalike_heavy_buyer_flagged",
    ):
        assert col in rep.columns
    assert set(rep["detector"]) == {"rz", "volume"}
    assert rep["recall_crawler"].between(0, 1).all()
