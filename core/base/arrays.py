"""Distinct values and set operations on integer id arrays (visitorids, case ids), by sorting.

numpy 2.4's ``np.unique`` hashes when asked for the values alone, which on millions of distinct
int64 ids is far slower than a sort (docs/PERFORMANCE.md), and ``np.intersect1d`` calls it on
both sides. Other dtypes go to numpy unchanged.
"""

from __future__ import annotations

import numpy as np


def unique(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an array, as ``np.unique`` gives them."""
    a = np.asarray(values).ravel()
    if a.dtype.kind not in "iub" or a.size < 2:
        return np.unique(a)
    s = np.sort(a)
    keep = np.empty(s.size, bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sorted values found in both arrays, as ``np.intersect1d`` gives them."""
    return np.intersect1d(unique(a), unique(b), assume_unique=True)


def union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sorted values found in either array, as ``np.union1d`` gives them."""
    return unique(np.concatenate([np.asarray(a).ravel(), np.asarray(b).ravel()]))


def stable_order(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """Positions sorting two integer keys by (major, minor), ties in input order (np.lexsort's).

    One int64 key sorts several times faster than np.lexsort on two (docs/PERFORMANCE.md);
    lexsort only when the combined key would overflow.
    """
    major = np.asarray(major, np.int64)
    minor = np.asarray(minor, np.int64)
    if major.size == 0:
        return np.zeros(0, np.int64)
    m0, n0 = int(major.min()), int(minor.min())
    span = int(minor.max()) - n0 + 1
    if (int(major.max()) - m0 + 1) * span < 2**62:
        return np.argsort((major - m0) * np.int64(span) + (minor - n0), kind="stable")
    return np.lexsort((minor, major))
