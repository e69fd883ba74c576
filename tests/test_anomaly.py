"""Task 2: user features (docs/DATA_CONTRACT.md) by hand, detector, scoring, validation, audits."""

from __future__ import annotations

import json
import math
import types

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import skip_or_fail
from sklearn.exceptions import NotFittedError

from core.anomaly import scoring
from core.anomaly.audit import audit_table, clean_events, cleaning_report, proxy_labels
from core.anomaly.behaviour import BEHAVIOUR_COLUMNS, TRANSACTION, without_purchases
from core.anomaly.detector import DETECTORS, Detector, fit_detector, fit_sample
from core.anomaly.detector import why as detector_why
from core.anomaly.features import user_features
from core.anomaly.policy import apply_policy
from core.anomaly.scoring import explain, flag_scores, score, score_rows, score_table, threshold_for
from core.anomaly.validation import FeatureValidation, validate_features
from core.base.distinct import distinct_rows
from core.base.errors import ArtifactError, DataError
from core.base.schema import COUNT_FEATURES, DEFAULT_DETECTOR, USER_FEATURES

D0 = 1_431_216_000_000  # 2015-05-10 00:00:00 UTC, a midnight
S = 1000  # ms per second


def ev(t_s: float, vis: int, event: str, item: int, cat: int) -> dict:
    """One prepared event, t_s seconds after D0."""
    return {
        "timestamp": D0 + int(round(t_s * S)),
        "visitorid": vis,
        "event": event,
        "itemid": item,
        "transactionid": 1.0 if event == "transaction" else np.nan,
        "categoryid": cat,
    }


def hand_events() -> pd.DataFrame:
    """Three visitors whose 16 features are worked out by hand below, rows shuffled."""
    rows = [
        # visitor 10: midnight crossing, same timestamps, gaps of exactly 5 s and 1800 s,
        # an unknown category, and the 05:59:59 / 06:00:00 night boundary.
        ev(23 * 3600 + 59 * 60, 10, "view", 1, 5),  # 23:59:00 day 0
        ev(23 * 3600 + 59 * 60, 10, "view", 2, 5),  # same timestamp -> gap 0
        ev(23 * 3600 + 59 * 60 + 5, 10, "addtocart", 2, 5),  # gap exactly 5 s: not short
        ev(23 * 3600 + 59 * 60 + 5 + 1800, 10, "view", 3, 7),  # gap exactly 1800: same session; 00:29 day 1
        ev(23 * 3600 + 59 * 60 + 5 + 1800 + 1801, 10, "transaction", 2, 5),  # 1801: new session; 00:59
        ev(86400 + 5 * 3600 + 59 * 60 + 59, 10, "view", 4, -1),  # 05:59:59 night, unknown category
        ev(86400 + 6 * 3600, 10, "view", 1, 5),  # 06:00:00 is not night; gap 1 s
        # visitor 3: a single event
        ev(12 * 3600, 3, "view", 9, -1),
        # visitor 7: 6 events at 02:00 + [0, 10, 10, 40, 100, 1000] s -> gaps 10, 0, 30, 60, 900
        ev(2 * 3600 + 0, 7, "view", 1, 5),
        ev(2 * 3600 + 10, 7, "view", 1, 6),
        ev(2 * 3600 + 10, 7, "addtocart", 2, 6),
        ev(2 * 3600 + 40, 7, "addtocart", 2, 7),
        ev(2 * 3600 + 100, 7, "addtocart", 3, 7),
        ev(2 * 3600 + 1000, 7, "view", 3, 7),
    ]
    df = pd.DataFrame(rows)
    # Rows come unsorted, as in the real file.
    return df.iloc[[5, 12, 0, 7, 9, 3, 13, 1, 10, 6, 2, 11, 4, 8]].reset_index(drop=True)


def entropy_bits(*counts: int) -> float:
    p = np.array(counts, float) / sum(counts)
    return float(-(p * np.log2(p)).sum())


EXPECTED = {
    3: dict(
        events=1,
        view=1,
        addtocart=0,
        transaction=0,
        uniq_items=1,
        uniq_cats=0,
        cat_entropy=0.0,
        events_per_active_day=1.0,
        add_to_view_rate=0.0,
        txn_to_cart_rate=0.0,
        night_share=0.0,
        p95_gap_s=0.0,
        short_gap_share=0.0,
        n_sessions=1,
        sessions_per_day=1.0,
        uniq_item_ratio=1.0,
    ),
    7: dict(
        events=6,
        view=3,
        addtocart=3,
        transaction=0,
        uniq_items=3,
        uniq_cats=3,
        cat_entropy=entropy_bits(1, 2, 3),
        events_per_active_day=6.0,
        add_to_view_rate=1.0,
        txn_to_cart_rate=0.0,
        night_share=1.0,
        p95_gap_s=60 + 0.8 * (900 - 60),  # sorted gaps 0,10,30,60,900; index 4*0.95 = 3.8
        short_gap_share=1 / 5,
        n_sessions=1,
        sessions_per_day=1.0,
        uniq_item_ratio=0.5,
    ),
    10: dict(
        events=7,
        view=5,
        addtocart=1,
        transaction=1,
        uniq_items=4,
        uniq_cats=2,
        cat_entropy=entropy_bits(5, 1),  # 6 known-category events: cat 5 x5, cat 7 x1
        events_per_active_day=3.5,
        add_to_view_rate=0.2,
        txn_to_cart_rate=1.0,
        night_share=3 / 7,  # 00:29, 00:59, 05:59:59 (not 23:59 nor 06:00)
        p95_gap_s=1801 + 0.75 * (18053 - 1801),  # sorted gaps 0,1,5,1800,1801,18053; 5*0.95=4.75
        short_gap_share=2 / 6,  # gaps 0 and 1 (5 is not short)
        n_sessions=3,  # gaps 1801 and 18053 (1800 is not a new session)
        sessions_per_day=1.5,
        uniq_item_ratio=4 / 7,
    ),
}


# --------------------------------------------------------------------------- features


def test_every_feature_by_hand():
    f = user_features(hand_events())
    assert list(f.columns) == ["visitorid", *USER_FEATURES]
    assert f["visitorid"].tolist() == [3, 7, 10]
    for vid, expected in EXPECTED.items():
        row = f.loc[f["visitorid"] == vid].iloc[0]
        for name in USER_FEATURES:
            assert row[name] == pytest.approx(expected[name], rel=1e-12, abs=1e-12), (vid, name)


def test_p95_matches_numpy_percentile():
    f = user_features(hand_events()).set_index("visitorid")
    assert f.loc[7, "p95_gap_s"] == np.percentile([10, 0, 30, 60, 900], 95)
    assert f.loc[10, "p95_gap_s"] == np.percentile([0, 5, 1800, 1801, 18053, 1], 95)


def test_feature_dtypes_and_row_order_independence():
    events = hand_events()
    f1 = user_features(events)
    f2 = user_features(events.iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(f1, f2)
    for name in USER_FEATURES:
        want = np.int64 if name in COUNT_FEATURES else np.float64
        assert f1[name].dtype == want, name


def test_event_column_may_be_categorical():
    events = hand_events()
    events["event"] = pd.Categorical(events["event"], categories=["view", "addtocart", "transaction"])
    pd.testing.assert_frame_equal(user_features(events), user_features(hand_events()))


def random_events(n: int, n_vis: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = D0 + rng.integers(0, 3 * 86400, n) * S
    ts[::5] = ts[0]  # many exact timestamp ties
    return pd.DataFrame(
        {
            "timestamp": ts,
            "visitorid": rng.integers(0, n_vis, n) * 1000 + 7,
            "event": rng.choice(["view", "addtocart", "transaction"], n, p=[0.8, 0.15, 0.05]),
            "itemid": rng.integers(0, 40, n),
            "transactionid": np.nan,
            "categoryid": rng.integers(-1, 6, n),
        }
    )


def loop_reference(events: pd.DataFrame) -> pd.DataFrame:
    """The spec read literally, one visitor at a time (slow; for checking only)."""
    rows = []
    for vid, g in events.groupby("visitorid", sort=True):
        g = g.sort_values("timestamp", kind="stable")
        t = g["timestamp"].to_numpy()
        gaps = np.diff(t) / 1000.0
        n = len(g)
        days = len(np.unique(t // 86_400_000))
        cats = g["categoryid"][g["categoryid"] != -1]
        p = cats.value_counts(normalize=True).to_numpy()
        view = int((g["event"] == "view").sum())
        atc = int((g["event"] == "addtocart").sum())
        txn = int((g["event"] == "transaction").sum())
        sessions = 1 + int((gaps > 1800).sum())
        rows.append(
            {
                "visitorid": vid,
                "events": n,
                "view": view,
                "addtocart": atc,
                "transaction": txn,
                "uniq_items": g["itemid"].nunique(),
                "uniq_cats": cats.nunique(),
                "cat_entropy": float(-(p * np.log2(p)).sum()) if len(p) else 0.0,
                "events_per_active_day": n / days,
                "add_to_view_rate": atc / max(view, 1),
                "txn_to_cart_rate": txn / max(atc, 1),
                "night_share": float((((t // 3_600_000) % 24) < 6).mean()),
                "p95_gap_s": float(np.percentile(gaps, 95)) if n > 1 else 0.0,
                "short_gap_share": float((gaps < 5).mean()) if n > 1 else 0.0,
                "n_sessions": sessions,
                "sessions_per_day": sessions / days,
                "uniq_item_ratio": g["itemid"].nunique() / n,
            }
        )
    return pd.DataFrame(rows)


def test_features_match_loop_reference_on_random_events():
    events = random_events(3000, 200, seed=3)  # the reference loops over visitors in Python
    got = user_features(events)
    want = loop_reference(events)
    assert got["visitorid"].tolist() == want["visitorid"].tolist()
    for name in USER_FEATURES:
        np.testing.assert_allclose(
            got[name].to_numpy(float), want[name].to_numpy(float), rtol=1e-12, atol=1e-12, err_msg=name
        )
    # The percentile is reproduced bit for bit.
    assert np.array_equal(got["p95_gap_s"].to_numpy(), want["p95_gap_s"].to_numpy())


def test_huge_ids_do_not_overflow_the_sort_keys():
    events = random_events(2000, 100, seed=4)
    big = events.assign(visitorid=events["visitorid"] * 10**12, itemid=events["itemid"] * 10**15)
    a = user_features(events)
    b = user_features(big)
    pd.testing.assert_frame_equal(a.drop(columns="visitorid"), b.drop(columns="visitorid"))


def test_empty_events_and_missing_columns():
    empty = user_features(hand_events().iloc[:0])
    assert list(empty.columns) == ["visitorid", *USER_FEATURES] and len(empty) == 0
    with pytest.raises(DataError, match="categoryid"):
        user_features(hand_events().drop(columns="categoryid"))


# --------------------------------------------------------------------------- detector


@pytest.fixture(scope="module")
def train_features() -> pd.DataFrame:
    return user_features(random_events(30_000, 3000, seed=11))


@pytest.fixture(scope="module")
def detector(train_features) -> Detector:
    return fit_detector(train_features, share=0.05, seed=7, n_estimators=60)


def test_fit_freezes_the_train_quantile(detector, train_features):
    scores = detector.score_samples(train_features)
    assert detector.threshold_ == pytest.approx(np.quantile(scores, 0.95))
    assert detector.n_users_ == len(train_features)
    assert detector.features == tuple(USER_FEATURES)
    assert detector.name == DEFAULT_DETECTOR == "isolation_forest"
    assert detector.centre_.shape == detector.scale_.shape == (len(BEHAVIOUR_COLUMNS),)
    assert (detector.scale_ > 0).all()
    # a bare matrix in USER_FEATURES order scores like the table
    X = train_features[list(USER_FEATURES)].to_numpy(float)
    assert np.allclose(scores, detector.score_samples(X))
    assert np.array_equal(detector.predict(X), scores >= detector.threshold_)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_fit_detector_by_name(name, train_features):
    trees = {"n_estimators": 60} if name == "isolation_forest" else {}  # the module's forest size
    det = fit_detector(train_features, name, share=0.05, seed=7, fingerprint="fp", **trees)
    assert det.name == name and det.fingerprint_ == "fp"
    out = score(train_features, detector=det, protect_buyers=False)
    assert (out["is_anomaly"] == (out["anomaly_score"] >= det.threshold_)).all()
    assert abs(out["is_anomaly"].mean() - 0.05) < 0.01
    why = explain(train_features.iloc[:50], det)
    assert why.map(lambda t: all(p.split(" ")[0] in BEHAVIOUR_COLUMNS for p in t.split(", ") if p)).all()


def test_unknown_detector_name_is_a_data_error(train_features):
    with pytest.raises(DataError, match="Unknown detector"):
        fit_detector(train_features, "lof")


def test_scores_are_deterministic(train_features, detector):
    again = fit_detector(train_features, share=0.05, seed=7, n_estimators=60)
    a = detector.score_samples(train_features)
    assert np.array_equal(a, again.score_samples(train_features))
    assert again.threshold_ == detector.threshold_


def test_operating_point_is_json(train_features):
    detector = fit_detector(train_features, share=0.05, seed=7, n_estimators=60, fingerprint="abc123")
    op = detector.operating_point()
    json.dumps(op)
    assert op["share"] == 0.05 and op["threshold"] == detector.threshold_
    assert op["features"] == list(USER_FEATURES) and op["n_users"] == detector.n_users_
    assert op["data_fingerprint"] == "abc123" and op["version"]
    assert op["detector"] == "isolation_forest" and "one-sided" in op["score_definition"]


def test_detector_pickles(tmp_path, detector, train_features):
    path = tmp_path / "d.joblib"
    joblib.dump(detector, path)
    back = joblib.load(path)
    assert np.array_equal(back.score_samples(train_features), detector.score_samples(train_features))


def test_fit_rejects_bad_input(train_features):
    bad = train_features.copy()
    bad.loc[0, "events"] = -1
    with pytest.raises(DataError, match="negative"):
        fit_detector(bad)
    with pytest.raises(DataError, match="share"):
        fit_detector(train_features, share=1.5)


# --------------------------------------------------------------------------- scoring


def messy_table(train_features: pd.DataFrame) -> pd.DataFrame:
    """12 real rows with a shuffled index, an extra column and four unscorable rows."""
    t = train_features.iloc[:12].copy()
    t.index = [50, 3, 99, 7, 1, 0, 42, 8, 13, 77, 5, 2]
    t = t.astype({"events": object, "view": float})
    t.loc[99, "events"] = "abc"
    t.loc[7, "view"] = np.nan
    t.loc[1, "night_share"] = -0.5
    t.loc[13, "p95_gap_s"] = np.inf
    t["note"] = "x"
    return t


def test_score_keeps_every_row_in_order(detector, train_features):
    t = messy_table(train_features)
    out = score(t, detector=detector)
    assert list(out.index) == list(t.index)
    assert list(out.columns) == ["anomaly_score", "is_anomaly", "threshold"]
    bad = [99, 7, 1, 13]
    assert out.loc[bad, "anomaly_score"].isna().all()
    assert not out.loc[bad, "is_anomaly"].any()
    good = [i for i in t.index if i not in bad]
    want = detector.score_samples(train_features.iloc[:12].set_axis(t.index).loc[good])
    assert np.array_equal(out.loc[good, "anomaly_score"].to_numpy(), want)
    assert out["is_anomaly"].dtype == bool


def test_frozen_mode_uses_detector_threshold(detector, train_features):
    out = score(train_features, detector=detector, protect_buyers=False)
    assert (out["threshold"] == detector.threshold_).all()
    assert (out["is_anomaly"] == (out["anomaly_score"] >= detector.threshold_)).all()
    assert abs(out["is_anomaly"].mean() - 0.05) < 0.002  # same users as in training


def test_policy_keeps_buyers_and_nothing_else(detector, train_features):
    # Lower the threshold with a big batch share so some buyers are above it.
    off = score(train_features, share=0.5, detector=detector, protect_buyers=False)
    on = score(train_features, share=0.5, detector=detector)  # the policy is on by default
    bought = train_features["transaction"].to_numpy() > 0
    assert (off["is_anomaly"].to_numpy() & bought).any()
    assert not (on["is_anomaly"].to_numpy() & bought).any()
    assert np.array_equal(on["is_anomaly"].to_numpy(), off["is_anomaly"].to_numpy() & ~bought)
    assert np.array_equal(on["threshold"], off["threshold"])  # the policy never moves the threshold
    assert np.array_equal(apply_policy(off["is_anomaly"], train_features, True), on["is_anomaly"])


def test_batch_share_mode_flags_about_share(detector, train_features):
    batch = train_features.iloc[:1000]
    out = score(batch, share=0.1, detector=detector, protect_buyers=False)
    assert out["threshold"].iloc[0] == np.quantile(out["anomaly_score"], 0.9)
    assert abs(int(out["is_anomaly"].sum()) - 100) <= 2
    # with unscorable rows the quantile is over the scorable rows only
    t = messy_table(train_features)
    out = score(t, share=0.25, detector=detector, protect_buyers=False)
    ok = out["anomaly_score"].notna()
    assert out["threshold"].iloc[0] == np.quantile(out.loc[ok, "anomaly_score"], 0.75)
    assert out.loc[ok, "is_anomaly"].sum() == 2  # 8 scorable rows x 25 %


@pytest.mark.parametrize("share", [0, 1, -0.1, 1.5, float("nan"), True, "0.1"])
def test_bad_share_is_a_data_error(detector, train_features, share):
    with pytest.raises(DataError, match="share"):
        score(train_features.iloc[:5], share=share, detector=detector)


def test_missing_detector_is_an_artifact_error(monkeypatch):
    import core.store.artifacts

    fake = types.SimpleNamespace(detector=None, problems=["No manifest.json."])
    monkeypatch.setattr(core.store.artifacts, "load_artifacts", lambda *a, **k: fake)
    with pytest.raises(ArtifactError, match="python -m core build"):
        core.store.artifacts.load_detector()


def test_unfitted_detector_refuses_to_score(train_features):
    with pytest.raises(NotFittedError):
        Detector().score_samples(train_features)


def test_score_table_keeps_input_columns(detector, train_features):
    t = messy_table(train_features)
    out, val = score_table(t, detector=detector)
    assert list(out.columns) == [*t.columns, "anomaly_score", "is_anomaly", "threshold"]
    assert list(out.index) == list(t.index) and (out["note"] == "x").all()
    assert val.extra_columns == ["note"] and val.n_scorable == 8
    assert "anomaly_score" not in t.columns  # input untouched


def test_distinct_rows_group_identical_rows_only():
    X = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [1.0, 0.5], [2.0, 0.0]])
    first, codes = distinct_rows(X)
    assert first.tolist() == [0, 2, 3] and codes.tolist() == [0, 0, 1, 2, 1]
    assert np.array_equal(X[first][codes], X)
    first, codes = distinct_rows(X[:1])
    assert first.tolist() == [0] and codes.tolist() == [0]


def test_distinct_rows_survive_a_hash_collision(monkeypatch):
    from core.base.distinct import SMALL_ROWS  # fewer rows are sorted, not hashed

    n = SMALL_ROWS + 1
    X = np.array([[1.0], [2.0]] * n)[:n]
    monkeypatch.setattr(pd.util, "hash_pandas_object", lambda frame, index: pd.Series(np.full(n, 7), dtype="uint64"))
    first, codes = distinct_rows(X)
    assert first.tolist() == list(range(n)) and codes.tolist() == list(range(n))


def duplicated_messy_table(train_features: pd.DataFrame, n: int = 5_000) -> pd.DataFrame:
    """n rows drawn with replacement from 300 users (many identical feature rows), a shuffled
    index, and the four unscorable rows of messy_table mixed in."""
    rng = np.random.default_rng(3)
    t = train_features.iloc[rng.integers(0, 300, n)].copy()
    t["visitorid"] = np.arange(n)  # distinct users with identical features
    t.index = rng.permutation(n) + 1_000
    bad = messy_table(train_features).loc[[99, 7, 1, 13]]
    return pd.concat([t.iloc[:2000], bad, t.iloc[2000:]]).astype({"events": object, "view": float})


@pytest.mark.parametrize("share", [None, 0.1])
def test_scoring_distinct_rows_once_equals_scoring_every_row(detector, train_features, monkeypatch, share):
    t = duplicated_messy_table(train_features)
    ok = validate_features(t).scorable
    X = t.loc[ok, list(USER_FEATURES)].to_numpy(np.float64)
    every_row = np.full(len(t), np.nan)
    every_row[ok] = detector.score_samples(X)  # the reference: no de-duplication
    threshold = detector.threshold_ if share is None else np.quantile(every_row[ok], 1 - share)

    scored_rows: list[int] = []
    real = Detector.score_samples
    monkeypatch.setattr(Detector, "score_samples", lambda self, M: scored_rows.append(len(M)) or real(self, M))
    monkeypatch.setattr(scoring, "SCORE_CHUNK_ROWS", 120)
    progress: list[float] = []
    out = score(t, share=share, detector=detector, on_progress=progress.append)

    assert list(out.index) == list(t.index)  # every row, in input order
    assert np.array_equal(out["anomaly_score"].to_numpy(), every_row, equal_nan=True)  # bit for bit
    assert out.loc[~ok, "anomaly_score"].isna().all() and not out.loc[~ok, "is_anomaly"].any()
    assert out["threshold"].iloc[0] == threshold
    assert out["is_anomaly"].tolist() == (np.nan_to_num(every_row, nan=-np.inf) >= threshold).tolist()
    n_ok = int(ok.sum())
    assert scored_rows == [min(120, n_ok - k) for k in range(0, n_ok, 120)]  # chunks of the rows, in order
    assert progress == pytest.approx([min(1.0, k * 120 / n_ok) for k in range(1, len(progress) + 1)])
    assert progress[-1] == 1.0


def test_the_model_scores_each_distinct_z_row_once(detector, train_features, monkeypatch):
    # The one de-duplication of the scoring path: a buyer's z rows (as bought, as if not) and
    # everyone else's go to the model in one call, each distinct row once.
    t = duplicated_messy_table(train_features)
    X = t.loc[validate_features(t).scorable, list(USER_FEATURES)].to_numpy(np.float64)
    Z = detector.one_sided_z(X)
    bought = X[:, TRANSACTION] > 0
    assert bought.any()
    Z_all = np.concatenate([Z, detector.one_sided_z(without_purchases(X[bought]))])
    calls: list[np.ndarray] = []
    real = type(detector)._score_z
    monkeypatch.setattr(type(detector), "_score_z", lambda self, z: calls.append(z) or real(self, z))
    detector.score_samples(X)
    assert len(calls) == 1 and len(calls[0]) == len(np.unique(Z_all, axis=0)) < len(X)


def test_flag_scores_moves_the_share_without_rescoring(detector, train_features):
    t = duplicated_messy_table(train_features, 1_000)
    scores = score(t, detector=detector)["anomaly_score"].to_numpy()
    for share in (None, 0.02, 0.2):
        for protect in (True, False):
            again = flag_scores(scores, share, detector, t, protect_buyers=protect)
            pd.testing.assert_frame_equal(again, score(t, share=share, detector=detector, protect_buyers=protect))
    assert np.isnan(threshold_for(np.array([np.nan]), 0.1, detector))
    with pytest.raises(DataError, match="share"):
        flag_scores(scores, 1.5, detector, t)


def test_scores_on_the_committed_build_do_not_depend_on_de_duplication(default_artifacts):
    """The committed detector on real demo features (about 3 users per distinct feature row)."""
    from core.base import schema

    arts = default_artifacts  # the session's one load of the committed build
    if arts.detector is None or arts.verified_path(schema.USER_FEATURES_FILE) is None:
        skip_or_fail("no verified build in recsys_artifacts/: run `python -m core build`")
    features = pd.read_parquet(arts.verified_path(schema.USER_FEATURES_FILE)).head(20_000)
    features.loc[5, "events"] = np.nan  # one unscorable row
    for det in arts.detectors.values():
        every_row = np.full(len(features), np.nan)
        every_row[features.index != 5] = det.score_samples(features.drop(index=5))
        for share in (None, 0.1):
            out = score(features, share=share, detector=det)
            assert np.array_equal(out["anomaly_score"].to_numpy(), every_row, equal_nan=True), det.name
            expected = flag_scores(every_row, share, det, features)
            assert out["is_anomaly"].tolist() == expected["is_anomaly"].tolist()


def test_progress_is_reported_when_nothing_is_scorable(detector, train_features):
    t = train_features.iloc[:3].drop(columns="visitorid")
    progress: list[float] = []
    out = score(t, detector=detector, on_progress=progress.append)
    assert out["anomaly_score"].isna().all() and progress == [1.0]


# --------------------------------------------------------------------------- validation


def test_validate_features_reports_each_problem(train_features):
    t = train_features.iloc[:6].reset_index(drop=True).copy()
    t = t.astype({"events": object})
    t.loc[1, "events"] = "abc"
    t.loc[2, "p95_gap_s"] = np.inf
    t.loc[3, "view"] = -3
    t.loc[4, "cat_entropy"] = np.nan
    t.loc[5, "visitorid"] = t.loc[2, "visitorid"]
    t = t.drop(columns="uniq_cats").assign(extra_col=1)
    val = validate_features(t)
    assert val.missing_columns == ["uniq_cats"]
    assert val.extra_columns == ["extra_col"]
    assert not val.ok and not val.scorable.any()  # a required column is missing
    probs = val.row_problems.set_index(["row", "column"])["problem"]
    assert probs[(1, "events")] == "not a number: 'abc'"
    assert probs[(2, "p95_gap_s")] == "inf"
    assert probs[(3, "view")] == "negative count -3"
    assert probs[(4, "cat_entropy")] == "empty or NA"
    vid = int(t.loc[2, "visitorid"])
    assert probs[(5, "visitorid")] == f"duplicate visitorid {vid} (also line 4)"
    text = " ".join(val.messages())
    for needle in (
        "uniq_cats",
        "extra_col",
        "'events'",
        "not numbers",
        "infinite",
        "negative",
        "are empty",
        "repeat a visitorid",
        "line 3",
    ):
        assert needle in text, needle


def test_validate_scorable_mask_and_ok(train_features):
    t = train_features.iloc[:5].reset_index(drop=True).copy()
    assert validate_features(t).ok
    assert validate_features(t).messages() == []
    t.loc[0, "txn_to_cart_rate"] = -0.1
    t.loc[1, "visitorid"] = t.loc[3, "visitorid"]  # duplicates stay scorable
    val = validate_features(t)
    assert val.scorable.tolist() == [False, True, True, True, True]
    assert probs_of(val) == {
        (0, "txn_to_cart_rate"): "negative value -0.1",
        (3, "visitorid"): f"duplicate visitorid {t.loc[1, 'visitorid']} (also line 3)",
    }


def probs_of(val) -> dict:
    return {(r, c): p for r, c, p in val.row_problems[["row", "column", "problem"]].itertuples(index=False)}


def test_missing_visitorid_means_nothing_scorable(train_features):
    val = validate_features(train_features.drop(columns="visitorid").iloc[:4])
    assert val.missing_columns == ["visitorid"] and not val.scorable.any()
    assert any("visitorid" in m and "Nothing can be scored" in m for m in val.messages())


# --------------------------------------------------------------------------- explain / proxy


def test_explain_names_the_obvious_outlier(detector, train_features):
    t = train_features.iloc[:3].astype({"night_share": object})
    t.iloc[1, t.columns.get_loc("short_gap_share")] = 1.0
    t.iloc[1, t.columns.get_loc("events")] = 5000
    t.iloc[1, t.columns.get_loc("view")] = 5000
    for col in ("addtocart", "transaction", "add_to_view_rate", "txn_to_cart_rate"):  # a valid row
        t.iloc[1, t.columns.get_loc(col)] = 0
    t.iloc[1, t.columns.get_loc("uniq_item_ratio")] = t["uniq_items"].iloc[1] / 5000
    t.loc[t.index[2], "night_share"] = "oops"
    why = explain(t, detector, top_n=2)
    assert list(why.index) == list(t.index)
    parts = why.iloc[1].split(", ")
    assert len(parts) == 2
    # one-sided behaviour columns only: the bot-ward tails of a 5,000-view burst
    assert {p.split(" ")[0] for p in parts} <= {"intensity", "fast_share", "repeat_views", "tight_gaps"}
    assert all(p.endswith("σ") for p in parts)
    assert why.iloc[2] == ""  # unscorable row
    ok = t.iloc[:2].astype({"night_share": float})
    assert why.iloc[:2].tolist() == detector_why(detector, ok, top_n=2).tolist()


def test_proxy_labels_rules():
    base = {f: 0.0 for f in USER_FEATURES}
    rows = (
        [
            {**base, "events": 60, "short_gap_share": 0.5, "events_per_active_day": 1},  # burst
            {**base, "events": 40, "short_gap_share": 0.5, "events_per_active_day": 1},  # too few
            {**base, "events": 25, "addtocart": 20, "transaction": 0, "events_per_active_day": 1},
            {**base, "events": 25, "addtocart": 20, "transaction": 1, "events_per_active_day": 1},
            {**base, "events": 30, "night_share": 0.8, "events_per_active_day": 1},  # night
            {**base, "events": 10, "night_share": 1.0, "events_per_active_day": 1},
        ]
        + [{**base, "events": 2, "events_per_active_day": 2}] * 300
        + [
            {**base, "events": 500, "events_per_active_day": 500},  # volume
        ]
    )
    got = proxy_labels(pd.DataFrame(rows))
    assert got[:6].tolist() == [True, False, True, False, True, False]
    assert got[-1] and not got[6:-1].any()


# --------------------------------------------------------------------------- audit / cleaning


def test_audit_table_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    labels = np.array([1, 0, 1, 0, 0, 0, 0, 1, 0, 0], bool)
    events = np.array([100, 10, 50, 1, 1, 1, 1, 30, 3, 3])
    a = audit_table(scores, labels, events, shares=np.array([0.1, 0.2, 0.3, 0.5]))
    assert a["n_flagged"].tolist() == [1, 2, 3, 5]
    np.testing.assert_allclose(a["precision"], [1.0, 0.5, 2 / 3, 2 / 5])
    np.testing.assert_allclose(a["recall"], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert a["events_removed"].tolist() == [100, 110, 160, 162]
    np.testing.assert_allclose(a["events_removed_share"], np.array([100, 110, 160, 162]) / 200)
    np.testing.assert_allclose(a["users_removed_share"], [0.1, 0.2, 0.3, 0.5])
    np.testing.assert_allclose(a["threshold"], np.quantile(scores, [0.9, 0.8, 0.7, 0.5]))
    assert list(a.columns) == [
        "share",
        "threshold",
        "n_flagged",
        "precision",
        "recall",
        "events_removed",
        "events_removed_share",
        "users_removed_share",
    ]


def test_audit_table_flags_scores_equal_to_the_threshold():
    scores = np.arange(11) / 10  # the 0.9 quantile is exactly the score 0.9
    labels = np.zeros(11, bool)
    labels[9] = True
    a = audit_table(scores, labels, np.ones(11), shares=np.array([0.1]))
    assert a["threshold"].iloc[0] == 0.9
    assert a["n_flagged"].iloc[0] == 2 and a["recall"].iloc[0] == 1.0
    # NaN scores (unscorable users) are left out
    a = audit_table(np.append(scores, np.nan), np.append(labels, True), np.ones(12), shares=np.array([0.1]))
    assert a["n_flagged"].iloc[0] == 2 and a["recall"].iloc[0] == 1.0


def test_audit_table_monotone_and_default_shares():
    rng = np.random.default_rng(0)
    scores = rng.random(5000)
    labels = rng.random(5000) < scores * 0.2
    a = audit_table(scores, labels, rng.integers(1, 50, 5000))
    assert a["share"].tolist() == [round(0.01 * k, 2) for k in range(1, 21)]
    assert (np.diff(a["recall"]) >= 0).all() and (np.diff(a["n_flagged"]) > 0).all()
    assert (np.diff(a["events_removed"]) >= 0).all()
    none = audit_table(scores, None, np.ones(5000))
    assert none["precision"].isna().all() and (none["n_flagged"] == a["n_flagged"]).all()


def test_clean_events_removes_exactly_flagged_users():
    events = hand_events()
    clean = clean_events(events, np.array([10, 999]))
    assert sorted(clean["visitorid"].unique()) == [3, 7]
    assert len(clean) == len(events) - 7
    kept = events[events["visitorid"] != 10].reset_index(drop=True)
    pd.testing.assert_frame_equal(clean, kept)
    rep = cleaning_report(events, clean)
    assert rep["events_before"] == 14 and rep["events_after"] == 7 and rep["events_removed"] == 7
    assert rep["users_before"] == 3 and rep["users_after"] == 2 and rep["users_removed"] == 1
    assert math.isclose(rep["events_removed_share"], 0.5)
    assert math.isclose(rep["users_removed_share"], 1 / 3)


def test_scores_of_distinct_rows_are_the_scores_of_every_row(train_features):
    # Many users with identical rows (and identical z rows): de-duplication must not change a bit.
    repeated = train_features.iloc[np.random.default_rng(4).integers(0, 400, 6000)].reset_index(drop=True)
    for name in DETECTORS:
        trees = {"n_estimators": 60} if name == "isolation_forest" else {}  # the module's forest size
        det = fit_detector(train_features, name, share=0.05, seed=7, **trees)
        # the reference: each row scored on its own (a 1-row matrix), a buyer capped by its score as
        # if it had not bought
        rows = repeated.loc[:, list(USER_FEATURES)].to_numpy(np.float64)
        every_row = np.array([det.score_samples(rows[i : i + 1])[0] for i in range(0, 6000, 50)])
        assert np.array_equal(det.score_samples(repeated)[::50], every_row), name


def test_fit_sample_caps_users_and_keeps_their_order(train_features):
    assert fit_sample(train_features, cap=10**6) is train_features
    sample = fit_sample(train_features, cap=500, seed=3)
    pos = pd.Index(train_features["visitorid"]).get_indexer(sample["visitorid"])
    assert len(sample) == 500 and (pos >= 0).all() and (np.diff(pos) > 0).all()  # a subset, in order
    assert sample.equals(fit_sample(train_features, cap=500, seed=3))  # fixed by the seed


def _same_validation(a: FeatureValidation, b: FeatureValidation) -> None:
    """Two validations agree on every message, problem row and scorable flag."""
    assert a.messages() == b.messages()
    pd.testing.assert_frame_equal(a.row_problems, b.row_problems)
    assert np.array_equal(a.scorable, b.scorable)


def test_validation_of_plain_numpy_columns_is_that_of_pandas_columns(train_features):
    # Plain int/float columns skip pandas' NA and type checks: the same answers as the nullable
    # and object columns that take them, invalid rows included.
    bad = train_features.head(40).reset_index(drop=True).copy()
    bad.loc[1, "events"] += 1
    bad.loc[3, "view"] = -2
    bad.loc[4, "night_share"] = 1.5
    bad.loc[6, "p95_gap_s"] = np.inf
    bad.loc[7, "visitorid"] = bad.loc[6, "visitorid"]
    bad.loc[9, "cat_entropy"] = np.nan
    plain = validate_features(bad)
    assert plain.n_scorable == 35 and len(plain.row_problems) >= 6
    nullable = bad.convert_dtypes(convert_string=False, convert_boolean=False)
    assert any(not isinstance(t, np.dtype) for t in nullable.dtypes)
    _same_validation(plain, validate_features(nullable))
    _same_validation(plain, validate_features(bad.astype(object)))


def test_small_batches_score_as_the_whole_table(train_features, detector):
    # An API request scores a few rows as a matrix; the dashboard scores the whole table: the same bits.
    whole = detector.score_samples(train_features)
    parts = np.concatenate([detector.score_samples(train_features.iloc[i : i + 5]) for i in range(0, 400, 5)])
    assert np.array_equal(parts, whole[:400])
    matrix = train_features.loc[:, list(USER_FEATURES)].to_numpy(np.float64)
    assert np.array_equal(detector.score_samples(matrix[:5]), whole[:5])


def _random_small_table(train_features: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A few users drawn from train_features (repeats included), some cells broken the ways the
    validator refuses (NaN, inf, negatives, fractions, broken relations, repeated ids)."""
    n = int(rng.integers(1, 40))
    t = train_features.iloc[rng.integers(0, len(train_features), n)].reset_index(drop=True)
    if rng.random() < 0.3:  # counts as floats (as a CSV may hold them): they may be fractional
        t = t.astype({c: np.float64 for c in USER_FEATURES})
    t["visitorid"] = rng.permutation(t["visitorid"].to_numpy()) if rng.random() < 0.5 else t["visitorid"]
    if rng.random() < 0.3:
        t.loc[rng.integers(0, n), "visitorid"] = t["visitorid"].iloc[0]  # a repeated id
    floats = [c for c in USER_FEATURES if t[c].dtype.kind == "f"]
    for _ in range(int(rng.integers(0, 4))):
        col = str(rng.choice(list(USER_FEATURES)))
        row = int(rng.integers(0, n))
        bad = [np.nan, np.inf, -np.inf, -1.0, 0.5, 1e300, 0.0, 2.0**60] if col in floats else [-1, 0, 10**6]
        value = bad[int(rng.integers(0, len(bad)))]
        if col not in floats and not isinstance(value, int):
            continue
        t.loc[row, col] = value
    if rng.random() < 0.2:  # ids as floats, one of them perhaps no id at all
        t["visitorid"] = t["visitorid"].astype(np.float64)
        t.loc[rng.integers(0, n), "visitorid"] = [np.nan, 1.5, 2.0**64, 7.0][int(rng.integers(0, 4))]
    return t


def test_small_tables_validate_and_score_as_large_ones(train_features, detector, monkeypatch):
    # Small tables are read into numpy in one step (an API request): every finding, score and
    # flag must be the ones the column-by-column path of large tables gives.
    from core.anomaly import validation

    rng = np.random.default_rng(20)
    for _ in range(40):
        t = _random_small_table(train_features, rng)
        assert validation.small_feature_matrix(t) is not None
        fast = validate_features(t)
        fast_scores = score_rows(t, fast.scorable, detector)
        fast_flags = flag_scores(fast_scores, None, detector, t)
        with monkeypatch.context() as m:
            m.setattr(validation, "SMALL_TABLE_ROWS", -1)
            assert validation.small_feature_matrix(t) is None
            slow = validate_features(t)
            slow_scores = score_rows(t, slow.scorable, detector)
            slow_flags = flag_scores(slow_scores, None, detector, t)
        assert np.array_equal(fast.scorable, slow.scorable)
        pd.testing.assert_frame_equal(fast.row_problems, slow.row_problems)
        assert (fast.problem_counts, fast.first_examples, fast.first_lines) == (
            slow.problem_counts,
            slow.first_examples,
            slow.first_lines,
        )
        assert fast.messages() == slow.messages()
        assert np.array_equal(fast_scores, slow_scores, equal_nan=True)
        pd.testing.assert_frame_equal(fast_flags, slow_flags)
        # and each row's score is the score of that row alone (no de-duplication at all), each
        # row a 1-row matrix (scored as its table row is: test_small_batches_score_as_the_whole_table)
        ok = np.flatnonzero(fast.scorable)
        rows = t.loc[:, list(USER_FEATURES)].to_numpy(np.float64)
        alone = [detector.score_samples(rows[i : i + 1])[0] for i in ok]
        assert np.array_equal(fast_scores[ok], np.array(alone, np.float64))


def test_small_feature_matrix_only_for_plain_number_tables_with_every_column(train_features):
    from core.anomaly import validation

    t = train_features.iloc[:5].reset_index(drop=True)
    assert validation.small_feature_matrix(t.assign(note="x")) is None  # text beside the numbers
    assert validation.small_feature_matrix(t.astype({"events": object})) is None
    assert validation.small_feature_matrix(pd.concat([t, t[["view"]]], axis=1)) is None  # a repeated name
    assert validation.small_feature_matrix(t.drop(columns="view")) is None  # a missing column
    shuffled = t[list(reversed(t.columns))].assign(extra=1.5)  # any column order, extra numbers
    fm = validation.small_feature_matrix(shuffled)
    assert fm is not None and len(fm) == 5 and fm.values.flags.f_contiguous
    assert np.array_equal(fm.visitorid, t["visitorid"].to_numpy()) and fm.visitorid.dtype == t["visitorid"].dtype
    assert all(np.array_equal(fm[c], validation.numeric(t[c])) for c in USER_FEATURES)
    with pytest.raises(DataError):  # a matrix of the wrong shape is never scored
        validation.FeatureMatrix(fm.visitorid, fm.values[:, :15])
    with pytest.raises(DataError):
        validation.FeatureMatrix(fm.visitorid[:4], fm.values)
