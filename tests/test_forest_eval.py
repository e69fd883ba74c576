"""core.base.forest_eval: the all-trees-at-once evaluation gives scikit-learn's scores bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest, RandomForestClassifier

from core.base.forest_eval import MAX_FAST_ROWS, forest_positive_proba, isolation_score_samples


def _data(n: int = 3_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features with ties, NaN and float64 values that round to float32, and a learnable label."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 5, n), rng.exponential(size=n) * 1e3 + 1e-9])
    X[rng.random(n) < 0.1, 0] = np.nan  # missing values: the trees learn where NaN goes
    y = (np.nan_to_num(X[:, 0]) + X[:, 1] / 3 + rng.normal(scale=0.5, size=n) > 0.5).astype(int)
    return X, y


@pytest.mark.parametrize("n_rows", [1, 5, 100, MAX_FAST_ROWS])
def test_random_forest_proba_is_identical(n_rows):
    X, y = _data()
    forest = RandomForestClassifier(n_estimators=30, max_depth=10, random_state=0, n_jobs=1).fit(X, y)
    rows = _data(n_rows, seed=1)[0]
    assert np.array_equal(forest_positive_proba(forest, rows), forest.predict_proba(rows)[:, 1])


@pytest.mark.parametrize("max_features", [1.0, 2])
@pytest.mark.parametrize("n_rows", [1, 7, MAX_FAST_ROWS])
def test_isolation_forest_scores_are_identical(n_rows, max_features):
    X, _ = _data()
    X = np.nan_to_num(X)
    forest = IsolationForest(n_estimators=50, max_features=max_features, random_state=0).fit(X)
    rows = np.nan_to_num(_data(n_rows, seed=2)[0])
    rows[0, 0] = np.nan  # the API never sends NaN, but Tree.apply has a rule for it: follow it
    assert np.array_equal(isolation_score_samples(forest, rows), forest.score_samples(rows))


@pytest.mark.usefixtures("built_artifacts")
def test_served_models_score_identically(built_artifact_dir, loaded_artifacts):
    from core.base.schema import USER_FEATURES_FILE

    arts = loaded_artifacts
    model = arts.ranking_model
    rows = np.random.default_rng(3).random((50, len(model.features))) * 20
    if hasattr(model.estimator, "estimators_"):
        cands = {f: rows[:, j] for j, f in enumerate(model.features)}
        expected = model.estimator.predict_proba(pd.DataFrame(cands).to_numpy(np.float32))[:, 1]
        assert np.array_equal(model.score(cands), expected)
    detector = arts.detectors.get("isolation_forest")
    if detector is not None:
        users = pd.read_parquet(built_artifact_dir / USER_FEATURES_FILE).head(MAX_FAST_ROWS)
        Z = detector.one_sided_z(users)
        assert np.array_equal(detector._score_z(Z), -detector.forest_.score_samples(Z))
