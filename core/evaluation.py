"""Issue 5: honest evaluation — same-population and temporal splits, switch-only cases,
Markov candidates and detector quality, each figure captioned with its population.

Why this module exists: the seed compared a ranker on raw events with one on cleaned events,
each on its own test split, so the "gain" mixed a model change with a population change. Here
every comparison is made on ONE fixed set of test cases (same case ids), and figures carry
visitor-level bootstrap confidence intervals.

Definitions (docs/EVALUATION.md has the long version):
- per case: hits / cases over all cases of a population (the spec's metrics);
- per visitor: each visitor's own hit rate, then the plain mean over visitors (so a crawler with
  5,000 cases weighs as much as a visitor with 2);
- 95% CI: percentile bootstrap over visitors (visitors resampled with replacement, all their
  cases come along), N_BOOT replicates, fixed seed, fully vectorised via a weights matrix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from core import anomaly, artifacts, ranking
from core.errors import DataError
from core.schema import (
    CANDIDATE_FEATURES,
    DEFAULT_SEED,
    DEFAULT_SHARE,
    LOOKBACK,
    MARKOV_FEATURE,
    MIN_LABEL_COUNT,
    TEST_SIZE,
    UNKNOWN_CATEGORY,
    USER_FEATURES,
    WINDOW_MS,
)

log = logging.getLogger(__name__)

MS_PER_DAY = 86_400_000
TEST_DAYS = 14
N_BOOT = 300
CI_LEVEL = 0.95
# Bootstrap weights are drawn in blocks of at most this many (replicate, visitor) cells, so the
# memory stays bounded (~40 MB) whatever the number of visitors.
BOOT_BLOCK_CELLS = 5_000_000
LEARNER = "hgb"  # HistGradientBoostingClassifier, ranking.make_estimator("hgb"); see docs
# Each learned ranker is trained on at most this many history candidate rows (a deterministic
# sample of whole cases, ranking.cap_by_case), so the eight fits stay within the build's budget
# at RetailRocket scale. Markov rankers train on the same cases plus their extra candidates.
TRAIN_ROW_CAP = 100_000
# Learners run single-threaded: on the shared 2-core machine OpenMP threads competing with other
# processes made a HistGradientBoosting fit ~5x slower than one thread.
EVAL_THREADS = 1
# Extra Markov candidates per case: N = 5 and 10 on the group split, N = 5 on the temporal one.
# Above MARKOV_TOP10_MAX_EVENTS the group split also keeps N = 5 only (each N costs a fit and
# scoring ~2-3M candidate rows at RetailRocket scale; at demo scale top-10 adds ~0.5 pp coverage).
MARKOV_TOP_NS: dict[str, tuple[int, ...]] = {"group": (5, 10), "temporal": (5,)}
MARKOV_TOP10_MAX_EVENTS = 1_000_000
MARKOV_FOLDS = 5
STABILITY_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
# IsolationForest stability is measured on at most this many users (a fixed random sample).
STABILITY_USER_CAP = 50_000
# Split detectors are fitted on at most this many training users (a fixed random sample; the
# forest itself subsamples 256 users per tree, the cap only bounds the threshold's quantile
# estimate and the scoring time at RetailRocket scale).
DETECTOR_FIT_CAP = 300_000
METRICS: tuple[str, ...] = ("coverage", "top1", "top3", "top1_all", "top3_all")
AVERAGES: tuple[str, ...] = ("per case", "per visitor")
# metric -> (numerator, denominator) columns of the per-case outcome table.
METRIC_PARTS: dict[str, tuple[str, str]] = {
    "coverage": ("covered", "one"),
    "top1": ("hit1", "covered"),
    "top3": ("hit3", "covered"),
    "top1_all": ("hit1", "one"),
    "top3_all": ("hit3", "one"),
}
POPULATION_KEYS: tuple[str, ...] = ("all", "non_flagged", "flagged")
RANKERS: tuple[str, ...] = ("raw", "clean", "rule")
CSV_COLUMNS: tuple[str, ...] = (
    "split", "ranker", "population", "metric", "average", "value", "ci_low", "ci_high",
    "n_cases", "n_visitors",
)
MARKOV_CSV_COLUMNS: tuple[str, ...] = (
    "candidate_set", "split", "ranker", "coverage", "top1_all", "top3_all", "top1", "top3",
    "n_cases", "n_covered", "coverage_ci_low", "coverage_ci_high", "top1_all_ci_low",
    "top1_all_ci_high", "top3_all_ci_low", "top3_all_ci_high",
)
HONEST_JSON = "task1_honest_evaluation.json"
HONEST_CSV = "task1_honest_evaluation.csv"
MARKOV_CSV = "task1_markov_candidates.csv"
DETECTOR_JSON = "task2_detector_quality.json"
DETECTOR_CSV = "task2_detector_quality.csv"
REPORT_DECIMALS = 6  # report tables only; nothing here is re-used as a threshold


# ----------------------------------------------------------------------------------------------
# Small pure pieces
# ----------------------------------------------------------------------------------------------


def jaccard(a: Iterable[Any], b: Iterable[Any]) -> float:
    """|A ∩ B| / |A ∪ B| of two id collections (1.0 when both are empty)."""
    a = np.unique(np.asarray(a if isinstance(a, np.ndarray) else list(a)))
    b = np.unique(np.asarray(b if isinstance(b, np.ndarray) else list(b)))
    union = np.union1d(a, b).size
    return 1.0 if union == 0 else np.intersect1d(a, b).size / union


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


def temporal_cutoff(timestamps: np.ndarray, test_days: int = TEST_DAYS) -> int:
    """First test millisecond: max timestamp minus test_days days (events at it are test)."""
    ts = np.asarray(timestamps, dtype=np.int64)
    if ts.size == 0:
        raise DataError("temporal split: no events")
    return int(ts.max()) - int(test_days) * MS_PER_DAY


def temporal_split(
    events: pd.DataFrame, test_days: int = TEST_DAYS
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(events before the cutoff, events at/after it, cutoff ms); cutoff = max ts - test_days."""
    cutoff = temporal_cutoff(events["timestamp"].to_numpy(), test_days)
    test = events["timestamp"].to_numpy(np.int64) >= cutoff
    return events.loc[~test], events.loc[test], cutoff


def case_times(events: pd.DataFrame, window_ms: int = WINDOW_MS) -> tuple[np.ndarray, np.ndarray]:
    """(timestamp of the labelled view v_i, timestamp of the last view of H) per case_id.

    A view is a case iff the visitor's previous view (in (visitorid, timestamp, file order)) is at
    most window_ms earlier — the same order and rule as ranking.build_candidates, so position i
    here is ranking's case_id i (checked against t_ref by temporal_split_spec).
    """
    keep = (events["event"] == "view").to_numpy(dtype=bool) & (
        events["categoryid"].to_numpy() != UNKNOWN_CATEGORY
    )
    vis = events["visitorid"].to_numpy(np.int64)[keep]
    ts = events["timestamp"].to_numpy(np.int64)[keep]
    order = np.lexsort((ts, vis))
    vis, ts = vis[order], ts[order]
    is_case = np.zeros(ts.size, dtype=bool)
    is_case[1:] = (vis[1:] == vis[:-1]) & (ts[1:] - ts[:-1] <= window_ms)
    prev = np.flatnonzero(is_case) - 1
    return ts[is_case], ts[prev]


def case_view_times(events: pd.DataFrame, window_ms: int = WINDOW_MS) -> np.ndarray:
    """Timestamp of the labelled view v_i of every case, indexed by ranking's case_id."""
    return case_times(events, window_ms)[0]


def case_table(cands: pd.DataFrame) -> pd.DataFrame:
    """One row per case, sorted by case_id: case_id, visitorid, y, last_cat (is_last category)."""
    case_id = cands["case_id"].to_numpy(np.int64)
    ids, first = np.unique(case_id, return_index=True)
    last = cands["is_last"].to_numpy() == 1
    last_cat = np.full(ids.size, UNKNOWN_CATEGORY, dtype=np.int64)
    last_cat[np.searchsorted(ids, case_id[last])] = cands["categoryid"].to_numpy(np.int64)[last]
    return pd.DataFrame(
        {
            "case_id": ids,
            "visitorid": cands["visitorid"].to_numpy(np.int64)[first],
            "y": cands["y"].to_numpy(np.int64)[first],
            "last_cat": last_cat,
        }
    )


def switch_case_ids(cands: pd.DataFrame) -> np.ndarray:
    """case_ids whose true next category differs from the last viewed one (is_last row != y)."""
    last = cands["is_last"].to_numpy() == 1
    switch = last & (cands["label"].to_numpy() == 0)
    return np.unique(cands["case_id"].to_numpy(np.int64)[switch])


def switch_only(cands: pd.DataFrame) -> pd.DataFrame:
    """The candidate rows of switch cases only (is_last candidate != y)."""
    return cands.loc[np.isin(cands["case_id"].to_numpy(np.int64), switch_case_ids(cands))]


def case_ranks(cands: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
    """0-based rank of every row within its case, with ranking.case_ranks_by_score's tie-break."""
    return ranking.case_ranks_by_score(cands, np.asarray(scores, dtype=np.float64))


def case_outcomes(cands: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """Per case (sorted by case_id): case_id, visitorid, one, covered, hit1, hit3, switch."""
    cases = case_table(cands)
    label = cands["label"].to_numpy() == 1
    ranks = case_ranks(cands, scores)[label]
    pos = np.searchsorted(cases["case_id"].to_numpy(), cands["case_id"].to_numpy(np.int64)[label])
    n = len(cases)
    covered, hit1, hit3 = np.zeros(n), np.zeros(n), np.zeros(n)
    covered[pos] = 1.0
    hit1[pos] = ranks == 0
    hit3[pos] = ranks < 3
    return pd.DataFrame(
        {
            "case_id": cases["case_id"].to_numpy(),
            "visitorid": cases["visitorid"].to_numpy(),
            "one": np.ones(n),
            "covered": covered,
            "hit1": hit1,
            "hit3": hit3,
            "switch": cases["last_cat"].to_numpy() != cases["y"].to_numpy(),
        }
    )


def per_case_average(hits: np.ndarray, cases: np.ndarray) -> float:
    """Pooled rate: sum(hits) / sum(cases) (NaN when there are no cases)."""
    den = float(np.sum(cases))
    return float(np.sum(hits)) / den if den > 0 else float("nan")


def per_visitor_average(hits: np.ndarray, cases: np.ndarray, visitor_ids: np.ndarray) -> float:
    """Mean over visitors (with cases > 0) of each visitor's own sum(hits) / sum(cases)."""
    sums, _ = _visitor_sums(np.asarray(visitor_ids), np.column_stack([hits, cases]))
    has = sums[:, 1] > 0
    return float(np.mean(sums[has, 0] / sums[has, 1])) if has.any() else float("nan")


def _visitor_sums(visitor_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    return np.bincount(flat, minlength=n_boot * n_visitors).reshape(n_boot, n_visitors).astype(
        np.float64
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, NaN where den == 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def bootstrap_replicates(
    hits: np.ndarray, cases: np.ndarray, n_boot: int = N_BOOT, seed: int = DEFAULT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Per-case and per-visitor replicates (n_boot, m) from per-visitor sums (V, m)."""
    hits = np.asarray(hits, dtype=np.float64)
    cases = np.asarray(cases, dtype=np.float64)
    n_vis, m = hits.shape
    rep_case = np.full((n_boot, m), np.nan)
    rep_vis = np.full((n_boot, m), np.nan)
    if n_vis == 0 or n_boot == 0:
        return rep_case, rep_vis
    has = (cases > 0).astype(np.float64)
    rate = np.nan_to_num(_ratio(hits, cases))
    rng = np.random.default_rng(seed)
    block = max(1, BOOT_BLOCK_CELLS // n_vis)
    for start in range(0, n_boot, block):  # blocks of replicates, each fully vectorised
        b = min(block, n_boot - start)
        w = bootstrap_weights(n_vis, b, rng)
        rep_case[start : start + b] = _ratio(w @ hits, w @ cases)
        rep_vis[start : start + b] = _ratio(w @ rate, w @ has)
    return rep_case, rep_vis


def _percentile_ci(reps: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
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
    sums, _ = _visitor_sums(np.asarray(visitor_ids), np.column_stack([hits, cases]))
    h, c = sums[:, :1], sums[:, 1:]
    rep_case, rep_vis = bootstrap_replicates(h, c, n_boot, seed)
    out = {}
    for name, value, reps in (
        ("per case", per_case_average(h, c), rep_case),
        ("per visitor", per_visitor_average(h[:, 0], c[:, 0], np.arange(len(h))), rep_vis),
    ):
        lo, hi = _percentile_ci(reps, level)
        out[name] = {"value": value, "ci_low": float(lo[0]), "ci_high": float(hi[0])}
    return out


def _point_estimates(h: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    """Per-case and per-visitor point estimates of every column of per-visitor sums (V, m)."""
    has = c > 0
    rate = np.where(has, np.nan_to_num(_ratio(h, c)), 0.0)
    return {
        "per case": _ratio(h.sum(axis=0), c.sum(axis=0)),
        "per visitor": _ratio(rate.sum(axis=0), has.sum(axis=0).astype(np.float64)),
    }


def metric_rows_multi(
    arms: dict[str, pd.DataFrame],
    n_boot: int = N_BOOT,
    seed: int = DEFAULT_SEED,
    metrics: Sequence[str] = METRICS,
    level: float = CI_LEVEL,
    diffs: Sequence[tuple[str, str]] = (),
) -> dict[str, list[dict[str, Any]]]:
    """metric_rows for several rankers on the SAME cases, with one shared bootstrap draw.

    Sharing the resampled visitors makes the CIs paired: for every (a, b) in diffs, rows keyed
    "a - b" give the difference a - b with its own paired bootstrap CI.
    """
    names = list(arms)
    ref = arms[names[0]]
    for name in names[1:]:
        if not np.array_equal(arms[name]["case_id"].to_numpy(), ref["case_id"].to_numpy()):
            raise DataError(f"metric_rows_multi: {name!r} is not on the same cases as {names[0]!r}")
    num_cols = [METRIC_PARTS[m][0] for m in metrics]
    den_cols = [METRIC_PARTS[m][1] for m in metrics]
    cols = sorted(set(num_cols + den_cols))
    values = np.column_stack([arms[a][cols].to_numpy(np.float64) for a in names]) if len(ref) else (
        np.zeros((0, len(cols) * len(names)))
    )
    sums, _ = _visitor_sums(ref["visitorid"].to_numpy(), values)
    k = len(cols)
    h = np.column_stack([sums[:, i * k + cols.index(col)] for i in range(len(names)) for col in num_cols])
    c = np.column_stack([sums[:, i * k + cols.index(col)] for i in range(len(names)) for col in den_cols])
    h, c = h.reshape(len(sums), -1), c.reshape(len(sums), -1)
    reps = dict(zip(AVERAGES, bootstrap_replicates(h, c, n_boot, seed)))
    point = _point_estimates(h, c)
    m = len(metrics)

    def rows_for(j0: int, value: dict[str, np.ndarray], rep: dict[str, np.ndarray],
                 counts_from: int) -> list[dict[str, Any]]:
        out = []
        for j, metric in enumerate(metrics):
            for avg in AVERAGES:
                lo, hi = _percentile_ci(rep[avg][:, [j]], level)
                den = c[:, counts_from + j]
                out.append({
                    "metric": metric, "average": avg, "value": float(value[avg][j0 + j]),
                    "ci_low": float(lo[0]), "ci_high": float(hi[0]),
                    "n_cases": int(round(den.sum())), "n_visitors": int((den > 0).sum()),
                })
        return out

    result: dict[str, list[dict[str, Any]]] = {}
    for i, name in enumerate(names):
        result[name] = rows_for(i * m, point, {a: reps[a][:, i * m:(i + 1) * m] for a in AVERAGES},
                                i * m)
    for a_name, b_name in diffs:
        ia, ib = names.index(a_name) * m, names.index(b_name) * m
        value = {avg: point[avg][ia:ia + m] - point[avg][ib:ib + m] for avg in AVERAGES}
        rep = {avg: reps[avg][:, ia:ia + m] - reps[avg][:, ib:ib + m] for avg in AVERAGES}
        result[f"{a_name} - {b_name}"] = rows_for(0, value, rep, ia)
    return result


def metric_rows(
    outcomes: pd.DataFrame,
    n_boot: int = N_BOOT,
    seed: int = DEFAULT_SEED,
    metrics: Sequence[str] = METRICS,
    level: float = CI_LEVEL,
) -> list[dict[str, Any]]:
    """Every metric x average of a per-case outcome table, with CI, n_cases and n_visitors."""
    return metric_rows_multi({"x": outcomes}, n_boot, seed, metrics, level)["x"]


def headline(outcomes: pd.DataFrame) -> dict[str, Any]:
    """Per-case point metrics (no CI) with case and visitor counts, for compact tables."""
    tot = outcomes[["one", "covered", "hit1", "hit3"]].sum()
    n, cov = float(tot["one"]), float(tot["covered"])
    return {
        "n_cases": int(n),
        "n_covered": int(cov),
        "n_visitors": int(outcomes["visitorid"].nunique()),
        "coverage": cov / n if n else float("nan"),
        "top1": tot["hit1"] / cov if cov else float("nan"),
        "top3": tot["hit3"] / cov if cov else float("nan"),
        "top1_all": tot["hit1"] / n if n else float("nan"),
        "top3_all": tot["hit3"] / n if n else float("nan"),
    }


# ----------------------------------------------------------------------------------------------
# Markov pieces
# ----------------------------------------------------------------------------------------------


def markov_only_outcomes(cases: pd.DataFrame, markov: ranking.MarkovModel) -> pd.DataFrame:
    """Per case: rank ALL categories by P(next | last category of H); y covered iff P(y|last) > 0.

    Ties by transition count are broken by category id (MarkovModel.top's order). A case whose last
    category was never seen in training has no ranking: not covered, no hit.
    """
    last = cases["last_cat"].to_numpy(np.int64)
    y = cases["y"].to_numpy(np.int64)
    covered = markov.prob(last, y) > 0 if len(cases) else np.zeros(0, dtype=bool)
    q, cat, _ = markov.top(last, 3)
    hit = cat == y[q]
    starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]]) if q.size else np.zeros(0, np.int64)
    rank = np.arange(q.size) - np.repeat(starts, np.diff(np.r_[starts, q.size]))  # 0 = best
    n = len(cases)
    hit1 = np.bincount(q[hit & (rank == 0)], minlength=n) > 0
    hit3 = np.bincount(q[hit], minlength=n) > 0
    return pd.DataFrame(
        {
            "case_id": cases["case_id"].to_numpy(),
            "visitorid": cases["visitorid"].to_numpy(),
            "one": np.ones(n),
            "covered": covered.astype(float),
            "hit1": hit1.astype(float),
            "hit3": hit3.astype(float),
            "switch": last != y,
        }
    )


def transition_pairs(cands: pd.DataFrame) -> pd.DataFrame:
    """(visitorid, prev_cat, y) per case: the transition from the last category of H to y."""
    cases = case_table(cands)
    return pd.DataFrame(
        {"visitorid": cases["visitorid"], "prev_cat": cases["last_cat"], "y": cases["y"]}
    )


def cross_fitted_markov(
    train_pairs: pd.DataFrame, sample: pd.DataFrame, top_n: int, seed: int, folds: int = MARKOV_FOLDS
) -> pd.DataFrame:
    """Markov features/extra candidates for training rows, each fold scored by a model fitted
    without that fold's visitors (a case's own transition never feeds its own markov_prob)."""
    visitors = np.unique(train_pairs["visitorid"].to_numpy())
    fold_of = np.random.default_rng(seed).permutation(visitors.size) % folds
    pair_fold = fold_of[np.searchsorted(visitors, train_pairs["visitorid"].to_numpy())]
    row_fold = fold_of[np.searchsorted(visitors, sample["visitorid"].to_numpy())]
    parts = []
    for f in range(folds):  # a handful of folds, each step vectorised
        inside = row_fold == f
        if inside.any():
            model = ranking.fit_markov(train_pairs.loc[pair_fold != f, ["prev_cat", "y"]])
            parts.append(ranking.add_markov(sample.loc[inside], model, top_n))
    out = pd.concat(parts, ignore_index=True)
    return out.iloc[np.argsort(out["case_id"].to_numpy(), kind="stable")].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Rankers
# ----------------------------------------------------------------------------------------------


def train_sample(train: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Deterministic sample of whole training cases with at most TRAIN_ROW_CAP history rows."""
    return ranking.cap_by_case(train, TRAIN_ROW_CAP, seed)


def fit_learned(
    rows: pd.DataFrame,
    seed: int,
    features: Sequence[str] = CANDIDATE_FEATURES,
    markov: ranking.MarkovModel | None = None,
    markov_top_n: int = 0,
    source: str = "events",
) -> ranking.RankingModel:
    """The evaluation learner (ranking's hgb), single-threaded, on the given training rows."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=EVAL_THREADS):
        return ranking.fit_ranker(LEARNER, rows, tuple(features), seed, markov, markov_top_n,
                                  source=source)


def model_scores(model: ranking.RankingModel, cands: pd.DataFrame) -> np.ndarray:
    """model.score(cands), single-threaded like the fits."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=EVAL_THREADS):
        return model.score(cands)


# ----------------------------------------------------------------------------------------------
# One split: detector, rankers, populations, switch-only, Markov candidates
# ----------------------------------------------------------------------------------------------


@dataclass
class SplitSpec:
    """A train/test split of cases, plus the users the detector is fitted on and scores."""

    name: str
    train: pd.DataFrame  # candidate rows of training cases
    test: pd.DataFrame  # candidate rows of test cases (raw: nobody removed)
    detector_train: pd.DataFrame  # user features the detector is fitted on
    detector_test: pd.DataFrame  # user features of the test visitors (scored, frozen threshold)
    caption: str  # plain language: who the test visitors are
    info: dict[str, Any]


def _user_sample(features: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """All users when at most cap, else a fixed random sample of cap users (row order kept)."""
    if len(features) <= cap:
        return features
    idx = np.sort(np.random.default_rng(seed).choice(len(features), cap, replace=False))
    return features.iloc[idx].reset_index(drop=True)


def _fit_and_flag(
    spec: SplitSpec, share: float, seed: int, labels: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Detector fitted on the split's training users; flagged train ids, flagged test ids, info."""
    fit_users = _user_sample(spec.detector_train, DETECTOR_FIT_CAP, seed)
    det = anomaly.fit_detector(fit_users, share=share, seed=seed)
    # Only training visitors that have cases matter for cleaning the training cases.
    dv = spec.detector_train["visitorid"].to_numpy()
    with_cases = spec.detector_train.loc[np.isin(dv, np.unique(spec.train["visitorid"].to_numpy()))]
    tr_flag = det.score_samples(with_cases) >= det.threshold_ if len(with_cases) else np.zeros(0, bool)
    te_scores = det.score_samples(spec.detector_test) if len(spec.detector_test) else np.zeros(0)
    te_flag = te_scores >= det.threshold_
    flagged_train = with_cases["visitorid"].to_numpy()[tr_flag]
    flagged_test = spec.detector_test["visitorid"].to_numpy()[te_flag]
    test_case_vis = np.unique(spec.test["visitorid"].to_numpy())
    info: dict[str, Any] = {
        "population": f"detector fitted on the {spec.name} split's training users only; its "
        f"threshold is frozen at their (1 - {share:g}) score quantile and applied to test visitors",
        "share": share,
        "threshold": det.threshold_,
        "train_users": int(len(spec.detector_train)),
        "train_users_fitted": int(len(fit_users)),
        "train_visitors_with_cases": int(len(with_cases)),
        "train_visitors_with_cases_flagged": int(tr_flag.sum()),
        "test_users_scored": int(len(spec.detector_test)),
        "test_flagged": int(te_flag.sum()),
        "test_flagged_share": float(te_flag.mean()) if te_flag.size else float("nan"),
        "test_visitors_with_cases": int(test_case_vis.size),
        "test_visitors_with_cases_flagged": int(np.isin(test_case_vis, flagged_test).sum()),
    }
    if labels is not None:
        abnormal = labels["visitorid"].to_numpy()
        truth = np.isin(spec.detector_test["visitorid"].to_numpy(), abnormal)
        tp = int((truth & te_flag).sum())
        info["test_flag_precision_vs_labels"] = tp / te_flag.sum() if te_flag.any() else float("nan")
        info["test_flag_recall_vs_labels"] = tp / truth.sum() if truth.any() else float("nan")
        info["test_abnormal_visitors"] = int(truth.sum())
    return flagged_train, flagged_test, info


def _population_masks(
    outcomes: pd.DataFrame, flagged_test: np.ndarray
) -> dict[str, np.ndarray]:
    """Per population key, the boolean mask over the outcome rows."""
    flagged = np.isin(outcomes["visitorid"].to_numpy(), flagged_test)
    return {"all": np.ones(len(outcomes), dtype=bool), "non_flagged": ~flagged, "flagged": flagged}


def evaluate_split(
    spec: SplitSpec,
    share: float,
    seed: int,
    labels: pd.DataFrame | None,
    n_boot: int = N_BOOT,
    markov_top_ns: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Detector, raw/clean/rule rankers, 2x3 populations, switch-only and Markov candidates."""
    t0 = time.perf_counter()
    flagged_train, flagged_test, det_info = _fit_and_flag(spec, share, seed, labels)
    log.info("evaluation %s: detector %.1fs", spec.name, time.perf_counter() - t0)
    train_vis = spec.train["visitorid"].to_numpy()
    clean_train = spec.train.loc[~np.isin(train_vis, flagged_train)]
    models = {
        "raw": fit_learned(train_sample(spec.train, seed), seed,
                           source=f"{spec.name} split, raw training cases"),
        "clean": fit_learned(train_sample(clean_train, seed), seed,
                             source=f"{spec.name} split, cleaned training cases"),
        "rule": ranking.fit_ranker("rule", spec.train),
    }
    log.info("evaluation %s: rankers %.1fs", spec.name, time.perf_counter() - t0)
    outcomes = {r: case_outcomes(spec.test, model_scores(models[r], spec.test)) for r in RANKERS}
    pops = _population_masks(outcomes["raw"], flagged_test)
    captions = _population_captions(spec, share)
    table, long = [], []
    arms_diffs = [("clean", "raw")]
    for key in POPULATION_KEYS:  # three populations, the three rankers bootstrapped together
        arms = {r: outcomes[r].loc[pops[key]] for r in RANKERS}
        for r, rows in metric_rows_multi(arms, n_boot, seed, diffs=arms_diffs).items():
            long.extend({"split": spec.name, "ranker": r, "population_key": key,
                         "population": captions[key], **row} for row in rows)
        table.extend({"ranker": r, "population_key": key, "population": captions[key],
                      **headline(arms[r])} for r in RANKERS)
    switch_mask = outcomes["raw"]["switch"].to_numpy()
    sw_caption = captions["switch"]
    sw_arms = {r: outcomes[r].loc[switch_mask] for r in RANKERS}
    sw_table = [{"ranker": r, "population_key": "switch", "population": sw_caption,
                 **headline(sw_arms[r])} for r in RANKERS]
    sw_long = [{"split": spec.name, "ranker": r, "population_key": "switch",
                "population": sw_caption, **row}
               for r, rows in metric_rows_multi(sw_arms, n_boot, seed, diffs=arms_diffs).items()
               for row in rows]
    log.info("evaluation %s: tables %.1fs", spec.name, time.perf_counter() - t0)
    top_ns = MARKOV_TOP_NS.get(spec.name, (5,)) if markov_top_ns is None else tuple(markov_top_ns)
    markov = markov_candidates(spec, outcomes["raw"], seed, n_boot, top_ns)
    log.info("evaluation %s: markov %.1fs", spec.name, time.perf_counter() - t0)
    n_test = len(outcomes["raw"])
    return {
        "population": captions["all"],
        "split": spec.info,
        "detector": det_info,
        "rankers": {
            "raw": {"trained_on": models["raw"].trained_on,
                    "description": "HistGradientBoosting on the 7 spec features, trained on every "
                                   "training visitor's cases (raw events)"},
            "clean": {"trained_on": models["clean"].trained_on,
                      "description": "the same learner trained on the training visitors minus "
                                     "the ones the train-fitted detector flags (cleaned)",
                      "train_visitors_removed": int(np.unique(train_vis[np.isin(train_vis, flagged_train)]).size)},
            "rule": {"trained_on": "no training",
                     "description": "count + recency rule (cnt desc, then pos_from_end asc); reference"},
        },
        "table": table,
        "metrics": long,
        "switch_only": {
            "population": sw_caption,
            "n_cases": int(switch_mask.sum()),
            "share_of_test_cases": float(switch_mask.mean()) if n_test else float("nan"),
            "table": sw_table,
            "metrics": sw_long,
        },
        "markov_candidates": markov,
    }


def _population_captions(spec: SplitSpec, share: float) -> dict[str, str]:
    """Plain-language caption of every population of a split."""
    base = spec.caption
    pct = f"{share:.0%}" if round(share * 100) == share * 100 else f"{share * 100:g}%"
    return {
        "all": f"all {base}",
        "non_flagged": f"{base} that the train-fitted detector does NOT flag at {pct}",
        "flagged": f"{base} that the train-fitted detector flags at {pct}",
        "switch": f"switch cases of all {base}: the true next category differs from the last "
                  "viewed one",
    }


def markov_candidates(
    spec: SplitSpec,
    history_outcomes: pd.DataFrame,
    seed: int,
    n_boot: int = N_BOOT,
    top_ns: Sequence[int] = (5,),
) -> dict[str, Any]:
    """Coverage/top1_all/top3_all of history-only vs history + Markov top-N vs Markov-only."""
    train_pairs = transition_pairs(spec.train)
    markov = ranking.fit_markov(train_pairs[["prev_cat", "y"]])
    test_cases = case_table(spec.test)
    caption = f"all {spec.caption}; the same case ids for every candidate set"
    arms: dict[str, pd.DataFrame] = {"history": history_outcomes}
    rankers = {"history": f"{LEARNER} on the 7 spec features (the 'raw' ranker)"}
    sample = train_sample(spec.train, seed)
    feats = CANDIDATE_FEATURES + (MARKOV_FEATURE,)
    for n in top_ns:  # N = 5 (and 10)
        train_aug = cross_fitted_markov(train_pairs, sample, n, seed)
        model = fit_learned(train_aug, seed, feats, markov, n,
                            source=f"{spec.name} split, raw training cases + Markov top-{n}")
        test_aug = ranking.add_markov(spec.test, markov, n)
        arms[f"history + markov top{n}"] = case_outcomes(test_aug, model_scores(model, test_aug))
        rankers[f"history + markov top{n}"] = f"{LEARNER} on 7 features + markov_prob"
        del test_aug
    arms["markov only (all categories)"] = markov_only_outcomes(test_cases, markov)
    rankers["markov only (all categories)"] = "P(next | last category), learned on training cases"
    shown = ("coverage", "top1_all", "top3_all")
    # One shared bootstrap: CIs of every set and paired CIs of each gain over history
    # (metric_rows_multi also checks that every set is on the same case ids).
    others = [a for a in arms if a != "history"]
    stats = metric_rows_multi(arms, n_boot, seed, metrics=shown,
                              diffs=[(a, "history") for a in others])
    rows: list[dict[str, Any]] = []
    for cset, outcomes in arms.items():
        row = {"split": spec.name, "candidate_set": cset, "ranker": rankers[cset],
               "population": caption, **headline(outcomes)}
        for r in stats[cset]:
            if r["average"] == "per case":
                row[f"{r['metric']}_ci_low"], row[f"{r['metric']}_ci_high"] = r["ci_low"], r["ci_high"]
        rows.append(row)
    gains = {
        a: {r["metric"]: {"value": r["value"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}
            for r in stats[f"{a} - history"] if r["average"] == "per case"}
        for a in others
    }
    return {
        "population": caption,
        "markov": {"fitted_on": f"{markov.n_cases} training cases' (last category of H -> y) "
                                "transitions", "categories": int(len(markov.categories)),
                   "test_cases_last_category_unseen": int((~np.isin(test_cases["last_cat"].to_numpy(), markov.categories)).sum())},
        "rows": rows,
        "gain_vs_history": gains,
        "gain_note": "candidate set minus history on the same test cases, per case, with a "
                     "paired visitor-bootstrap 95% CI",
    }


# ----------------------------------------------------------------------------------------------
# The two splits
# ----------------------------------------------------------------------------------------------


def markov_top_ns_for(n_events: int) -> dict[str, tuple[int, ...]]:
    """The Markov N values per split: MARKOV_TOP_NS, without N = 10 above MARKOV_TOP10_MAX_EVENTS."""
    if n_events <= MARKOV_TOP10_MAX_EVENTS:
        return dict(MARKOV_TOP_NS)
    return {k: tuple(n for n in v if n <= 5) or (5,) for k, v in MARKOV_TOP_NS.items()}


def prepared_cases(events: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """History candidates of every case (spec §2) with rare labels dropped, and the counts."""
    cands = ranking.build_candidates(events, LOOKBACK, WINDOW_MS)
    n_all = int(cands["case_id"].nunique()) if len(cands) else 0
    cands, n_dropped = ranking.drop_rare_labels(cands, MIN_LABEL_COUNT)
    if cands.empty:
        raise DataError("honest evaluation: no ranking cases left after dropping rare labels")
    return cands, {"min_count": MIN_LABEL_COUNT, "cases_before": n_all, "cases_dropped": n_dropped,
                   "cases_kept": n_all - n_dropped}


def _unseen_share(train: pd.DataFrame, test: pd.DataFrame) -> tuple[int, float]:
    """Test cases whose label never occurs as a training label: count and share."""
    tr_y = np.unique(case_table(train)["y"].to_numpy())
    te_y = case_table(test)["y"].to_numpy()
    unseen = int((~np.isin(te_y, tr_y)).sum())
    return unseen, unseen / te_y.size if te_y.size else float("nan")


def group_split_spec(cands: pd.DataFrame, features: pd.DataFrame, seed: int) -> SplitSpec:
    """Visitors split once (GroupShuffleSplit over ALL visitors); cases and users follow them."""
    train_v, test_v = ranking.visitor_split(features["visitorid"].to_numpy(), TEST_SIZE, seed)
    is_test = np.isin(cands["visitorid"].to_numpy(), test_v)
    train, test = cands.loc[~is_test], cands.loc[is_test]
    overlap = np.intersect1d(np.unique(train["visitorid"]), np.unique(test["visitorid"])).size
    if overlap or np.intersect1d(train_v, test_v).size:
        raise DataError(f"group split: train and test share {overlap} visitors")
    unseen, unseen_share = _unseen_share(train, test)
    uv = features["visitorid"].to_numpy()
    info = {
        "method": f"GroupShuffleSplit by visitorid over all visitors, test_size {TEST_SIZE}, "
                  f"random_state {seed}",
        "train_visitors": int(train_v.size), "test_visitors": int(test_v.size),
        "visitor_overlap": int(overlap), "disjoint": True,
        "train_cases": int(train["case_id"].nunique()), "test_cases": int(test["case_id"].nunique()),
        "test_visitors_with_cases": int(test["visitorid"].nunique()),
        "test_cases_label_unseen_in_train": unseen, "test_label_unseen_share": unseen_share,
    }
    return SplitSpec(
        name="group",
        train=train, test=test,
        detector_train=features.loc[np.isin(uv, train_v)].reset_index(drop=True),
        detector_test=features.loc[np.isin(uv, test_v)].reset_index(drop=True),
        caption=f"test visitors ({TEST_SIZE:.0%} of visitors, split by visitor)",
        info=info,
    )


def temporal_split_spec(
    events: pd.DataFrame, cands: pd.DataFrame, features: pd.DataFrame, test_days: int = TEST_DAYS
) -> SplitSpec:
    """Cases whose labelled view is in the last test_days days are test; everything else trains."""
    before, _, cutoff = temporal_split(events, test_days)
    view_ts, ref_ts = case_times(events)
    cid = cands["case_id"].to_numpy(np.int64)
    # Consistency with ranking's case numbering: every case's t_ref is its previous view's time.
    if view_ts.size <= cid.max(initial=-1) or not np.array_equal(
        ref_ts[cid], cands["t_ref"].to_numpy(np.int64)
    ):
        raise DataError("temporal split: case view times disagree with ranking's case ids")
    is_test = view_ts[cid] >= cutoff
    train, test = cands.loc[~is_test], cands.loc[is_test]
    if train.empty or test.empty:
        raise DataError(f"temporal split: {len(train)} train and {len(test)} test candidate rows")
    test_vis = np.unique(test["visitorid"].to_numpy())
    unseen, unseen_share = _unseen_share(train, test)
    date = pd.Timestamp(cutoff, unit="ms", tz="UTC").isoformat()
    info = {
        "method": f"cases whose labelled view has timestamp >= max timestamp - {test_days} days "
                  "are test; their history may reach back before the cutoff (as a live system "
                  "sees it); detector, Markov statistics and rankers use earlier data only",
        "test_days": test_days, "cutoff_ms": cutoff, "cutoff_utc": date,
        "train_cases": int(train["case_id"].nunique()), "test_cases": int(test["case_id"].nunique()),
        "test_visitors_with_cases": int(test_vis.size),
        "test_visitors_also_in_train": int(np.isin(test_vis, np.unique(train["visitorid"])).sum()),
        "test_cases_label_unseen_in_train": unseen, "test_label_unseen_share": unseen_share,
        "detector_train_events": int(len(before)),
    }
    feats_before = anomaly.user_features(before)
    uv = features["visitorid"].to_numpy()
    return SplitSpec(
        name="temporal",
        train=train, test=test,
        detector_train=feats_before,
        # Test visitors are scored on all their events up to the end of the data (what an audit
        # at the end of the window sees), with the threshold frozen on pre-cutoff users.
        detector_test=features.loc[np.isin(uv, test_vis)].reset_index(drop=True),
        caption=f"visitors with a view in the last {test_days} days (from {date[:10]}), cases "
                "whose labelled view falls in that window",
        info=info,
    )


# ----------------------------------------------------------------------------------------------
# Task 2: detector quality
# ----------------------------------------------------------------------------------------------


def robust_z_scores(features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(max |z|, sum |z|) per user, z = robust z-score of log1p of every feature (median/MAD)."""
    X = np.log1p(features.loc[:, list(USER_FEATURES)].to_numpy(np.float64))
    med, scale = anomaly.robust_centre_scale(X)
    z = np.abs((X - med) / scale)
    return z.max(axis=1), z.sum(axis=1)


def detection_stats(
    flags: np.ndarray, scores: np.ndarray, truth: np.ndarray | None
) -> dict[str, Any]:
    """Flagged count, precision, recall and PR-AUC of one method (NaN without labels)."""
    out: dict[str, Any] = {"n_flagged": int(flags.sum())}
    if truth is None:
        out.update(precision=None, recall=None, pr_auc=None)
        return out
    tp = int((flags & truth).sum())
    out["precision"] = tp / flags.sum() if flags.any() else float("nan")
    out["recall"] = tp / truth.sum() if truth.any() else float("nan")
    out["pr_auc"] = pr_auc(truth, scores)
    return out


def stability(
    features: pd.DataFrame, share: float, seeds: Sequence[int], truth: np.ndarray | None,
    sample_seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """IsolationForest refitted with several seeds: pairwise Jaccard of flagged sets, PR-AUC spread."""
    n = len(features)
    if n > STABILITY_USER_CAP:
        idx = np.sort(np.random.default_rng(sample_seed).choice(n, STABILITY_USER_CAP, replace=False))
        features = features.iloc[idx].reset_index(drop=True)
        truth = None if truth is None else truth[idx]
    ids = features["visitorid"].to_numpy()
    flagged, aucs = [], []
    for s in seeds:  # a handful of seeds
        det = anomaly.fit_detector(features, share=share, seed=s)
        sc = det.score_samples(features)
        flagged.append(ids[flag_top_share(sc, share, ids)])
        if truth is not None:
            aucs.append(pr_auc(truth, sc))
    pairs = [jaccard(a, b) for a, b in combinations(flagged, 2)]
    out = {
        "method": "isolation_forest",
        "population": f"{len(features)} users" + (f" (fixed random sample of {n})" if n > len(features) else " (all)")
                      + f"; each seed flags its top {share:g} share",
        "seeds": list(seeds),
        "n_users": int(len(features)),
        "jaccard_pairwise_mean": float(np.mean(pairs)) if pairs else float("nan"),
        "jaccard_pairwise_min": float(np.min(pairs)) if pairs else float("nan"),
        "pr_auc_by_seed": aucs if truth is not None else None,
        "pr_auc_mean": float(np.mean(aucs)) if aucs else None,
        "pr_auc_std": float(np.std(aucs)) if aucs else None,
    }
    return out


def detector_quality(
    features: pd.DataFrame, labels: pd.DataFrame | None, share: float = DEFAULT_SHARE,
    seed: int = DEFAULT_SEED, seeds: Sequence[int] = STABILITY_SEEDS,
) -> dict[str, Any]:
    """IsolationForest vs the volume rule vs robust z at one share: quality, overlap, stability."""
    ids = features["visitorid"].to_numpy()
    truth = None if labels is None else np.isin(ids, labels["visitorid"].to_numpy())
    det = anomaly.fit_detector(_user_sample(features, DETECTOR_FIT_CAP, seed), share=share, seed=seed)
    z_max, z_sum = robust_z_scores(features)
    methods = {
        "isolation_forest": (det.score_samples(features),
                             "IsolationForest (core.anomaly.fit_detector, seed "
                             f"{seed}), score = -score_samples"),
        "volume_rule": (features["events_per_active_day"].to_numpy(np.float64),
                        "events_per_active_day (higher = more anomalous)"),
        "robust_z_max": (z_max, "max over the 16 features of |robust z| of log1p(feature)"),
        "robust_z_sum": (z_sum, "sum over the 16 features of |robust z| of log1p(feature)"),
    }
    flags = {m: flag_top_share(sc, share, ids) for m, (sc, _) in methods.items()}
    volume = ids[flags["volume_rule"]]
    population = (f"all {len(features)} visitors of the events; each method flags its top "
                  f"{share:g} share (round(share x n) users, ties by visitorid)")
    rows = []
    for m, (sc, desc) in methods.items():  # four methods
        row = {"method": m, "description": desc, "population": population, "share": share,
               "n_users": int(len(features)),
               **detection_stats(flags[m], sc, truth),
               "jaccard_with_volume_rule": jaccard(ids[flags[m]], volume)}
        if labels is not None and "kind" in labels.columns:
            kinds = labels.drop_duplicates("visitorid").set_index("visitorid")["kind"]
            kind_of = pd.Series(ids).map(kinds)
            flagged_kind = kind_of[flags[m]].value_counts()
            total_kind = kind_of.value_counts()
            row["recall_by_kind"] = {str(k): float(flagged_kind.get(k, 0) / v)
                                     for k, v in total_kind.items()}
        rows.append(row)
    lab = {"present": labels is not None}
    if truth is not None:
        lab.update(source="demo generator ground truth (visitors in labels are abnormal)",
                   n_abnormal=int(truth.sum()), base_rate=float(truth.mean()),
                   note="PR-AUC of a random score equals the base rate")
    else:
        lab["note"] = ("labels are absent (real data): precision, recall and PR-AUC cannot be "
                       "computed; only overlap and stability are reported")
    return {
        "title": "Task 2: detector quality at the operating share",
        "population": population,
        "share": share,
        "labels": lab,
        "methods": rows,
        "stability": stability(features, share, seeds, truth, seed),
    }


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def flat_table(splits: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The CSV table: every split x ranker x population (incl. switch-only) x metric x average."""
    rows = []
    for s in splits.values():
        rows.extend(s["metrics"])
        rows.extend(s["switch_only"]["metrics"])
    df = pd.DataFrame(rows)
    short = {"all": "all test visitors", "non_flagged": "non-flagged test visitors",
             "flagged": "flagged test visitors", "switch": "switch-only cases (all test visitors)"}
    df["population"] = df["population_key"].map(short)
    return df.loc[:, list(CSV_COLUMNS)]


def honest_evaluation(
    events: pd.DataFrame, labels: pd.DataFrame | None, seed: int = DEFAULT_SEED,
    share: float = DEFAULT_SHARE, n_boot: int = N_BOOT, test_days: int = TEST_DAYS,
    features: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The whole task-1 evaluation report (JSON-ready dict, not yet rounded)."""
    t0 = time.perf_counter()
    cands, rare = prepared_cases(events)
    if features is None:
        features = anomaly.user_features(events)
    log.info("honest evaluation: candidates and user features %.1fs", time.perf_counter() - t0)
    top_ns = markov_top_ns_for(len(events))
    splits = {
        "group": evaluate_split(group_split_spec(cands, features, seed), share, seed, labels, n_boot,
                                top_ns["group"]),
        "temporal": evaluate_split(temporal_split_spec(events, cands, features, test_days), share,
                                   seed, labels, n_boot, top_ns["temporal"]),
    }
    return {
        "title": "Task 1: same-population evaluation of rankers trained on raw vs cleaned events",
        "population": "every figure is on test cases only; each table row names its population",
        "settings": {
            "seed": seed, "share": share, "n_boot": n_boot, "ci_level": CI_LEVEL,
            "ci_method": "percentile bootstrap over test visitors (resampled with replacement)",
            "test_size": TEST_SIZE, "test_days": test_days, "learner": LEARNER,
            "learner_note": "ranking.make_estimator('hgb') = HistGradientBoostingClassifier; the "
                            "same learner for the raw, clean and Markov rankers",
            "train_row_cap": TRAIN_ROW_CAP, "threads": EVAL_THREADS, "markov_top_ns": {k: list(v) for k, v in top_ns.items()},
            "detector_fit_cap": DETECTOR_FIT_CAP, "stability_user_cap": STABILITY_USER_CAP,
            "lookback": LOOKBACK, "window_ms": WINDOW_MS,
        },
        "definitions": DEFINITIONS,
        "rare_labels": rare,
        "splits": splits,
    }


DEFINITIONS: dict[str, str] = {
    "coverage": "share of cases whose true next category is among the candidates",
    "top1": "among covered cases, share with the true category ranked first",
    "top3": "among covered cases, share with the true category in the first three",
    "top1_all": "share of ALL cases with the true category ranked first (= top1 x coverage)",
    "top3_all": "share of ALL cases with the true category in the first three",
    "per case": "hits / cases pooled over every case of the population",
    "per visitor": "mean over visitors of each visitor's own hit rate (visitors with >= 1 case "
                   "in the metric's denominator)",
    "ci": "95% percentile bootstrap: visitors resampled with replacement, all their cases kept",
    "switch": "cases whose true next category differs from the last viewed category",
    "markov only coverage": "share of cases with P(y | last category) > 0 under the training "
                            "transitions (y reachable in the full ranking of all categories)",
    "flagged": "visitors whose anomaly score is >= the threshold frozen on the training users",
}


def write_all(
    events: pd.DataFrame, labels: pd.DataFrame | None, seed: int = DEFAULT_SEED,
    share: float = DEFAULT_SHARE, out: str | Path = ".", n_boot: int = N_BOOT,
) -> dict[str, Any]:
    """Write the honest-evaluation, Markov-candidate and detector-quality JSON/CSV files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    features = anomaly.user_features(events)
    report = honest_evaluation(events, labels, seed, share, n_boot, features=features)
    t1 = time.perf_counter()
    quality = detector_quality(features, labels, share, seed)
    t2 = time.perf_counter()
    artifacts.write_json(report, out / HONEST_JSON, decimals=REPORT_DECIMALS)
    flat_table(report["splits"]).to_csv(out / HONEST_CSV, index=False, float_format="%.6f")
    markov_rows = pd.DataFrame(
        [r for s in report["splits"].values() for r in s["markov_candidates"]["rows"]]
    ).reindex(columns=list(MARKOV_CSV_COLUMNS))
    markov_rows.to_csv(out / MARKOV_CSV, index=False, float_format="%.6f")
    artifacts.write_json(quality, out / DETECTOR_JSON, decimals=REPORT_DECIMALS)
    pd.DataFrame(quality["methods"]).drop(columns=["recall_by_kind"], errors="ignore").to_csv(
        out / DETECTOR_CSV, index=False, float_format="%.6f"
    )
    timings = {"task1_s": round(t1 - t0, 2), "task2_s": round(t2 - t1, 2),
               "total_s": round(time.perf_counter() - t0, 2)}
    log.info("honest evaluation written to %s: %s", out, timings)
    return {"report": report, "quality": quality, "timings": timings}
