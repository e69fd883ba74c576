"""First-order Markov extension of Task 1: transitions, extra candidates, cross-fitted features.

Sentinels of the extra Markov candidates (categories not in the history H), set in add_markov:
cnt = share = is_last = tail_streak_if_last = 0; last_gap_min = the window in minutes (1440.0:
as if last seen at the very edge of the window); pos_from_end = lookback (100: one past the
deepest real position, lookback - 1); n_views = len(H) as for every candidate of the case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.base import arrays
from core.base.errors import DataError
from core.base.schema import LOOKBACK, MARKOV_FEATURE, MS_PER_MINUTE, WINDOW_MS
from core.ranking.cases import case_codes, case_table, rank_in_groups

# Folds (by visitor) of the cross-fitted Markov features of training rows.
MARKOV_FOLDS = 5


@dataclass
class MarkovModel:
    """First-order P(next category | last category of H), from (last-in-H, y) pairs of cases."""

    categories: np.ndarray  # sorted category ids seen as a previous or next category
    pair_key: np.ndarray  # sorted prev_code * n + next_code of observed transitions
    pair_count: np.ndarray  # counts aligned with pair_key
    row_total: np.ndarray  # transitions out of each category code
    top_next: np.ndarray  # next category ids sorted by (prev code, count desc, next id)
    top_count: np.ndarray  # counts aligned with top_next
    row_start: np.ndarray  # top_next[row_start[p]:row_start[p + 1]] are the targets of code p
    alpha: float = 0.0
    n_cases: int = 0

    def _codes(self, cats: np.ndarray) -> np.ndarray:
        """Category code per id, -1 when the model has never seen the category."""
        cats = np.asarray(cats, dtype=np.int64)
        if len(self.categories) == 0:
            return np.full(cats.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.categories, cats), len(self.categories) - 1)
        return np.where(self.categories[pos] == cats, pos, -1)

    def _denominator(self, prev_code: np.ndarray) -> np.ndarray:
        """Row total plus smoothing mass; 0 for an unknown previous category without smoothing."""
        total = np.where(prev_code >= 0, self.row_total[np.maximum(prev_code, 0)], 0)
        return total + self.alpha * len(self.categories)

    def prob(self, prev_cats: np.ndarray, cands_cats: np.ndarray) -> np.ndarray:
        """P(candidate | previous category) elementwise (0 for unseen previous w/o smoothing)."""
        n = len(self.categories)
        pc, cc = self._codes(prev_cats), self._codes(cands_cats)
        count = np.zeros(pc.shape, dtype=np.float64)
        if len(self.pair_key):
            key = np.where((pc >= 0) & (cc >= 0), pc * n + cc, -1)
            pos = np.minimum(np.searchsorted(self.pair_key, key), len(self.pair_key) - 1)
            hit = (key >= 0) & (self.pair_key[pos] == key)
            count[hit] = self.pair_count[pos[hit]]
        denom = self._denominator(pc)
        safe = np.where(denom > 0, denom, 1.0)
        return np.where(denom > 0, (count + self.alpha) / safe, 0.0)

    def top(self, last_cats: np.ndarray, n: int | np.ndarray) -> tuple[np.ndarray, ...]:
        """Top-n targets per query: (query index, category id, probability), best first.

        `n` may be one int or one int per query; ties by count are broken by category id.
        """
        last_cats = np.atleast_1d(np.asarray(last_cats, dtype=np.int64))
        pc = self._codes(last_cats)
        safe = np.maximum(pc, 0)
        start = np.where(pc >= 0, self.row_start[safe], 0)
        avail = np.where(pc >= 0, self.row_start[safe + 1] - self.row_start[safe], 0)
        take = np.minimum(avail, np.broadcast_to(np.asarray(n, dtype=np.int64), avail.shape))
        take = np.maximum(take, 0)
        query = np.repeat(np.arange(len(last_cats)), take)
        offset = np.arange(take.sum()) - np.repeat(np.cumsum(take) - take, take)
        src = np.repeat(start, take) + offset
        # take > 0 only for known categories, whose denominator is > 0
        prob = (self.top_count[src] + self.alpha) / self._denominator(pc)[query]
        return query, self.top_next[src], prob.astype(np.float64)


def fit_markov(cands_or_cases: pd.DataFrame, alpha: float = 0.0) -> MarkovModel:
    """Fit transitions from a candidate table (is_last rows) or a (prev_cat, y) case table."""
    df = cands_or_cases
    if {"prev_cat", "y"} <= set(df.columns):
        prev, nxt = df["prev_cat"].to_numpy(np.int64), df["y"].to_numpy(np.int64)
    elif {"is_last", "categoryid", "y"} <= set(df.columns):
        last = df["is_last"].to_numpy() == 1  # exactly one row per case (extras have is_last=0)
        prev = df["categoryid"].to_numpy(np.int64)[last]
        nxt = df["y"].to_numpy(np.int64)[last]
    else:
        raise DataError("fit_markov needs (prev_cat, y) or candidate columns (is_last, categoryid, y)")
    categories = arrays.unique(np.concatenate([prev, nxt]))
    n = len(categories)
    pc, nc = np.searchsorted(categories, prev), np.searchsorted(categories, nxt)
    pair_key, pair_count = np.unique(pc * n + nc, return_counts=True)
    p_code, n_code = pair_key // max(n, 1), pair_key % max(n, 1)
    order = np.lexsort((n_code, -pair_count, p_code))
    return MarkovModel(
        categories=categories,
        pair_key=pair_key,
        pair_count=pair_count.astype(np.int64),
        row_total=np.bincount(pc, minlength=n).astype(np.int64),
        top_next=categories[n_code[order]] if n else np.zeros(0, dtype=np.int64),
        top_count=pair_count[order].astype(np.int64),
        row_start=np.searchsorted(p_code[order], np.arange(n + 1)),
        alpha=float(alpha),
        n_cases=len(prev),
    )


def markov_arrays(
    cols: Mapping[str, np.ndarray],
    markov: MarkovModel,
    top_n: int = 0,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
) -> dict[str, np.ndarray]:
    """add_markov on candidate columns (numpy): all columns, `markov_prob` last."""
    codes, first = case_codes(np.asarray(cols["case_id"]))
    cat = np.asarray(cols["categoryid"], dtype=np.int64)
    is_last = np.asarray(cols["is_last"]) == 1
    last_cat = np.zeros(len(first), dtype=np.int64)
    last_cat[codes[is_last]] = cat[is_last]
    prob = markov.prob(last_cat[codes], cat)
    names = [c for c in cols if c != MARKOV_FEATURE]
    if top_n <= 0 or len(first) == 0:
        return {**{c: cols[c] for c in names}, MARKOV_FEATURE: prob}
    n_base = np.bincount(codes, minlength=len(first))
    # At most n_base of the top (top_n + n_base) targets are already in H, so this is enough.
    q, ext_cat, ext_prob = markov.top(last_cat, top_n + n_base)
    # Drop targets already in H: look up (case code, category) among the candidates' keys.
    span = int(max(cat.max(initial=0), ext_cat.max(initial=0))) + 1
    if len(first) * span >= 2**62:
        raise DataError("category ids too large for the Markov candidate keys")
    base_key = np.sort(codes * span + cat)
    ext_key = q * span + ext_cat
    pos = np.minimum(np.searchsorted(base_key, ext_key), len(base_key) - 1)
    new = base_key[pos] != ext_key
    q, ext_cat, ext_prob = q[new], ext_cat[new], ext_prob[new]
    keep = rank_in_groups(q) < top_n
    q, ext_cat, ext_prob = q[keep], ext_cat[keep], ext_prob[keep]
    src = first[q]  # case-level columns come from the case's first candidate row
    y = np.asarray(cols["y"], dtype=np.int64)[src]
    m = len(q)
    extra = {
        "categoryid": ext_cat,
        "cnt": np.zeros(m),
        "share": np.zeros(m),
        "is_last": np.zeros(m),
        "last_gap_min": np.full(m, window_ms / MS_PER_MINUTE),
        "pos_from_end": np.full(m, lookback),
        "tail_streak_if_last": np.zeros(m),
        "label": ext_cat == y,
        MARKOV_FEATURE: ext_prob,
    }
    # Stable sort by case code keeps each case's own candidates first, then its Markov extras.
    order = np.argsort(np.concatenate([codes, codes[src]]), kind="stable")
    out = {}
    for col in names + [MARKOV_FEATURE]:
        base = prob if col == MARKOV_FEATURE else np.asarray(cols[col])
        add = extra[col] if col in extra else base[src]
        out[col] = np.concatenate([base, add.astype(base.dtype)])[order]  # one column at a time
    return out


def add_markov(
    cands: pd.DataFrame,
    markov: MarkovModel,
    top_n: int = 0,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
) -> pd.DataFrame:
    """Add `markov_prob` to every candidate and up to top_n Markov targets not already in H.

    Extra candidates carry the sentinels documented at the top of this module; the case-level
    columns (visitorid, case_id, t_ref, n_views, y and any other) come from the case.
    """
    cols = {c: cands[c].to_numpy() for c in cands.columns}
    out = markov_arrays(cols, markov, top_n, lookback, window_ms)
    if top_n <= 0 or len(cands) == 0:
        same = cands.copy(deep=False)  # no extra rows: keep the index and the column order
        same[MARKOV_FEATURE] = out[MARKOV_FEATURE]
        return same
    return pd.DataFrame(out, copy=False)


def transition_pairs(cands: pd.DataFrame) -> pd.DataFrame:
    """(visitorid, prev_cat, y) per case, by case_id: the transition from H's last category to y."""
    cases = case_table(cands)
    return pd.DataFrame({"visitorid": cases["visitorid"], "prev_cat": cases["last_cat"], "y": cases["y"]})


def cross_fit_markov(
    pairs: pd.DataFrame,
    rows: pd.DataFrame,
    top_n: int,
    seed: int,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
    folds: int = MARKOV_FOLDS,
) -> pd.DataFrame:
    """Markov features of training `rows`, each visitor fold scored by a model fitted without its
    visitors' `pairs` (a case's own transition never feeds its own markov_prob).

    Rows come back grouped by fold, each fold in its input order.
    """
    visitors = arrays.unique(pairs["visitorid"].to_numpy())
    fold_of = np.random.default_rng(seed).permutation(visitors.size) % folds
    pair_fold = fold_of[np.searchsorted(visitors, pairs["visitorid"].to_numpy())]
    row_fold = fold_of[np.searchsorted(visitors, rows["visitorid"].to_numpy())]
    parts = []
    for f in range(folds):  # a handful of folds, each step vectorised
        inside = row_fold == f
        if inside.any():
            model = fit_markov(pairs.loc[pair_fold != f, ["prev_cat", "y"]])
            parts.append(add_markov(rows.loc[inside], model, top_n, lookback, window_ms))
    return pd.concat(parts, ignore_index=True)
