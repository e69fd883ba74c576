"""The pandas and Dask engines give the same user features and candidates; the build's reuse of
candidates for the cleaned run equals building them on the cleaned events."""

from __future__ import annotations

import tempfile

import dask
import numpy as np
import pandas as pd
import pytest

from core import engine
from core.anomaly.audit import clean_events
from core.anomaly.features import user_features
from core.demo.generate import generate
from core.demo.raw_files import write_raw
from core.engine import dask_engine
from core.ranking.candidates import build_candidates, prepare_cases
from core.reading import data

KEYS = {"features": ["visitorid"], "candidates": ["visitorid", "case_id", "categoryid"]}


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    ds = generate(n_events=40_000, seed=5)
    with tempfile.TemporaryDirectory() as tmp:
        write_raw(ds, tmp)
        return data.load_raw(tmp)


def _same(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> None:
    """Equal after sorting by the keys: integers exactly, floats within 1e-12 relative."""
    a = a.sort_values(keys, kind="stable").reset_index(drop=True)
    b = b.sort_values(keys, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=0)


@pytest.mark.parametrize("stage", ["features", "candidates"])
def test_dask_partitions_match_pandas_in_process(events, stage):
    # The synchronous scheduler runs the same partitioning and case numbering without a cluster.
    with dask.config.set(scheduler="sync"):
        table = dask_engine.run_frame(stage, events)
    expected = engine.stage_function(stage)(events)
    pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-12, atol=0)


def test_cleaned_candidates_are_raw_candidates_without_flagged_cases(events):
    feats = user_features(events)
    flagged = feats["visitorid"].to_numpy()[feats["events"].to_numpy() >= 20]
    assert flagged.size > 0
    cands = build_candidates(events)
    derived = engine.without_visitors(cands, flagged)
    direct = build_candidates(clean_events(events, flagged))
    pd.testing.assert_frame_equal(derived, direct)
    kept, n_all, n_dropped = engine.cases_from_candidates(derived)
    ref, ref_all, ref_dropped = prepare_cases(clean_events(events, flagged))
    assert (n_all, n_dropped) == (ref_all, ref_dropped)
    pd.testing.assert_frame_equal(kept, ref)


def test_csv_out_of_features(events, tmp_path):
    path = tmp_path / "events.parquet"
    data.write_events(events, path)
    engine.run_file("features", path, tmp_path / "features.csv")
    _same(pd.read_csv(tmp_path / "features.csv"), user_features(events), KEYS["features"])


def test_renumber_cases_is_dense_in_order():
    assert engine.renumber_cases(np.array([3, 3, 7, 9, 9, 9])).tolist() == [0, 0, 1, 2, 2, 2]


@pytest.mark.e2e  # a LocalCluster with two worker processes (~15-45 s on the shared 2-core machine)
def test_dask_cluster_matches_pandas_on_a_parquet_folder(events, tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    half = len(events) // 2  # two files: rows keep their global file order across files
    data.write_events(events.iloc[:half], folder / "part-0.parquet")
    data.write_events(events.iloc[half:], folder / "part-1.parquet")
    with dask_engine.cluster(None, n_workers=2, memory_limit="1GB"):
        for stage in ("features", "candidates"):
            rows = dask_engine.run_files(stage, engine.parquet_files(folder), tmp_path / f"{stage}_dask")
            engine.run_file(stage, folder, tmp_path / f"{stage}_pandas.parquet")
            got = pd.read_parquet(tmp_path / f"{stage}_dask")
            want = pd.read_parquet(tmp_path / f"{stage}_pandas.parquet")
            assert rows == len(want)
            _same(got, want, KEYS[stage])
