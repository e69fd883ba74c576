"""Distinct values and set operations on integer id arrays (visitorids, case ids), by sorting.

numpy 2.4's ``np.unique`` hashes when asked for the values alone; on millions of distinct int64
ids that measured 60x slower than a sort (1.9M visitorids: 2.7 s against 0.04 s), and
``np.intersect1d`` calls it on both sides. Other dtypes go to numpy unchanged.
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
