"""Metric tables of the evaluation: metric x average rows with paired bootstrap CIs, headlines, CSV."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.base.errors import DataError
from core.base.schema import DEFAULT_SEED, METRICS
from core.base.stats import (
    AVERAGES,
    BOOT_BLOCK_CELLS,
    CI_LEVEL,
    N_BOOT,
    bootstrap_replicates,
    percentile_ci,
    point_estimates,
    visitor_sums,
)
from core.ranking.metrics import rates

# metric -> (numerator, denominator) columns of the per-case outcome table.
METRIC_PARTS: dict[str, tuple[str, str]] = {
    "coverage": ("covered", "one"),
    "top1": ("hit1", "covered"),
    "top3": ("hit3", "covered"),
    "top1_all": ("hit1", "one"),
    "top3_all": ("hit3", "one"),
    "mrr5": ("rr5", "one"),  # on request: MRR@5 over all cases
}
POPULATION_KEYS: tuple[str, ...] = ("all", "non_flagged", "flagged")
CSV_COLUMNS: tuple[str, ...] = (
    "split",
    "ranker",
    "population",
    "metric",
    "average",
    "value",
    "ci_low",
    "ci_high",
    "n_cases",
    "n_visitors",
)
MARKOV_CSV_COLUMNS: tuple[str, ...] = (
    "candidate_set",
    "split",
    "ranker",
    "coverage",
    "top1_all",
    "top3_all",
    "top1",
    "top3",
    "n_cases",
    "n_covered",
    "coverage_ci_low",
    "coverage_ci_high",
    "top1_all_ci_low",
    "top1_all_ci_high",
    "top3_all_ci_low",
    "top3_all_ci_high",
)


def metric_rows_multi(
    arms: dict[str, pd.DataFrame],
    n_boot: int = N_BOOT,
    seed: int = DEFAULT_SEED,
    metrics: Sequence[str] = METRICS,
    level: float = CI_LEVEL,
    diffs: Sequence[tuple[str, str]] = (),
    block_cells: int = BOOT_BLOCK_CELLS,
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
    values = (
        np.column_stack([arms[a][cols].to_numpy(np.float64) for a in names])
        if len(ref)
        else (np.zeros((0, len(cols) * len(names))))
    )
    sums, _ = visitor_sums(ref["visitorid"].to_numpy(), values)
    k = len(cols)
    h = np.column_stack([sums[:, i * k + cols.index(col)] for i in range(len(names)) for col in num_cols])
    c = np.column_stack([sums[:, i * k + cols.index(col)] for i in range(len(names)) for col in den_cols])
    h, c = h.reshape(len(sums), -1), c.reshape(len(sums), -1)
    reps = dict(zip(AVERAGES, bootstrap_replicates(h, c, n_boot, seed, block_cells)))
    point = point_estimates(h, c)
    m = len(metrics)

    def rows_for(
        j0: int, value: dict[str, np.ndarray], rep: dict[str, np.ndarray], counts_from: int
    ) -> list[dict[str, Any]]:
        out = []
        for j, metric in enumerate(metrics):
            for avg in AVERAGES:
                lo, hi = percentile_ci(rep[avg][:, [j]], level)
                den = c[:, counts_from + j]
                out.append(
                    {
                        "metric": metric,
                        "average": avg,
                        "value": float(value[avg][j0 + j]),
                        "ci_low": float(lo[0]),
                        "ci_high": float(hi[0]),
                        "n_cases": int(round(den.sum())),
                        "n_visitors": int((den > 0).sum()),
                    }
                )
        return out

    result: dict[str, list[dict[str, Any]]] = {}
    for i, name in enumerate(names):
        result[name] = rows_for(i * m, point, {a: reps[a][:, i * m : (i + 1) * m] for a in AVERAGES}, i * m)
    for a_name, b_name in diffs:
        ia, ib = names.index(a_name) * m, names.index(b_name) * m
        value = {avg: point[avg][ia : ia + m] - point[avg][ib : ib + m] for avg in AVERAGES}
        rep = {avg: reps[avg][:, ia : ia + m] - reps[avg][:, ib : ib + m] for avg in AVERAGES}
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
    n, cov, hit1, hit3 = (int(tot[c]) for c in ("one", "covered", "hit1", "hit3"))
    out = {
        "n_cases": n,
        "n_covered": cov,
        "n_visitors": int(outcomes["visitorid"].nunique()),
        **rates(n, cov, hit1, hit3),
    }
    if "rr5" in outcomes:
        out["mrr5"] = float(outcomes["rr5"].sum() / n) if n else float("nan")
    return out


def flat_table(splits: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The CSV table: every split x ranker x population (incl. switch-only) x metric x average."""
    rows = []
    for s in splits.values():
        rows.extend(s["metrics"])
        rows.extend(s["switch_only"]["metrics"])
    df = pd.DataFrame(rows)
    short = {
        "all": "all test visitors",
        "non_flagged": "non-flagged test visitors",
        "flagged": "flagged test visitors",
        "switch": "switch-only cases (all test visitors)",
    }
    df["population"] = df["population_key"].map(short)
    return df.loc[:, list(CSV_COLUMNS)]
