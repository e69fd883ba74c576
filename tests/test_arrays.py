"""Sort-based id helpers and hashed duplicate detection: the same answers as numpy and pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.base import arrays
from core.base.distinct import duplicated_rows


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.float64, bool])
def test_unique_intersect_union_match_numpy(dtype):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 50, 500).astype(dtype)
    b = rng.integers(25, 80, 300).astype(dtype)
    assert np.array_equal(arrays.unique(a), np.unique(a))
    assert arrays.unique(a).dtype == np.unique(a).dtype
    assert np.array_equal(arrays.intersect(a, b), np.intersect1d(a, b))
    assert np.array_equal(arrays.union(a, b), np.union1d(a, b))
    assert arrays.unique(a[:0]).size == 0 and arrays.unique(a[:1]).tolist() == a[:1].tolist()


def test_unique_of_floats_keeps_numpys_nan_rule():
    x = np.array([2.0, np.nan, 1.0, np.nan, 2.0])
    assert np.array_equal(arrays.unique(x), np.unique(x), equal_nan=True)


@pytest.mark.parametrize("span", [10, 2**40])  # a combined key, and one that would overflow int64
def test_stable_order_is_lexsort(span):
    rng = np.random.default_rng(1)
    major = rng.integers(0, 30, 2000) * (span // 10)
    minor = rng.integers(0, 5, 2000) * (span // 10)
    assert np.array_equal(arrays.stable_order(major, minor), np.lexsort((minor, major)))
    assert arrays.stable_order(major[:0], minor[:0]).size == 0


def _events(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "timestamp": rng.integers(0, 20, n),
            "visitorid": rng.integers(0, 5, n),
            "event": pd.Categorical(rng.choice(["view", "addtocart", "transaction"], n)),
            "itemid": rng.integers(0, 3, n),
            "transactionid": np.where(rng.random(n) < 0.7, np.nan, 1.0),
        }
    )
    return df


def test_duplicated_rows_is_pandas_duplicated_with_missing_values():
    ev = _events(3000, 2)
    expected = ev.duplicated(keep="first").to_numpy()
    assert expected.any() and (~expected).any()
    assert np.array_equal(duplicated_rows(ev), expected)
    assert duplicated_rows(ev.iloc[:1]).tolist() == [False]


def test_duplicated_rows_survive_a_hash_collision(monkeypatch):
    ev = _events(50, 3)
    monkeypatch.setattr(
        pd.util, "hash_pandas_object", lambda frame, index: pd.Series(np.full(len(frame), 7, np.uint64))
    )
    assert np.array_equal(duplicated_rows(ev), ev.duplicated(keep="first").to_numpy())
