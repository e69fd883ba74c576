"""Task 1: next-category ranking (spec §2) — candidates, rankers, metrics, Markov extension.

Everything is vectorised: the only Python loops run over history offsets (<= lookback),
chunks of cases (for memory) or the handful of rankers and features. rank() serves one request
through the same feature code as build_candidates, on numpy columns (pandas costs more than the
features at 100 views); reading a request's list of dicts is the one pass over its views.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController, threadpool_limits

from core.errors import DataError
from core.schema import (
    CANDIDATE_FEATURES,
    DEFAULT_SEED,
    LOOKBACK,
    MARKOV_FEATURE,
    MIN_LABEL_COUNT,
    MS_PER_MINUTE,
    TEST_SIZE,
    UNKNOWN_CATEGORY,
    WINDOW_MS,
)

logger = logging.getLogger(__name__)

CANDIDATE_COLUMNS: tuple[str, ...] = (
    ("visitorid", "case_id", "t_ref", "categoryid") + CANDIDATE_FEATURES + ("label", "y")
)
RANKERS: tuple[str, ...] = ("rule", "logreg", "hgb", "rf")
LEARNED_RANKERS: tuple[str, ...] = ("logreg", "hgb", "rf")
# Training rows are capped (a deterministic sample of whole cases) so the full build stays within
# its time budget at RetailRocket scale (measured on the demo generator at 2.76M events: the
# forest is the slow one, so it gets the smallest cap; accuracy is flat beyond these sizes).
TRAIN_ROW_CAPS: dict[str, int] = {"logreg": 1_000_000, "hgb": 500_000, "rf": 200_000}
TRAIN_ROW_CAP = TRAIN_ROW_CAPS["rf"]
# OpenMP/BLAS threads for fitting and scoring. On the shared 2-core machine the gradient boosting's
# OpenMP threads spin against other processes: 1 thread measured 5x faster than 2 under load.
# The forest parallelises with joblib threads (n_jobs=-1), which this does not limit.
ESTIMATOR_THREADS = 1
DATASET_SAMPLE_ROWS = 200_000
MAX_VIEWS = 1_000
# Pairs (case, history view) materialised at once; bounds the memory of build_candidates.
PAIR_CHUNK = 4_000_000
SCORE_CHUNK = 1_000_000
# The forest predicts with joblib threads (n_jobs=-1) only from this many rows: below it, threads
# cost more than they save (100 views: 11.5 ms vs 1.6 ms sequential) and make the sum over trees,
# hence the last bit of a score, depend on thread timing. Sequential scores are deterministic.
PARALLEL_MIN_ROWS = 10_000
FOREST_JOBS = -1
MARKOV_FOLDS = 5

# Sentinels of the extra Markov candidates (categories not in the history H), set in add_markov:
# cnt = share = is_last = tail_streak_if_last = 0; last_gap_min = the window in minutes (1440.0:
# as if last seen at the very edge of the window); pos_from_end = lookback (100: one past the
# deepest real position, lookback - 1); n_views = len(H) as for every candidate of the case.


# ----------------------------------------------------------------------------------------------
# Candidates
# ----------------------------------------------------------------------------------------------


def _sorted_views(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known-category view rows as (visitorid, timestamp, categoryid) arrays, stably sorted."""
    missing = [c for c in ("timestamp", "visitorid", "event", "categoryid") if c not in events]
    if missing:
        raise DataError(f"events table: missing column(s) {missing}")
    keep = (events["event"] == "view").to_numpy(dtype=bool) & (
        events["categoryid"].to_numpy() != UNKNOWN_CATEGORY
    )
    vis = events["visitorid"].to_numpy(dtype=np.int64)[keep]
    ts = events["timestamp"].to_numpy(dtype=np.int64)[keep]
    cat = events["categoryid"].to_numpy(dtype=np.int64)[keep]
    # lexsort is stable: ties on (visitorid, timestamp) keep file order, as the spec requires.
    order = np.lexsort((ts, vis))
    return vis[order], ts[order], cat[order]


def _history_lengths(
    vis: np.ndarray,
    ts: np.ndarray,
    cat: np.ndarray,
    lookback: int,
    window_ms: int,
    case_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per sorted view: len(H) and the streak of the last category of H at its end.

    With `case_mask`, only the masked views are computed (the others get 0): rank() asks for one.
    """
    n = len(ts)
    idx = np.arange(n)
    new_visitor = np.ones(n, dtype=bool)
    new_visitor[1:] = vis[1:] != vis[:-1]
    vstart = np.maximum.accumulate(np.where(new_visitor, idx, 0))
    hist_len = np.zeros(n, dtype=np.int32)
    # Views of one visitor are time-sorted, so "view i-k is in H" fails for all larger k once it
    # fails: keep shrinking the active set, one vectorised step per offset k.
    active = idx[~new_visitor if case_mask is None else ~new_visitor & case_mask]
    for k in range(1, lookback + 1):
        j = active - k
        ok = (j >= vstart[active]) & (ts[j] >= ts[active] - window_ms)
        active = active[ok]
        if active.size == 0:
            break
        hist_len[active] = k
    streak = np.zeros(n, dtype=np.int32)
    active = idx[hist_len > 0]
    last_cat = cat[active - 1]
    for k in range(1, lookback + 1):
        j = active - k
        ok = (hist_len[active] >= k) & (cat[j] == last_cat)
        active, last_cat = active[ok], last_cat[ok]
        if active.size == 0:
            break
        streak[active] = k
    return hist_len, streak


def _chunk_bounds(lens: np.ndarray) -> np.ndarray:
    """Case-index boundaries so that each chunk holds at most ~PAIR_CHUNK (case, view) pairs."""
    ends = np.cumsum(lens)
    total = int(ends[-1]) if len(ends) else 0
    cuts = np.searchsorted(ends, np.arange(PAIR_CHUNK, total, PAIR_CHUNK))
    return np.unique(np.concatenate([[0], cuts, [len(lens)]]))


def _aggregate_pairs(
    cases: np.ndarray, lens: np.ndarray, cat_code: np.ndarray, n_codes: int, kbits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(local case index, category code, cnt, k_min) per distinct (case, category).

    Pair (case i, history view j = i - k), k = 1 being the last view of H. One sort of the
    combined int64 key (local case, category, k) groups the pairs; the first pair of a group
    has the smallest k, i.e. the latest view of the category.
    """
    total = int(lens.sum())
    before = np.cumsum(lens) - lens
    step = np.arange(1, total + 1, dtype=np.int64)
    j = np.repeat(cases + before, lens) - step  # = i - k
    key = cat_code[j]
    del j
    key <<= kbits
    # local * n_codes << kbits + k, with k = step - before (all folded into one repeat)
    local_base = (np.arange(len(cases), dtype=np.int64) * n_codes << kbits) - before
    key += np.repeat(local_base, lens)
    key += step
    del step
    key.sort()
    grp = key >> kbits
    starts = np.flatnonzero(np.concatenate([[True], grp[1:] != grp[:-1]]))
    g = grp[starts]
    del grp
    case_local = g // n_codes
    cnt = np.diff(np.append(starts, total)).astype(np.int32)
    kmin = (key[starts] & ((1 << kbits) - 1)).astype(np.int32)
    return case_local, g - case_local * n_codes, cnt, kmin


_COLUMN_DTYPES: dict[str, type] = {
    "visitorid": np.int64, "case_id": np.int64, "t_ref": np.int64, "categoryid": np.int64,
    "cnt": np.int32, "share": np.float64, "is_last": np.int8, "last_gap_min": np.float64,
    "pos_from_end": np.int32, "tail_streak_if_last": np.int32, "n_views": np.int32,
    "label": np.int8, "y": np.int64,
}


def _candidate_arrays(
    vis: np.ndarray,
    ts: np.ndarray,
    cat: np.ndarray,
    lookback: int,
    window_ms: int,
    case_mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Candidate columns (CANDIDATE_COLUMNS, numpy) from views sorted by (visitorid, timestamp,
    file order): the one implementation of the spec §2 features, for training and rank()."""
    if lookback < 1 or window_ms < 0:
        raise ValueError("lookback must be >= 1 and window_ms >= 0")
    hist_len, streak = _history_lengths(vis, ts, cat, lookback, window_ms, case_mask)
    is_case = hist_len > 0
    cases = np.flatnonzero(is_case)
    lens = hist_len[cases].astype(np.int64)
    cat_values, cat_code = np.unique(cat, return_inverse=True)
    n_codes, kbits = max(len(cat_values), 1), int(lookback).bit_length()
    bounds = _chunk_bounds(lens)
    if (int(np.diff(bounds).max(initial=1)) * n_codes) << kbits >= 2**62:
        raise DataError("too many categories to build candidate keys")  # not at real scales
    # Rows <= pairs, so the columns are allocated at that bound: pages never written are never
    # resident, and the final resize shrinks in place. Peak memory ~ output + one chunk.
    bound = int(lens.sum())
    out = {c: np.empty(bound, dtype=d) for c, d in _COLUMN_DTYPES.items()}
    n = 0
    for a, b in zip(bounds[:-1], bounds[1:]):  # chunks of cases, for memory
        case_local, code, cnt, kmin = _aggregate_pairs(
            cases[a:b], lens[a:b], cat_code, n_codes, kbits
        )
        m = len(cnt)
        row = {c: arr[n : n + m] for c, arr in out.items()}
        row_case = cases[a:b][case_local]
        np.add(case_local, a, out=row["case_id"])
        np.take(vis, row_case, out=row["visitorid"], mode="clip")
        np.take(cat_values, code, out=row["categoryid"], mode="clip")
        np.take(cat, row_case, out=row["y"], mode="clip")
        np.take(hist_len, row_case, out=row["n_views"], mode="clip")
        is_last = kmin == 1
        row["is_last"][:] = is_last
        row["tail_streak_if_last"][:] = np.where(is_last, streak[row_case], 0)
        row_case -= 1
        np.take(ts, row_case, out=row["t_ref"], mode="clip")  # t_ref: the view just before the case
        row_case += 1 - kmin
        row["last_gap_min"][:] = row["t_ref"] - ts[row_case]  # row_case is now the latest view
        row["last_gap_min"] /= MS_PER_MINUTE
        row["cnt"][:] = cnt
        np.divide(cnt, row["n_views"], out=row["share"])
        np.subtract(kmin, 1, out=row["pos_from_end"])
        np.equal(row["categoryid"], row["y"], out=row["label"], casting="unsafe")
        n += m
        del row, row_case, case_local, code, cnt, kmin, is_last
    for arr in out.values():
        arr.resize(n, refcheck=False)  # in place: no view of these arrays exists
    return out


def _candidates_from_sorted(
    vis: np.ndarray,
    ts: np.ndarray,
    cat: np.ndarray,
    lookback: int,
    window_ms: int,
    case_mask: np.ndarray | None = None,
) -> pd.DataFrame:
    """Candidate table from views already sorted by (visitorid, timestamp, file order)."""
    return pd.DataFrame(
        _candidate_arrays(vis, ts, cat, lookback, window_ms, case_mask), copy=False
    )


def build_candidates(
    events: pd.DataFrame,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
    markov: "MarkovModel | None" = None,
    markov_top_n: int = 0,
) -> pd.DataFrame:
    """One row per (case, candidate category) with the 7 spec features, label and y (spec §2)."""
    t0 = time.perf_counter()
    vis, ts, cat = _sorted_views(events)
    cands = _candidates_from_sorted(vis, ts, cat, lookback, window_ms)
    logger.info(
        "build_candidates: %d views -> %d cases, %d candidate rows in %.1fs",
        len(ts), int(cands["case_id"].iloc[-1]) + 1 if len(cands) else 0, len(cands),
        time.perf_counter() - t0,
    )
    if markov is not None:
        cands = add_markov(cands, markov, markov_top_n, lookback=lookback, window_ms=window_ms)
    return cands


# ----------------------------------------------------------------------------------------------
# Markov extension
# ----------------------------------------------------------------------------------------------


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
    categories = np.unique(np.concatenate([prev, nxt]))
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


def _rank_in_groups(group: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal consecutive `group` values."""
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    return np.arange(len(group)) - np.repeat(starts, np.diff(np.append(starts, len(group))))


def _case_codes(case_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense case code per row and the first row of each code (order of first appearance)."""
    codes, _ = pd.factorize(case_id, sort=False)
    running = np.maximum.accumulate(codes) if len(codes) else codes
    first = np.ones(len(codes), dtype=bool)
    first[1:] = running[1:] > running[:-1]
    return codes, np.flatnonzero(first)


def _markov_arrays(
    cols: Mapping[str, np.ndarray],
    markov: MarkovModel,
    top_n: int = 0,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
) -> dict[str, np.ndarray]:
    """add_markov on candidate columns (numpy): all columns, `markov_prob` last."""
    codes, first = _case_codes(np.asarray(cols["case_id"]))
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
    keep = _rank_in_groups(q) < top_n
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
    out = _markov_arrays(cols, markov, top_n, lookback, window_ms)
    if top_n <= 0 or len(cands) == 0:
        same = cands.copy(deep=False)  # no extra rows: keep the index and the column order
        same[MARKOV_FEATURE] = out[MARKOV_FEATURE]
        return same
    return pd.DataFrame(out, copy=False)


# ----------------------------------------------------------------------------------------------
# Rare labels, split
# ----------------------------------------------------------------------------------------------


def _case_table(cands: pd.DataFrame) -> pd.DataFrame:
    """One row per case: case_id, visitorid, y (from each case's first candidate row)."""
    _, first = _case_codes(cands["case_id"].to_numpy())
    return pd.DataFrame(
        {
            "case_id": cands["case_id"].to_numpy()[first],
            "visitorid": cands["visitorid"].to_numpy()[first],
            "y": cands["y"].to_numpy()[first],
        }
    )


def drop_rare_labels(
    cands: pd.DataFrame, min_count: int = MIN_LABEL_COUNT
) -> tuple[pd.DataFrame, int]:
    """Drop cases whose label occurs in fewer than min_count cases; return (cands, n dropped)."""
    cases = _case_table(cands)
    label_count = cases["y"].map(cases["y"].value_counts())
    rare = cases.loc[label_count.to_numpy() < min_count, "case_id"].to_numpy()
    if len(rare) == 0:
        return cands, 0
    keep = ~np.isin(cands["case_id"].to_numpy(), rare)
    return cands.loc[keep].reset_index(drop=True), int(len(rare))


def visitor_split(
    visitorid: np.ndarray, test_size: float, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, test) visitor id arrays from GroupShuffleSplit over unique visitors."""
    from sklearn.model_selection import GroupShuffleSplit

    visitors = np.unique(visitorid)
    if len(visitors) < 2:
        raise DataError(f"cannot split by visitor: only {len(visitors)} visitor(s) with cases")
    gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
    tr, te = next(gss.split(visitors, groups=visitors))
    train_v, test_v = visitors[tr], visitors[te]
    if np.intersect1d(train_v, test_v).size:
        raise DataError("visitor split is not disjoint")  # checked, not assumed (spec §2)
    return train_v, test_v


def split_by_visitor(
    cands: pd.DataFrame, test_size: float = TEST_SIZE, random_state: int = DEFAULT_SEED
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Train/test candidates split by visitor, with the disjointness and unseen-label checks."""
    cases = _case_table(cands)
    _, test_v = visitor_split(cases["visitorid"].to_numpy(), test_size, random_state)
    is_test = np.isin(cands["visitorid"].to_numpy(), test_v)
    train = cands.loc[~is_test].reset_index(drop=True)
    test = cands.loc[is_test].reset_index(drop=True)
    tr_vis, te_vis = np.unique(train["visitorid"]), np.unique(test["visitorid"])
    overlap = np.intersect1d(tr_vis, te_vis).size
    if overlap:
        raise DataError(f"train and test share {overlap} visitors")
    case_test = np.isin(cases["visitorid"].to_numpy(), test_v)
    train_labels = np.unique(cases["y"].to_numpy()[~case_test])
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
    return train, test, info


# ----------------------------------------------------------------------------------------------
# Rankers and metrics
# ----------------------------------------------------------------------------------------------


# Candidates: a DataFrame, or the dict of numpy columns rank() builds (no pandas per request).
Candidates = pd.DataFrame | Mapping[str, np.ndarray]


def rule_scores(cands: Candidates) -> np.ndarray:
    """Count + recency: cnt desc, ties by pos_from_end asc, as one strictly consistent score."""
    pos = np.asarray(cands["pos_from_end"], dtype=np.float64)
    # pos_from_end <= lookback (the Markov sentinel), so pos / (max + 1) < 1 never beats a count.
    denom = max(float(pos.max(initial=0.0)), float(LOOKBACK)) + 1.0
    return np.asarray(cands["cnt"], dtype=np.float64) - pos / denom


def _order_within_cases(cands: Candidates, scores: np.ndarray) -> np.ndarray:
    """Row order by (case_id, score desc, pos_from_end asc, categoryid asc)."""
    return np.lexsort(
        (
            np.asarray(cands["categoryid"]),
            np.asarray(cands["pos_from_end"]),
            -np.asarray(scores, dtype=np.float64),
            np.asarray(cands["case_id"]),
        )
    )


def case_ranks_by_score(cands: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
    """0-based rank of every row within its case (deterministic tie-break)."""
    order = _order_within_cases(cands, scores)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = _rank_in_groups(cands["case_id"].to_numpy()[order])
    return ranks


def ranking_metrics(cands: pd.DataFrame, scores: np.ndarray) -> dict[str, Any]:
    """coverage, top1/top3 (covered cases), top1_all/top3_all (all cases), with case counts."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(cands):
        raise ValueError("scores must have one value per candidate row")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n_cases = int(pd.unique(cands["case_id"].to_numpy()).size) if len(cands) else 0
    label = cands["label"].to_numpy() == 1
    ranks = case_ranks_by_score(cands, scores)[label] if len(cands) else np.zeros(0, dtype=np.int64)
    n_covered = int(label.sum())  # candidates are distinct, so <= one label row per case
    hit1, hit3 = int((ranks == 0).sum()), int((ranks < 3).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "coverage": ratio(n_covered, n_cases),
        "top1": ratio(hit1, n_covered),
        "top3": ratio(hit3, n_covered),
        "top1_all": ratio(hit1, n_cases),
        "top3_all": ratio(hit3, n_cases),
        "n_cases": n_cases,
        "n_covered": n_covered,
        "n_top1": hit1,
        "n_top3": hit3,
    }


def make_estimator(name: str, seed: int = DEFAULT_SEED):
    """The scikit-learn estimator of a learned ranker (fixed random_state)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logreg":
        return make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed)
        )
    if name == "hgb":
        return HistGradientBoostingClassifier(random_state=seed)
    if name == "rf":
        # max_samples: each tree sees a 50% bootstrap, halving fit time for no measured loss
        return RandomForestClassifier(
            n_estimators=100, max_depth=12, min_samples_leaf=20, max_samples=0.5, n_jobs=-1,
            random_state=seed,
        )
    raise ValueError(f"unknown learned ranker {name!r}; expected one of {LEARNED_RANKERS}")


@dataclass
class RankingModel:
    """A ranker plus everything needed to rebuild its candidates at prediction time."""

    name: str
    estimator: Any = None  # None for "rule" and "markov"
    features: tuple[str, ...] = CANDIDATE_FEATURES
    markov: MarkovModel | None = None
    markov_top_n: int = 0
    lookback: int = LOOKBACK
    window_ms: int = WINDOW_MS
    trained_on: str = ""

    def score(self, cands: Candidates) -> np.ndarray:
        """Higher = more likely the next category; one score per candidate row."""
        if self.name == "rule":
            return rule_scores(cands)
        if self.name == "markov":
            return np.asarray(cands[MARKOV_FEATURE], dtype=np.float64)
        cols = [np.asarray(cands[f]) for f in self.features]
        n = len(cols[0]) if cols else 0
        est = _with_n_jobs(self.estimator, FOREST_JOBS if n >= PARALLEL_MIN_ROWS else 1)
        with _threadpools().limit(limits=ESTIMATOR_THREADS):
            parts = [  # chunks of rows bound the memory of predict_proba
                est.predict_proba(_feature_matrix(cols, a, min(a + SCORE_CHUNK, n)))[:, 1]
                for a in range(0, n, SCORE_CHUNK)
            ]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def _feature_matrix(cols: Sequence[np.ndarray], a: int, b: int) -> np.ndarray:
    """Rows a:b of the feature columns as float32, laid out as DataFrame.to_numpy gives it."""
    # Column-major, each column cast straight to float32, exactly as pandas interleaves blocks:
    # the same layout means the same BLAS path and bit-identical scores in both callers.
    X = np.empty((len(cols), b - a), dtype=np.float32)
    for j, col in enumerate(cols):  # a handful of features
        X[j] = col[a:b]
    return X.T


def _with_n_jobs(estimator: Any, n_jobs: int) -> Any:
    """The estimator predicting with n_jobs joblib workers (a shallow copy; the model is shared)."""
    if getattr(estimator, "n_jobs", None) in (None, n_jobs) or not hasattr(estimator, "estimators_"):
        return estimator  # no joblib parallelism to set (HGB, pipelines) or already as wanted
    est = copy.copy(estimator)  # not set in place: concurrent requests share the model
    est.n_jobs = n_jobs
    return est


_THREADPOOLS: ThreadpoolController | None = None


def _threadpools() -> ThreadpoolController:
    """OpenMP/BLAS pools of the process, found once: entering threadpool_limits() scans the
    loaded libraries on every call (0.6-3.9 ms per request); limiting a cached controller ~10 us."""
    global _THREADPOOLS
    if _THREADPOOLS is None:  # first score: numpy and scikit-learn's OpenMP are loaded by now
        _THREADPOOLS = ThreadpoolController()
    return _THREADPOOLS


def cap_by_case(cands: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """Deterministic sample of whole cases with at most `cap` rows (at least one case)."""
    if len(cands) <= cap:
        return cands
    codes, _ = _case_codes(cands["case_id"].to_numpy())
    sizes = np.bincount(codes)
    perm = np.random.default_rng(seed).permutation(len(sizes))
    n_keep = max(int(np.searchsorted(np.cumsum(sizes[perm]), cap, side="right")), 1)
    chosen = np.zeros(len(sizes), dtype=bool)
    chosen[perm[:n_keep]] = True
    return cands.loc[chosen[codes]]


def fit_ranker(
    name: str,
    train: pd.DataFrame,
    features: Sequence[str] = CANDIDATE_FEATURES,
    seed: int = DEFAULT_SEED,
    markov: MarkovModel | None = None,
    markov_top_n: int = 0,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
    source: str = "events",
) -> RankingModel:
    """Fit one ranker on candidate rows (target `label`); rule/markov need no fitting."""
    n_cases = int(pd.unique(train["case_id"].to_numpy()).size)
    common = dict(
        markov=markov, markov_top_n=markov_top_n, lookback=lookback, window_ms=window_ms
    )
    if name in ("rule", "markov"):
        feats = ("cnt", "pos_from_end") if name == "rule" else (MARKOV_FEATURE,)
        return RankingModel(
            name, None, feats, trained_on=f"{source}, {n_cases} train cases (no fitting)", **common
        )
    rows = cap_by_case(train, TRAIN_ROW_CAPS[name], seed)
    y = rows["label"].to_numpy()
    if np.unique(y).size < 2:
        raise DataError(f"cannot train {name}: training rows have a single label class")
    est = make_estimator(name, seed)
    with threadpool_limits(ESTIMATOR_THREADS):
        est.fit(rows[list(features)].to_numpy(np.float32), y)
    if getattr(est, "n_jobs", None) is not None:
        est.n_jobs = 1  # stored sequential (deterministic); score() uses threads for big batches
    used = int(pd.unique(rows["case_id"].to_numpy()).size)
    trained_on = f"{source}, {used} of {n_cases} train cases ({len(rows)} candidate rows)"
    return RankingModel(name, est, tuple(features), trained_on=trained_on, **common)


# ----------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------


@dataclass
class Task1Result:
    """Everything Task 1 reports: per-ranker metrics, the validation choice and the best model."""

    best_model: RankingModel
    metrics: pd.DataFrame  # ranker, split, coverage, top1, top3, top1_all, top3_all, n_cases, ...
    chosen_ranker: str
    chosen_by: str
    leakage: dict[str, Any]
    n_cases: int
    n_cases_dropped_rare: int
    n_candidate_rows: int
    dataset_sample: pd.DataFrame
    dataset_is_sample: bool
    timings: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def info(self) -> dict[str, Any]:
        """JSON-safe facts of the run (no tables, no estimator)."""
        return {
            "chosen_ranker": self.chosen_ranker,
            "chosen_by": self.chosen_by,
            "trained_on": self.best_model.trained_on,
            "n_cases": self.n_cases,
            "n_cases_dropped_rare": self.n_cases_dropped_rare,
            "n_candidate_rows": self.n_candidate_rows,
            "leakage": self.leakage,
            "dataset_is_sample": self.dataset_is_sample,
            "dataset_rows": int(len(self.dataset_sample)),
            "timings_s": self.timings,
            "config": self.config,
        }


def _with_markov(
    train: pd.DataFrame,
    others: Iterable[pd.DataFrame],
    top_n: int,
    seed: int,
    lookback: int,
    window_ms: int,
) -> tuple[pd.DataFrame, list[pd.DataFrame], MarkovModel]:
    """Markov features: cross-fitted on `train` (no own-label leak), full-train model elsewhere.

    Train rows come back grouped by fold (each fold in case order); no consumer needs case order.
    """
    last = train["is_last"].to_numpy() == 1  # one (last category of H, y) pair per case
    pairs = pd.DataFrame({"prev_cat": train["categoryid"].to_numpy()[last],
                          "y": train["y"].to_numpy()[last]})
    visitors = np.unique(train["visitorid"].to_numpy())
    fold_of = np.random.default_rng(seed).permutation(len(visitors)) % MARKOV_FOLDS
    row_fold = fold_of[np.searchsorted(visitors, train["visitorid"].to_numpy())]
    pair_fold = row_fold[last]
    parts = []
    for f in range(MARKOV_FOLDS):  # loop over a handful of folds, each step vectorised
        inside = row_fold == f
        if inside.any():
            fold_model = fit_markov(pairs.loc[pair_fold != f])
            parts.append(add_markov(train.loc[inside], fold_model, top_n, lookback, window_ms))
    markov = fit_markov(pairs)
    others_aug = [add_markov(o, markov, top_n, lookback, window_ms) for o in others]
    return pd.concat(parts, ignore_index=True), others_aug, markov


def _dataset_sample(
    cands: pd.DataFrame, test_visitors: np.ndarray, seed: int
) -> tuple[pd.DataFrame, bool]:
    """Deterministic case sample (<= DATASET_SAMPLE_ROWS rows) with a split column."""
    sample = cap_by_case(cands, DATASET_SAMPLE_ROWS, seed)
    is_sample = len(sample) < len(cands)
    sample = sample.reset_index(drop=True)
    sample["split"] = np.where(
        np.isin(sample["visitorid"].to_numpy(), test_visitors), "test", "train"
    )
    sample.attrs["is_sample"] = is_sample
    sample.attrs["rows_total"] = int(len(cands))
    return sample, is_sample


def train_and_evaluate(
    events: pd.DataFrame,
    seed: int = DEFAULT_SEED,
    markov_top_n: int = 0,
    rankers: Sequence[str] = RANKERS,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
    min_count: int = MIN_LABEL_COUNT,
    source: str = "events",
) -> Task1Result:
    """Candidates -> rare-label drop -> visitor split -> validation choice -> test report."""
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[stage] = round(now - t, 3)
        logger.info("task1 %s: %.2fs", stage, now - t)
        t = now

    unknown = [r for r in rankers if r not in ("rule", "markov") + LEARNED_RANKERS]
    if unknown or not rankers:
        raise ValueError(f"unknown rankers {unknown}; expected some of rule, markov, {LEARNED_RANKERS}")
    use_markov = markov_top_n > 0 or "markov" in rankers
    cands = build_candidates(events, lookback, window_ms)
    n_cases_all = int(cands["case_id"].nunique()) if len(cands) else 0
    lap("candidates")
    cands, n_dropped = drop_rare_labels(cands, min_count)
    if cands.empty:
        raise DataError("no ranking cases left after dropping rare labels")
    lap("drop_rare_labels")
    train, test, leakage = split_by_visitor(cands, TEST_SIZE, seed)
    n_rows = int(len(cands))
    sample, is_sample = _dataset_sample(cands, np.unique(test["visitorid"]), seed)
    del cands  # train and test hold every row now
    features = CANDIDATE_FEATURES
    markov: MarkovModel | None = None
    top_n = markov_top_n if use_markov else 0
    if use_markov:
        # Train rows get cross-fitted Markov features (folds by visitor: a case's own label never
        # enters its features), test rows the model fitted on all of train. Validation rows are
        # train rows, so they are out-of-fold too.
        features = CANDIDATE_FEATURES + (MARKOV_FEATURE,)
        train, (test,), markov = _with_markov(train, [test], top_n, seed, lookback, window_ms)
        lap("markov")
    fit_v, val_v = visitor_split(_case_table(train)["visitorid"].to_numpy(), TEST_SIZE, seed + 1)
    in_val = np.isin(train["visitorid"].to_numpy(), val_v)
    fit_part = train.loc[~in_val].reset_index(drop=True)
    val_part = train.loc[in_val].reset_index(drop=True)
    leakage["validation_visitors"] = int(len(val_v))
    leakage["validation_disjoint_from_test"] = bool(
        np.intersect1d(val_v, np.unique(test["visitorid"])).size == 0
    )
    lap("split")


    results: dict[tuple[str, str], dict[str, Any]] = {}
    fit_on = "train minus validation visitors"
    for name in rankers:  # a handful of rankers
        model = fit_ranker(name, fit_part, features, seed, markov, top_n, lookback, window_ms,
                           source)
        for split, part in (("validation", val_part), ("test", test)):
            results[name, split] = {"ranker": name, "split": split, "fit_on": fit_on,
                                    **ranking_metrics(part, model.score(part))}
        lap(f"{name}: fit, score validation and test")
    # Choice on validation only; ties keep the earlier (simpler) ranker in `rankers` order.
    val_top1 = {r: results[r, "validation"]["top1_all"] for r in rankers}
    best_name = max(rankers, key=lambda r: (val_top1[r], -list(rankers).index(r)))
    # The winner is refitted on the full train; the others keep their fit-part models (with the
    # row caps binding, both fits see the same number of rows). The table says which is which.
    best = fit_ranker(best_name, train, features, seed, markov, top_n, lookback, window_ms, source)
    results[best_name, "test"] = {"ranker": best_name, "split": "test", "fit_on": "train",
                                  **ranking_metrics(test, best.score(test))}
    metrics = pd.DataFrame([results[r, sp] for r in rankers for sp in ("validation", "test")])
    lap(f"{best_name}: refit on train, score test")
    logger.info("task1 chosen ranker %s (validation top1_all %.4f)", best_name, val_top1[best_name])
    return Task1Result(
        best_model=best,
        metrics=metrics,
        chosen_ranker=best_name,
        chosen_by="validation top1_all (visitor split inside train; test never used)",
        leakage=leakage,
        n_cases=n_cases_all,
        n_cases_dropped_rare=n_dropped,
        n_candidate_rows=n_rows,
        dataset_sample=sample,
        dataset_is_sample=is_sample,
        timings=timings,
        config={
            "seed": seed,
            "lookback": lookback,
            "window_ms": window_ms,
            "min_count": min_count,
            "markov_top_n": markov_top_n,
            "rankers": list(rankers),
            "features": list(features),
            "train_row_caps": dict(TRAIN_ROW_CAPS),
            "test_size": TEST_SIZE,
        },
    )


# ----------------------------------------------------------------------------------------------
# Single prediction entry point
# ----------------------------------------------------------------------------------------------


@dataclass
class RankResult:
    """Ranking of the next category for one history of views."""

    ranker: str
    fallback_reason: str | None
    ranking: pd.DataFrame  # categoryid, score, rank (1 = best) + candidate features
    n_history_views: int


def _row_problem(values: pd.Series, col: str) -> pd.Series:
    """Per-row problem text for one integer column ('' when fine)."""
    s = values
    problems = pd.Series("", index=s.index, dtype=object)
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        return pd.Series(f"{col} must be int milliseconds, not a datetime", index=s.index)
    is_bool = s.map(lambda v: isinstance(v, (bool, np.bool_)))
    missing = s.isna()
    num = pd.to_numeric(s.where(~is_bool), errors="coerce")
    not_num = num.isna() & ~missing
    numf = num.astype(np.float64)
    frac = ~not_num & ~missing & ((numf % 1 != 0) | ~np.isfinite(numf))
    big = ~not_num & ~missing & ~frac & (numf.abs() >= 2**63)
    neg = ~not_num & ~missing & ~frac & (numf < 0)
    problems[neg] = f"{col} is negative"
    if col == "categoryid":
        problems[numf == UNKNOWN_CATEGORY] = (
            "categoryid is -1 (unknown category); drop unknown-category views before ranking"
        )
    problems[big] = f"{col} is out of the int64 range"
    problems[frac] = f"{col} is not an integer"
    problems[not_num] = f"{col} is not a number"
    if col != "itemid":  # itemid is optional, also per row
        problems[missing] = f"{col} is missing"
    shown = s.astype(str).str.slice(0, 40)
    return problems.where(problems == "", problems + " (value " + shown + ")")


VIEW_COLUMNS: tuple[str, ...] = ("timestamp", "categoryid", "itemid")


class CheckedViews(NamedTuple):
    """Validated views as int64 numpy columns, in input order (itemid None when not given)."""

    timestamp: np.ndarray
    categoryid: np.ndarray
    itemid: np.ndarray | None  # 0 where absent
    itemid_absent: np.ndarray | None  # bool, True where the view has no itemid

    def frame(self) -> pd.DataFrame:
        """timestamp, categoryid (int64)[, itemid (nullable Int64)]."""
        out = pd.DataFrame({"timestamp": self.timestamp, "categoryid": self.categoryid})
        if self.itemid is not None:
            out["itemid"] = pd.arrays.IntegerArray(self.itemid, self.itemid_absent)
        return out


def _clean_ints(values: Any, optional: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Fast path: (int64 values, absent mask) when every value is a non-negative int (or, when
    optional, None); None sends the column to the row-by-row checks that name the bad row."""
    if isinstance(values, pd.Series):
        if not (isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu"):
            return None
        arr = values.to_numpy()
        if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
            return None
        arr = arr.astype(np.int64, copy=False)
        absent = np.zeros(len(arr), dtype=bool)
    elif isinstance(values, list):
        types = set(map(type, values))
        has_none = optional and type(None) in types
        if has_none:
            types.discard(type(None))
        # exact types: bool is an int subclass but not a number here; floats go the slow way
        if not all(t is int or issubclass(t, np.integer) for t in types):
            return None
        absent = np.array([v is None for v in values]) if has_none else np.zeros(len(values), bool)
        if has_none:
            values = [0 if v is None else v for v in values]
        try:
            arr = np.array(values, dtype=np.int64)
        except (OverflowError, ValueError, TypeError):  # e.g. beyond int64: the slow path says so
            return None
    else:
        return None  # e.g. a duplicated column name
    return (arr, absent) if arr.min(initial=0) >= 0 else None


def _checked_views(views: pd.DataFrame | list[dict] | Any) -> CheckedViews:
    """Views checked column-wise with numpy; only a failing column is checked row by row."""
    if isinstance(views, pd.DataFrame):
        df: pd.DataFrame | None = views.reset_index(drop=True)
        n, names = len(df), set(df.columns)

        def column(c: str) -> Any:
            return df[c]
    elif isinstance(views, (list, tuple)):
        bad = [i for i, v in enumerate(views) if not isinstance(v, dict)]
        if bad:
            raise DataError(f"views row {bad[0]} (0-based): expected a dict, got {type(views[bad[0]]).__name__}")
        df, n, names = None, len(views), set().union(*views)

        def column(c: str) -> Any:
            return [v.get(c) for v in views]  # absent key = missing, as in a DataFrame
    else:
        raise DataError(f"views must be a DataFrame or a list of dicts, got {type(views).__name__}")
    if n == 0:
        raise DataError("views: no rows; at least one view is needed")
    if n > MAX_VIEWS:
        raise DataError(f"views: {n} rows, at most {MAX_VIEWS} are accepted")
    missing_cols = [c for c in ("timestamp", "categoryid") if c not in names]
    if missing_cols:
        raise DataError(f"views: missing column(s) {missing_cols}; need timestamp (int ms), categoryid")
    cols = [c for c in VIEW_COLUMNS if c in names]
    # itemid is optional, also per row (None/NaN = absent); it is not used to rank.
    fast = {c: _clean_ints(column(c), optional=c == "itemid") for c in cols}
    slow = [c for c in cols if fast[c] is None]
    if slow:
        if df is None:
            df = pd.DataFrame(list(views))
        problems = pd.DataFrame({c: _row_problem(df[c], c) for c in slow})
        bad_rows = np.flatnonzero((problems != "").any(axis=1).to_numpy())
        if len(bad_rows):
            msgs = []
            for r in bad_rows[:5]:  # at most 5 rows in the message
                texts = "; ".join(t for t in problems.iloc[r] if t)
                msgs.append(f"row {r}: {texts}")
            more = f" (and {len(bad_rows) - 5} more rows)" if len(bad_rows) > 5 else ""
            raise DataError("invalid views (rows are 0-based): " + " | ".join(msgs) + more)
        for c in slow:  # valid, but not plain ints (e.g. 2.0, "7", NaN itemid)
            num = pd.to_numeric(df[c]).astype("Int64")
            fast[c] = (num.to_numpy(np.int64, na_value=0), num.isna().to_numpy())
    item = fast.get("itemid")
    return CheckedViews(fast["timestamp"][0], fast["categoryid"][0],
                        item[0] if item else None, item[1] if item else None)


def validate_views(views: pd.DataFrame | list[dict] | Any) -> pd.DataFrame:
    """Checked views (timestamp, categoryid[, itemid] as int64); DataError names the bad rows."""
    return _checked_views(views).frame()


def rank(
    views: pd.DataFrame | list[dict], model: RankingModel | None = None, top_k: int | None = 3
) -> RankResult:
    """Rank next categories after the last of `views` with `model` (rule ranking if None)."""
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise DataError(f"top_k must be a positive integer or None, got {top_k!r}")
    v = _checked_views(views)
    lookback = model.lookback if model is not None else LOOKBACK
    window_ms = model.window_ms if model is not None else WINDOW_MS
    order = np.argsort(v.timestamp, kind="stable")
    ts = v.timestamp[order]
    cat = v.categoryid[order]
    # One visitor plus a dummy "next" view at t_last: its history is exactly the views with
    # timestamp >= t_last - window, last `lookback` of them — built by the training code path
    # (_candidate_arrays and _markov_arrays, as numpy columns: no DataFrame until the output).
    n = len(ts)
    vis = np.zeros(n + 1, dtype=np.int64)
    ts_all = np.append(ts, ts[-1])
    cat_all = np.append(cat, cat[-1])
    case_mask = np.zeros(n + 1, dtype=bool)
    case_mask[-1] = True
    cands = _candidate_arrays(vis, ts_all, cat_all, lookback, window_ms, case_mask)
    fallback: str | None = None
    ranker = "rule"
    if model is None:
        fallback = "no model given"
    else:
        if model.markov is not None:
            cands = _markov_arrays(cands, model.markov, model.markov_top_n, lookback, window_ms)
        missing = [f for f in model.features if f not in cands]
        if missing:
            fallback = f"model {model.name!r} needs missing features {missing}"
        else:
            ranker = model.name
    scores = rule_scores(cands) if ranker == "rule" else model.score(cands)
    order = _order_within_cases(cands, scores)
    if top_k is not None:
        order = order[:top_k]
    feats = [c for c in CANDIDATE_FEATURES + (MARKOV_FEATURE,) if c in cands]
    ranking = pd.DataFrame(
        {"categoryid": cands["categoryid"][order], "score": np.asarray(scores)[order],
         "rank": np.arange(1, len(order) + 1), **{f: cands[f][order] for f in feats}},
        copy=False,
    )
    return RankResult(
        ranker=ranker,
        fallback_reason=fallback,
        ranking=ranking,
        n_history_views=int(cands["n_views"][0]),
    )
