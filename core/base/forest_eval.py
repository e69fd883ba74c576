"""Tree ensembles evaluated for a few rows at a time, with exactly scikit-learn's results.

scikit-learn's forests call each tree through joblib and its input checks: about 25 µs of
overhead per tree, so over 1 ms for the 50-tree forest on 5 rows (the API's /rank) and 10 ms for the
200-tree isolation forest of /anomaly. Here every tree of a fitted forest is packed once into flat
node arrays, and all trees walk all rows together, one numpy step per tree level.

Identical by construction: the same float32 inputs compared with the same float64 thresholds
(NaN goes where the node's ``missing_go_to_left`` says, as in scikit-learn's ``Tree.apply``), the
same leaf values, summed tree by tree in the estimators' order (what scikit-learn's sequential
predict does) with the same final arithmetic. ``tests/test_forest_eval.py`` checks bit equality.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

# Above this many rows scikit-learn's own compiled loop is faster than a numpy step per level.
MAX_FAST_ROWS = 500


@dataclass(frozen=True)
class FlatForest:
    """Every tree's nodes in one set of arrays; node ids are global, leaves point to themselves."""

    roots: np.ndarray  # (n_trees,) global id of each tree's root
    children: np.ndarray  # node k's left child at 2k, right child at 2k + 1 (a leaf: itself, twice)
    feature: np.ndarray  # column of the input the node compares (a leaf: 0)
    threshold: np.ndarray  # x <= threshold goes left (float64, as scikit-learn compares)
    missing_left: np.ndarray  # where NaN goes
    depth: int  # the deepest tree's depth: steps that bring every row to its leaf


_cache: weakref.WeakKeyDictionary[Any, tuple[FlatForest, Any]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def flatten(trees: list[Any], features: list[np.ndarray] | None = None) -> FlatForest:
    """Pack fitted scikit-learn trees (``estimator.tree_``); ``features`` maps each tree's column
    numbers to the input's (a bagging ensemble's ``estimators_features_``), None for the identity."""
    lefts, rights, feats, thresholds, missing = [], [], [], [], []
    roots = np.zeros(len(trees), np.int64)
    offset = 0
    for k, tree in enumerate(trees):  # once per forest, over its trees
        t = tree.tree_
        ids = np.arange(t.node_count, dtype=np.int64)
        leaf = t.children_left < 0
        lefts.append(np.where(leaf, ids, t.children_left) + offset)
        rights.append(np.where(leaf, ids, t.children_right) + offset)
        f = np.where(leaf, 0, t.feature).astype(np.int64)
        feats.append(f if features is None else np.asarray(features[k], np.int64)[f])
        thresholds.append(np.asarray(t.threshold, np.float64))
        missing.append(np.asarray(t.missing_go_to_left, bool))
        roots[k] = offset
        offset += t.node_count
    return FlatForest(
        roots=roots,
        children=np.column_stack([np.concatenate(lefts), np.concatenate(rights)]).ravel(),
        feature=np.concatenate(feats),
        threshold=np.concatenate(thresholds),
        missing_left=np.concatenate(missing),
        depth=max(int(tree.tree_.max_depth) for tree in trees),
    )


def leaves(flat: FlatForest, X: np.ndarray) -> np.ndarray:
    """(n_trees, n_rows) global leaf id of every row in every tree, as ``Tree.apply`` finds it."""
    X = np.ascontiguousarray(X, dtype=np.float32).astype(np.float64)  # the float32 the trees see
    n, n_cols = X.shape
    flat_x = X.ravel()
    node = np.repeat(flat.roots, n)
    row_start = np.tile(np.arange(n, dtype=np.int64) * n_cols, len(flat.roots))
    has_nan = bool(np.isnan(flat_x).any())
    for _ in range(flat.depth):  # one step per tree level, all trees and rows at once
        x = flat_x[row_start + flat.feature[node]]
        if has_nan:
            go_right = np.where(np.isnan(x), ~flat.missing_left[node], x > flat.threshold[node])
        else:
            go_right = x > flat.threshold[node]  # not (x <= threshold), x being a number
        node = flat.children[2 * node + go_right]
    return node.reshape(len(flat.roots), n)


def _packed(estimator: Any, leaf_values: Any) -> tuple[FlatForest, Any]:
    """The estimator's packed trees and per-node values, built on first use."""
    with _cache_lock:
        hit = _cache.get(estimator)
    if hit is None:
        features = None
        if getattr(estimator, "_max_features", None) not in (None, estimator.n_features_in_):
            # A bagging ensemble on a subset of the columns (scikit-learn's subsample_features).
            features = estimator.estimators_features_
        trees = list(estimator.estimators_)
        hit = (flatten(trees, features), leaf_values(estimator))
        with _cache_lock:
            _cache[estimator] = hit
    return hit


def _positive_class_values(forest: Any) -> np.ndarray:
    """Per node, the class-1 fraction of a classifier tree's leaf (what its predict_proba gives)."""
    return np.concatenate([np.asarray(t.tree_.value[:, 0, 1], np.float64) for t in forest.estimators_])


def forest_positive_proba(forest: Any, X: np.ndarray) -> np.ndarray:
    """``forest.predict_proba(X)[:, 1]`` of a fitted binary RandomForestClassifier."""
    flat, values = _packed(forest, _positive_class_values)
    per_tree = values[leaves(flat, X)]
    # Tree by tree in order, from zero (scikit-learn's sequential accumulation), then the mean.
    total = np.add.accumulate(per_tree, axis=0)[-1] if len(per_tree) else np.zeros(len(X))
    return total / len(forest.estimators_)


def _path_terms(forest: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per node, the depth a row ending there adds (path length + average path length - 1), and
    the forest's normalising denominator."""
    from sklearn.ensemble._iforest import _average_path_length

    terms = np.concatenate(
        [
            np.asarray(d, np.float64) + np.asarray(a, np.float64) - 1.0
            for d, a in zip(forest._decision_path_lengths, forest._average_path_length_per_tree)
        ]
    )
    return terms, len(forest.estimators_) * _average_path_length([forest._max_samples])


def isolation_score_samples(forest: Any, X: np.ndarray) -> np.ndarray:
    """``forest.score_samples(X)`` of a fitted IsolationForest (lower = more abnormal)."""
    flat, (terms, denominator) = _packed(forest, _path_terms)
    per_tree = terms[leaves(flat, X)]
    depths = np.add.accumulate(per_tree, axis=0)[-1] if len(per_tree) else np.zeros(len(X))
    scores = 2 ** (-np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0))
    return -scores


def is_random_forest_classifier(estimator: Any) -> bool:
    """True for a fitted binary RandomForestClassifier (the one shape forest_positive_proba takes)."""
    from sklearn.ensemble import RandomForestClassifier

    return (
        type(estimator) is RandomForestClassifier
        and getattr(estimator, "n_outputs_", None) == 1
        and getattr(estimator, "n_classes_", None) == 2
    )
