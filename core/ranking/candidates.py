"""Candidates of Task 1: one row per (case, distinct category of H) with the 7 contract features.

Everything is vectorised: the only Python loops run over history offsets (<= lookback) and
chunks of cases (for memory). rank() builds its one case through the same `candidate_arrays`.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from core.base import arrays
from core.base.errors import DataError
from core.base.schema import CANDIDATE_FEATURES, LOOKBACK, MIN_LABEL_COUNT, MS_PER_MINUTE, WINDOW_MS
from core.ranking.cases import history_lengths, sorted_views, tail_streaks
from core.ranking.markov import MarkovModel, add_markov
from core.ranking.split import drop_rare_labels

logger = logging.getLogger(__name__)

CANDIDATE_COLUMNS: tuple[str, ...] = (
    ("visitorid", "case_id", "t_ref", "categoryid") + CANDIDATE_FEATURES + ("label", "y")
)
# Pairs (case, history view) materialised at once; bounds the memory of build_candidates.
PAIR_CHUNK = 4_000_000


def _chunk_bounds(lens: np.ndarray) -> np.ndarray:
    """Case-index boundaries so that each chunk holds at most ~PAIR_CHUNK (case, view) pairs."""
    ends = np.cumsum(lens)
    total = int(ends[-1]) if len(ends) else 0
    cuts = np.searchsorted(ends, np.arange(PAIR_CHUNK, total, PAIR_CHUNK))
    return arrays.unique(np.concatenate([[0], cuts, [len(lens)]]))


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
    "visitorid": np.int64,
    "case_id": np.int64,
    "t_ref": np.int64,
    "categoryid": np.int64,
    "cnt": np.int32,
    "share": np.float64,
    "is_last": np.int8,
    "last_gap_min": np.float64,
    "pos_from_end": np.int32,
    "tail_streak_if_last": np.int32,
    "n_views": np.int32,
    "label": np.int8,
    "y": np.int64,
}


def candidate_arrays(
    vis: np.ndarray,
    ts: np.ndarray,
    cat: np.ndarray,
    lookback: int,
    window_ms: int,
    case_mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Candidate columns (CANDIDATE_COLUMNS, numpy) from views in case order: the one
    implementation of the contract features, for training and rank()."""
    if lookback < 1 or window_ms < 0:
        raise ValueError("lookback must be >= 1 and window_ms >= 0")
    hist_len = history_lengths(vis, ts, lookback, window_ms, case_mask)
    streak = tail_streaks(cat, hist_len, lookback)
    cases = np.flatnonzero(hist_len > 0)
    lens = hist_len[cases].astype(np.int64)
    cat_values, cat_code = np.unique(cat, return_inverse=True)
    n_codes, kbits = max(len(cat_values), 1), int(lookback).bit_length()
    bounds = _chunk_bounds(lens)
    if (int(np.diff(bounds).max(initial=1)) * n_codes) << kbits >= 2**62:
        raise DataError("too many categories to build candidate keys")  # not at real scales
    # Rows <= pairs, so the columns are allocated at that bound: pages never written are never
    # resident, and the final resize shrinks in place. Peak memory ~ output + one chunk.
    bound = int(lens.sum())
    out: dict[str, np.ndarray] = {c: np.empty(bound, dtype=d) for c, d in _COLUMN_DTYPES.items()}
    n = 0
    for a, b in zip(bounds[:-1], bounds[1:]):  # chunks of cases, for memory
        case_local, code, cnt, kmin = _aggregate_pairs(cases[a:b], lens[a:b], cat_code, n_codes, kbits)
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


def build_candidates(
    events: pd.DataFrame,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
    markov: MarkovModel | None = None,
    markov_top_n: int = 0,
) -> pd.DataFrame:
    """One row per (case, candidate category) with the 7 contract features, label and y."""
    t0 = time.perf_counter()
    vis, ts, cat = sorted_views(events)
    cands = pd.DataFrame(candidate_arrays(vis, ts, cat, lookback, window_ms), copy=False)
    logger.info(
        "build_candidates: %d views -> %d cases, %d candidate rows in %.1fs",
        len(ts),
        int(cands["case_id"].iloc[-1]) + 1 if len(cands) else 0,
        len(cands),
        time.perf_counter() - t0,
    )
    if markov is not None:
        cands = add_markov(cands, markov, markov_top_n, lookback=lookback, window_ms=window_ms)
    return cands


def prepare_cases(
    events: pd.DataFrame,
    lookback: int = LOOKBACK,
    window_ms: int = WINDOW_MS,
    min_count: int = MIN_LABEL_COUNT,
) -> tuple[pd.DataFrame, int, int]:
    """History candidates with rare labels dropped: (cands, cases before the drop, cases dropped)."""
    cands = build_candidates(events, lookback, window_ms)
    n_all = int(cands["case_id"].nunique()) if len(cands) else 0
    cands, n_dropped = drop_rare_labels(cands, min_count)
    return cands, n_all, n_dropped
