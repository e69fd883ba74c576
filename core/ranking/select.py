"""Which ranker is served: a learned ranker only when it earns it against the simple baselines.

The rule (README, "Which ranker is served"): on the validation split (visitors carved out of
train; test is never used), take the best simple baseline and the best learned ranker by
top1_all. The learned ranker is served only when its paired difference in top1_all over the
baseline has a visitor-bootstrap 95% interval entirely above zero; otherwise the baseline is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.base.errors import DataError
from core.base.schema import DEFAULT_SEED
from core.base.stats import CI_LEVEL, N_BOOT, paired_difference_ci

SELECTION_METRIC = "top1_all"


def _best(names: Sequence[str], value: Mapping[str, float]) -> str | None:
    """The name with the highest value; ties keep the earlier (simpler) name."""
    return max(names, key=lambda r: (value[r], -list(names).index(r))) if names else None


def serving_choice(
    validation: Mapping[str, pd.DataFrame],
    baselines: Sequence[str],
    learned: Sequence[str],
    seed: int = DEFAULT_SEED,
    n_boot: int = N_BOOT,
) -> dict[str, Any]:
    """The served ranker and why, from per-case validation outcomes (case_outcomes) by name.

    Every outcome table must be on the same validation cases (paired comparison).
    """
    names = [*baselines, *learned]
    if not names:
        raise ValueError("serving_choice needs at least one ranker")
    ref = validation[names[0]]
    for name in names[1:]:
        if not np.array_equal(validation[name]["case_id"].to_numpy(), ref["case_id"].to_numpy()):
            raise DataError(f"serving_choice: {name!r} is not on the same validation cases as {names[0]!r}")
    n = len(ref)
    top1_all = {r: float(validation[r]["hit1"].sum() / n) if n else float("nan") for r in names}
    base, learn = _best(list(baselines), top1_all), _best(list(learned), top1_all)
    record: dict[str, Any] = {
        "split": "validation (visitors carved out of train; test never used)",
        "metric": SELECTION_METRIC,
        "n_cases": int(n),
        "n_visitors": int(ref["visitorid"].nunique()),
        "validation_top1_all": top1_all,
        "best_baseline": base,
        "best_learned": learn,
        "ci_level": CI_LEVEL,
        "n_boot": n_boot,
        "ci_method": "paired percentile bootstrap over validation visitors",
        "difference": None,
    }
    if base is None or learn is None:  # nothing to compare: the only kind present is served
        served = learn if base is None else base
        record.update(
            served=served, learned_served=base is None, reason=f"{served} is the best {SELECTION_METRIC} on validation"
        )
        return record
    diff = paired_difference_ci(
        validation[learn]["hit1"].to_numpy(),
        validation[base]["hit1"].to_numpy(),
        ref["visitorid"].to_numpy(),
        n_boot,
        seed,
    )
    earns = bool(np.isfinite(diff["ci_low"]) and diff["ci_low"] > 0)
    served = learn if earns else base
    margin = (
        f"{learn} minus {base} in validation {SELECTION_METRIC}: {diff['value']:+.4f} "
        f"(95% CI {diff['ci_low']:+.4f} to {diff['ci_high']:+.4f}, {n:,} cases of "
        f"{record['n_visitors']:,} visitors)"
    )
    reason = (
        f"{learn} is served: it beats the best simple baseline, {base}; {margin}"
        if earns
        else f"The baseline {base} is served: the best learned ranker, {learn}, does not beat it by a "
        f"margin whose 95% interval lies above zero; {margin}"
    )
    record.update(difference=diff, served=served, learned_served=earns, reason=reason)
    return record


def best_test_row(rows: pd.DataFrame, best: str | None) -> pd.Series | None:
    """The test-split metrics row of the served ranker.

    Served names may extend a ranker name with its candidate set (``hgb_markov5`` is ``hgb`` on
    history + Markov candidates), so an exact match wins, else the longest ranker name that
    prefixes it, on a Markov candidate set when the name says so.
    """
    if best is None or rows.empty or "ranker" not in rows:
        return None
    test = rows[rows["split"] == "test"] if "split" in rows else rows
    exact = test[test["ranker"] == best]
    if len(exact):
        return exact.iloc[0]
    prefix = test[[best.startswith(str(r)) for r in test["ranker"]]]
    if "candidate_set" in prefix:
        wants_markov = "markov" in best.lower()
        prefix = prefix[prefix["candidate_set"].str.lower().str.contains("markov") == wants_markov]
    if prefix.empty:
        return None
    return prefix.loc[prefix["ranker"].str.len().idxmax()]
