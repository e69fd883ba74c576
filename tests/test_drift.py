"""The drift check (PSI against the training users) on the pitfalls other drift tools have."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.anomaly import drift
from core.anomaly.drift import drift_report, drift_sentence
from core.base import schema
from core.base.errors import DataError
from core.base.schema import USER_FEATURES
from core.store import artifacts as A
from core.store.manifest import file_entry


def test_quantile_bins_follow_numpy_percentiles_and_the_bin_count_asked_for():
    x = np.random.default_rng(0).lognormal(size=5000)
    for bins in (4, 10, 20):
        ref = drift.feature_reference(x, bins)
        assert ref.kind == "quantiles"
        want = np.percentile(x, np.arange(1, bins) * 100 / bins)
        np.testing.assert_array_equal(ref.edges, want)
        assert len(ref.shares) == bins
        np.testing.assert_allclose(ref.shares, 1 / bins, atol=1e-3)


def test_bins_are_right_closed_and_open_ended():
    ref = drift.feature_reference(np.arange(1.0, 101.0), 10)  # edges 10.9, 20.8, ...
    idx = drift._bin_index(np.array([-1e9, ref.edges[0], ref.edges[0] + 1e-9, 1e9]), ref.kind, ref.edges)
    assert idx.tolist() == [0, 0, 1, 9]


def test_duplicate_edges_are_merged():
    x = np.concatenate([np.ones(900), np.arange(2.0, 102.0)])  # 90% ones: the first 8 edges are all 1
    ref = drift.feature_reference(x, 10)
    assert ref.kind == "quantiles" and len(ref.edges) == len(set(ref.edges)) < 9
    assert sum(ref.shares) == pytest.approx(1.0)
    assert drift.psi(drift._shares(x, ref.kind, ref.edges), np.asarray(ref.shares)) == pytest.approx(0.0)


def test_few_values_get_one_bin_each_plus_other_and_unseen_values_land_in_other():
    ref = drift.feature_reference(np.array([0, 1, 1, 2, 2, 2] * 10, float), 10)
    assert ref.kind == "values" and ref.values == [0.0, 1.0, 2.0] and len(ref.shares) == 4
    assert ref.shares[-1] == 0.0
    batch = np.array([0, 1, 2, 7, 7, 7], float)  # 7 was never seen in training
    shares = drift._shares(batch, ref.kind, ref.values)
    assert shares.tolist() == [1 / 6, 1 / 6, 1 / 6, 0.5]
    value = drift.psi(shares, np.asarray(ref.shares))
    assert np.isfinite(value) and value >= drift.DRIFT_PSI


def test_a_constant_column_is_one_value_and_stays_finite():
    ref = drift.feature_reference(np.zeros(1000), 10)
    assert ref.kind == "values" and ref.values == [0.0] and ref.shares == [1.0, 0.0]
    same = drift.psi(drift._shares(np.zeros(300), ref.kind, ref.values), np.asarray(ref.shares))
    assert same == 0.0
    moved = drift.psi(drift._shares(np.ones(300), ref.kind, ref.values), np.asarray(ref.shares))
    assert np.isfinite(moved) and moved >= drift.DRIFT_PSI


def test_empty_bins_use_the_floor():
    q = np.array([0.5, 0.5, 0.0])
    p = np.array([0.5, 0.5, 0.0])
    assert drift.psi(p, q) == 0.0
    p = np.array([1.0, 0.0, 0.0])
    want = (1 - 0.5) * np.log(1 / 0.5) + (1e-4 - 0.5) * np.log(1e-4 / 0.5)
    assert drift.psi(p, q) == pytest.approx(want)


def test_bands_and_bad_bin_counts():
    assert [drift.band(v) for v in (0.0, 0.099, 0.1, 0.2499, 0.25, 3)] == [
        "no drift",
        "no drift",
        "moderate drift",
        "moderate drift",
        "drift",
        "drift",
    ]
    for bad in (1, 0, 2.5):
        with pytest.raises(DataError, match="bins"):
            drift.feature_reference(np.arange(50.0), bad)


def test_a_sample_of_the_training_users_does_not_drift_and_heavy_users_do(built_artifact_dir, loaded_artifacts):
    ref = loaded_artifacts.drift_reference
    assert isinstance(ref, drift.DriftReference) and set(ref.features) == set(USER_FEATURES)
    features = pd.read_parquet(built_artifact_dir / schema.USER_FEATURES_FILE)
    sample = features.sample(5000, random_state=1)
    report = drift_report(sample, ref)
    assert report["verdict"] == "no drift", report["features"]
    heavy = features[features["events"] >= 5]
    report = drift_report(heavy, ref)
    assert report["verdict"] == "drift" and "events" in report["drifted_features"]
    small = drift_report(features.head(199), ref)
    assert small["verdict"] == "too few rows" and "199" in drift_sentence(small)


def test_the_reference_artifact_is_listed_and_schema_checked(built_artifact_dir, light_artifact_dir, tmp_path):
    import shutil

    manifest = json.loads((built_artifact_dir / schema.MANIFEST).read_text())
    assert schema.DRIFT_REFERENCE in manifest["files"]
    copy = tmp_path / "arts"
    shutil.copytree(light_artifact_dir, copy)  # the committed build, its forests cut to a few trees
    bad = json.loads((copy / schema.DRIFT_REFERENCE).read_text())
    bad["features"]["events"]["shares"] = [0.5]  # not one share per bin
    (copy / schema.DRIFT_REFERENCE).write_text(json.dumps(bad))
    m = json.loads((copy / schema.MANIFEST).read_text())
    m["files"][schema.DRIFT_REFERENCE] = file_entry(copy / schema.DRIFT_REFERENCE)
    (copy / schema.MANIFEST).write_text(json.dumps(m))
    arts = A.load_artifacts(copy)
    assert arts.drift_reference is None and any(schema.DRIFT_REFERENCE in p for p in arts.problems)
