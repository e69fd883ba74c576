"""Distinct rows of a matrix: models whose output depends on a row alone score each one once."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# Up to this many rows (an API request) sorting beats hashing through pandas (its fixed cost per call).
SMALL_ROWS = 256
PAIRWISE_ROWS = 32  # up to this many rows, an all-pairs comparison beats sorting


def distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each distinct row of X, code of every row into those positions).

    Rows are grouped by a 64-bit hash of their values, then every row is compared with its
    group's first row, so a hash collision can never merge two different rows (if one ever
    happened, every row is simply its own group).
    """
    n = len(X)
    identity = (np.arange(n), np.arange(n))
    if n < 2:
        return identity
    if n <= SMALL_ROWS:
        return _sorted_groups(np.asarray(X))
    first, codes = _hash_groups(pd.DataFrame(X, copy=False))
    for j in range(X.shape[1]):  # one column at a time: no full-size copy of X
        if not np.array_equal(X[:, j], X[first[codes], j]):
            log.warning("hash collision in distinct_rows: scoring every row on its own")
            return identity
    return first, codes


def _sorted_groups(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """distinct_rows of a few rows, exact (no hash): same positions and codes.

    Rows are compared by their bytes, so only bit-identical rows are merged (-0.0 and 0.0 are
    not, which merely scores one more row). A handful of rows is compared pairwise; more are
    sorted: both are many times cheaper than ``np.unique(axis=0)`` for an API request.
    """
    V = np.ascontiguousarray(X)
    V = V.reshape(len(V), -1).view(f"u{V.dtype.itemsize}")
    if len(V) <= PAIRWISE_ROWS:
        first_of = (V[:, None, :] == V[None, :, :]).all(axis=2).argmax(axis=1)
    else:
        order = np.lexsort(V.T[::-1])
        Vs = V[order]
        new = np.empty(len(V), bool)
        new[0] = True
        np.any(Vs[1:] != Vs[:-1], axis=1, out=new[1:])
        starts = np.flatnonzero(new)
        group_first = np.minimum.reduceat(order, starts)  # lowest position in each run of equal rows
        first_of = np.empty(len(V), np.int64)
        first_of[order] = group_first[np.cumsum(new) - 1]
    first = np.flatnonzero(first_of == np.arange(len(V)))
    # Groups numbered in order of first appearance, as _hash_groups does.
    return first, np.searchsorted(first, first_of)


def duplicated_rows(frame: pd.DataFrame) -> np.ndarray:
    """``frame.duplicated(keep="first")`` by hashing rows, faster than pandas on millions of events.

    Every duplicate is checked column by column against its group's first row (missing equals
    missing, as in pandas); a hash collision falls back to pandas.
    """
    n = len(frame)
    if n < 2:
        return np.zeros(n, bool)
    first, codes = _hash_groups(frame)
    dup = np.ones(n, bool)
    dup[first] = False
    rows = np.flatnonzero(dup)
    ref = first[codes[rows]]
    for col in range(frame.shape[1]):  # a handful of columns
        values = frame.iloc[:, col].to_numpy()
        a, b = values[rows], values[ref]
        if not ((a == b) | (pd.isna(a) & pd.isna(b))).all():
            log.warning("hash collision in duplicated_rows: pandas decides")
            return frame.duplicated(keep="first").to_numpy()
    return dup


def _hash_groups(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each 64-bit row hash, hash code of every row), codes in order of appearance."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    codes, _ = pd.factorize(hashes)  # codes are numbered in order of first appearance
    new = np.empty(len(codes), bool)
    new[0] = True
    np.greater(codes[1:], np.maximum.accumulate(codes)[:-1], out=new[1:])
    return np.flatnonzero(new), codes
