"""Generic statistics: visitor-bootstrap CIs, per-case / per-visitor means, PR-AUC, Jaccard, top share.

- per case: hits / cases pooled over all cases of a population;
- per visitor: each visitor's own hit rate, then the plain mean over visitors (so a crawler with
  5,000 cases weighs as much as a visitor with 2);
- 95% CI: percentile bootstrap over visitors (visitors resampled with replacement, all their
  cases come along), N_BOOT replicates, fixed seed, fully vectorised via a weights matrix.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from core.base import arrays
from core.base.schema import DEFAULT_SEED

N_BOOT = 300
CI_LEVEL = 0.95
AVERAGES: tuple[str, ...] = ("per case", "per visitor")
# Bootstrap weights are drawn in blocks of at most this many (replicate, visitor) cells, so the
# memory stays bounded (~40 MB) whatever the number of visitors.
BOOT_BLOCK_CELLS = 5_000_000


def jaccard(a: Iterable[Any], b: Iterable[Any]) -> float:
    """|A ∩ B| / |A ∪ B| of two id collections (1.0 when both are empty)."""
    a = arrays.unique(np.asarray(a if isinstance(a, np.ndarray) else list(a)))
    b = arrays.unique(np.asarray(b if isinstance(b, np.ndarray) else list(b)))
    union = arrays.union(a, b).size
    return 1.0 if union == 0 else arrays.intersect(a, b).size / union


def pr_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (sklearn) of scores against boolean truth; NaN without positives."""
    from sklearn.metrics import average_precision_score

    truth = np.asarray(truth, dtype=bool)
    if truth.size == 0 or not truth.any():
        return float("nan")
    return float(average_precision_score(truth, np.asarray(scores, dtype=np.float64)))


def flag_top_share(scores: np.ndarray, share: float, ids: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the round(share * n) highest scores (ties broken by ids, then position)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.size
    k = min(n, max(int(round(share * n)), 1 if n else 0))
    tie = np.arange(n) if ids is None else np.asarray(ids)
    order = np.lexsort((np.arange(n), tie, -scores))
    mask = np.zeros(n, dtype=bool)
    mask[order[:k]] = True
    return mask


def per_case_average(hits: np.ndarray, cases: np.ndarray) -> float:
    """Pooled rate: sum(hits) / sum(cases) (NaN when there are no cases)."""
    den = float(np.sum(cases))
    return float(np.sum(hits)) / den if den > 0 else float("nan")


def per_visitor_average(hits: np.ndarray, cases: np.ndarray, visitor_ids: np.ndarray) -> float:
    """Mean over visitors (with cases > 0) of each visitor's own sum(hits) / sum(cases)."""
    sums, _ = visitor_sums(np.asarray(visitor_ids), np.column_stack([hits, cases]))
    has = sums[:, 1] > 0
    return float(np.mean(sums[has, 0] / sums[has, 1])) if has.any() else float("nan")


def visitor_sums(visitor_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-visitor column sums of values (V, m), sorted unique visitor ids)."""
    vids, inv = np.unique(visitor_ids, return_inverse=True)
    values = np.asarray(values, dtype=np.float64).reshape(len(visitor_ids), -1)
    sums = np.zeros((vids.size, values.shape[1]))
    for j in range(values.shape[1]):  # a handful of metric columns
        sums[:, j] = np.bincount(inv, weights=values[:, j], minlength=vids.size)
    return sums, vids


def bootstrap_weights(n_visitors: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_visitors) resampling counts: each row is one draw of n visitors with replacement."""
    idx = rng.integers(0, n_visitors, size=(n_boot, n_visitors))
    flat = (idx + n_visitors * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n_visitors).reshape(n_boot, n_visitors).astype(np.float64)


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, NaN where den == 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def bootstrap_replicates(
    hits: np.ndarray,
    cases: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = DEFAULT_SEED,
    block_cells: int = BOOT_BLOCK_CELLS,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-case and per-visitor replicates (n_boot, m) from per-visitor sums (V, m); weights are
    drawn ``block_cells`` (replicate, visitor) cells at a time (the draws depend on it)."""
    hits = np.asarray(hits, dtype=np.float64)
    cases = np.asarray(cases, dtype=np.float64)
    n_vis, m = hits.shape
    rep_case = np.full((n_boot, m), np.nan)
    rep_vis = np.full((n_boot, m), np.nan)
    if n_vis == 0 or n_boot == 0:
        return rep_case, rep_vis
    has = (cases > 0).astype(np.float64)
    rate = np.nan_to_num(ratio(hits, cases))
    rng = np.random.default_rng(seed)
    block = max(1, block_cells // n_vis)
    for start in range(0, n_boot, block):  # blocks of replicates, each fully vectorised
        b = min(block, n_boot - start)
        w = bootstrap_weights(n_vis, b, rng)
        rep_case[start : start + b] = ratio(w @ hits, w @ cases)
        rep_vis[start : start + b] = ratio(w @ rate, w @ has)
    return rep_case, rep_vis


def percentile_ci(reps: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column, NaN for columns without finite replicates."""
    alpha = (1 - level) / 2
    lo = np.full(reps.shape[1], np.nan)
    hi = np.full(reps.shape[1], np.nan)
    for j in range(reps.shape[1]):  # a handful of metrics
        col = reps[:, j][np.isfinite(reps[:, j])]
        if col.size:
            lo[j], hi[j] = np.quantile(col, [alpha, 1 - alpha])
    return lo, hi


def bootstrap_ci(
    hits: np.ndarray,
    cases: np.ndarray,
    visitor_ids: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = CI_LEVEL,
) -> dict[str, dict[str, float]]:
    """Point estimate and visitor-bootstrap percentile CI, per case and per visitor."""
    sums, _ = visitor_sums(np.asarray(visitor_ids), np.column_stack([hits, cases]))
    h, c = sums[:, :1], sums[:, 1:]
    rep_case, rep_vis = bootstrap_replicates(h, c, n_boot, seed)
    out = {}
    for name, value, reps in (
        ("per case", per_case_average(h, c), rep_case),
        ("per visitor", per_visitor_average(h[:, 0], c[:, 0], np.arange(len(h))), rep_vis),
    ):
        lo, hi = percentile_ci(reps, level)
        out[name] = {"value": value, "ci_low": float(lo[0]), "ci_high": float(hi[0])}
    return out


def point_estimates(h: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    """Per-case and per-visitor point estimates of every column of per-visitor sums (V, m)."""
    has = c > 0
    rate = np.where(has, np.nan_to_num(ratio(h, c)), 0.0)
    return {
        "per case": ratio(h.sum(axis=0), c.sum(axis=0)),
        "per visitor": ratio(rate.sum(axis=0), has.sum(axis=0).astype(np.float64)),
    }


def paired_difference_ci(
    a: np.ndarray,
    b: np.ndarray,
    visitor_ids: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = CI_LEVEL,
) -> dict[str, float]:
    """Per-case mean of a - b (two outcomes of the same cases) with a paired visitor-bootstrap
    percentile CI: both arms are resampled with the same visitors."""
    a = np.asarray(a, dtype=np.float64)
    sums, _ = visitor_sums(np.asarray(visitor_ids), np.column_stack([a, np.asarray(b, np.float64), np.ones(a.size)]))
    h, c = sums[:, :2], sums[:, [2, 2]]
    rep_case, _ = bootstrap_replicates(h, c, n_boot, seed)
    lo, hi = percentile_ci((rep_case[:, 0] - rep_case[:, 1])[:, None], level)
    point = ratio(h.sum(axis=0), c.sum(axis=0))
    return {
        "value": float(point[0] - point[1]),
        "ci_low": float(lo[0]),
        "ci_high": float(hi[0]),
        "n_cases": int(a.size),
    }
