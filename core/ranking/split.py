"""Rare-label drop and the visitor split of Task 1 (train and test visitors are disjoint)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.base import arrays
from core.base.errors import DataError
from core.base.schema import DEFAULT_SEED, MIN_LABEL_COUNT, TEST_SIZE
from core.ranking.cases import case_table


def drop_rare_labels(cands: pd.DataFrame, min_count: int = MIN_LABEL_COUNT) -> tuple[pd.DataFrame, int]:
    """Drop cases whose label occurs in fewer than min_count cases; return (cands, n dropped)."""
    cases = case_table(cands)
    label_count = cases["y"].map(cases["y"].value_counts())
    rare = cases.loc[label_count.to_numpy() < min_count, "case_id"].to_numpy()
    if len(rare) == 0:
        return cands, 0
    keep = ~np.isin(cands["case_id"].to_numpy(), rare)
    return cands.loc[keep].reset_index(drop=True), int(len(rare))


def visitor_split(visitorid: np.ndarray, test_size: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, test) visitor id arrays from GroupShuffleSplit over unique visitors."""
    from sklearn.model_selection import GroupShuffleSplit

    visitors = arrays.unique(visitorid)
    if len(visitors) < 2:
        raise DataError(f"cannot split by visitor: only {len(visitors)} visitor(s) with cases")
    gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
    tr, te = next(gss.split(visitors, groups=visitors))
    train_v, test_v = visitors[tr], visitors[te]
    if arrays.intersect(train_v, test_v).size:
        raise DataError("visitor split is not disjoint")  # checked, not assumed
    return train_v, test_v


def split_by_visitor(
    cands: pd.DataFrame, test_size: float = TEST_SIZE, random_state: int = DEFAULT_SEED
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Train/test candidates split by visitor, with the disjointness and unseen-label checks."""
    is_test, info = holdout_mask(cands, test_size, random_state)
    return cands.loc[~is_test].reset_index(drop=True), cands.loc[is_test].reset_index(drop=True), info


def holdout_mask(
    cands: pd.DataFrame, test_size: float = TEST_SIZE, random_state: int = DEFAULT_SEED
) -> tuple[np.ndarray, dict[str, Any]]:
    """The split_by_visitor split as a mask over the candidate rows (True = test), and its info.

    A mask lets a caller take only the parts it needs: at RetailRocket scale a copy of the
    training rows is ~400 MB.
    """
    cases = case_table(cands)
    _, test_v = visitor_split(cases["visitorid"].to_numpy(), test_size, random_state)
    vis = cands["visitorid"].to_numpy()
    is_test = np.isin(vis, test_v)
    tr_vis, te_vis = arrays.unique(vis[~is_test]), arrays.unique(vis[is_test])
    overlap = arrays.intersect(tr_vis, te_vis).size
    if overlap:
        raise DataError(f"train and test share {overlap} visitors")
    case_test = np.isin(cases["visitorid"].to_numpy(), test_v)
    train_labels = arrays.unique(cases["y"].to_numpy()[~case_test])
    test_y = cases["y"].to_numpy()[case_test]
    unseen = int((~np.isin(test_y, train_labels)).sum())
    info = {
        "n_train_cases": int((~case_test).sum()),
        "n_test_cases": int(case_test.sum()),
        "train_visitors": int(len(tr_vis)),
        "test_visitors": int(len(te_vis)),
        "visitors": int(len(tr_vis) + len(te_vis)),
        "visitor_overlap": int(overlap),
        "disjoint": overlap == 0,
        "test_cases_label_unseen_in_train": unseen,
        "test_label_unseen_share": unseen / len(test_y) if len(test_y) else 0.0,
        "test_size": test_size,
        "random_state": random_state,
    }
    return is_test, info
