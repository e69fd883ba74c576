"""Distinct rows of a matrix: models whose output depends on a row alone score each one once."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


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
    hashes = pd.util.hash_pandas_object(pd.DataFrame(X, copy=False), index=False).to_numpy()
    codes, _ = pd.factorize(hashes)  # codes are numbered in order of first appearance
    new = np.empty(n, bool)
    new[0] = True
    np.greater(codes[1:], np.maximum.accumulate(codes)[:-1], out=new[1:])
    first = np.flatnonzero(new)
    for j in range(X.shape[1]):  # one column at a time: no full-size copy of X
        if not np.array_equal(X[:, j], X[first[codes], j]):
            log.warning("hash collision in distinct_rows: scoring every row on its own")
            return identity
    return first, codes
