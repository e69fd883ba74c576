"""Drift of a batch of users against the training users: the population stability index (PSI).

The build stores, per feature, bins and the training users' share in each (``drift_reference``);
a batch is binned the same way and compared bin by bin (``drift_report``). Nothing of the training
rows themselves is needed at scoring time. The rules are docs/DATA_CONTRACT.md, "Drift".
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.anomaly.validation import numeric
from core.base.errors import DataError
from core.base.schema import USER_FEATURES

DRIFT_BINS = 10  # quantile bins per feature; a feature with at most this many values gets one bin per value
PSI_FLOOR = 1e-4  # an empty bin's share before the log, on both sides: keeps every PSI finite
MODERATE_PSI = 0.1
DRIFT_PSI = 0.25
MIN_DRIFT_ROWS = 200  # below this many scorable rows the bin shares are too noisy for a verdict
VERDICTS = ("no drift", "moderate drift", "drift", "too few rows")


class FeatureReference(BaseModel):
    """One feature's bins and the training users' share in each.

    ``kind="values"``: one bin per training value (``values``, ascending) plus a last "other" bin
    for anything else. ``kind="quantiles"``: bins (-inf, e1], (e1, e2], ..., (ek, +inf) on ``edges``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["values", "quantiles"]
    values: list[float] = Field(default_factory=list, max_length=1000)
    edges: list[float] = Field(default_factory=list, max_length=1000)
    shares: list[float] = Field(min_length=1, max_length=1001)

    @model_validator(mode="after")
    def _bins_match(self) -> FeatureReference:
        """The number of shares is the number of bins the values or edges make."""
        n_bins = len(self.values) + 1 if self.kind == "values" else len(self.edges) + 1
        if len(self.shares) != n_bins:
            raise ValueError(f"{self.kind} reference has {len(self.shares)} shares for {n_bins} bins")
        if any(not 0 <= s <= 1 for s in self.shares):
            raise ValueError("a bin share is outside [0, 1]")
        return self


class DriftReference(BaseModel):
    """The reference of every feature, from the training users (written by the build)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bins: int = Field(ge=2, le=1000)
    n_users: int = Field(ge=1)
    population: str = Field(max_length=500)
    features: dict[str, FeatureReference]


def _values(column: pd.Series | np.ndarray) -> np.ndarray:
    """A feature column as finite float64 values (NaN and infinities dropped)."""
    x = numeric(column) if isinstance(column, pd.Series) else np.asarray(column, np.float64)
    return x[np.isfinite(x)]


def feature_reference(column: pd.Series | np.ndarray, bins: int = DRIFT_BINS) -> FeatureReference:
    """Bins of one feature and the share of the given (training) values in each."""
    if int(bins) != bins or bins < 2:
        raise DataError(f"bins must be an integer of at least 2, got {bins!r}.")
    x = _values(column)
    if x.size == 0:
        raise DataError("A drift reference needs at least one finite value per feature.")
    distinct = np.unique(x)
    if distinct.size <= bins:
        values = distinct.tolist()
        return FeatureReference(kind="values", values=values, shares=_shares(x, "values", values).tolist())
    # Percentiles 100/bins, ..., 100 (bins-1)/bins with numpy's linear interpolation; ties merge edges.
    edges = np.unique(np.percentile(x, np.arange(1, bins) * (100.0 / bins))).tolist()
    return FeatureReference(kind="quantiles", edges=edges, shares=_shares(x, "quantiles", edges).tolist())


def _bin_index(x: np.ndarray, kind: str, points: list[float]) -> np.ndarray:
    """The bin of every value: a value's own bin or "other" (last), or its quantile interval."""
    p = np.asarray(points, np.float64)
    if kind == "quantiles":
        return np.searchsorted(p, x, side="left")  # x == e_i falls in (e_{i-1}, e_i], right-closed
    pos = np.minimum(np.searchsorted(p, x), p.size - 1)
    return np.where(p[pos] == x, pos, p.size)  # a value never seen in training goes to "other"


def _shares(x: np.ndarray, kind: str, points: list[float]) -> np.ndarray:
    """The share of x in each bin (all zero for no values)."""
    counts = np.bincount(_bin_index(x, kind, points), minlength=len(points) + 1).astype(np.float64)
    return counts / x.size if x.size else counts


def psi(batch_shares: np.ndarray, reference_shares: np.ndarray) -> float:
    """sum (p - q) ln(p / q) with both shares floored at PSI_FLOOR (an empty bin stays finite)."""
    p = np.maximum(np.asarray(batch_shares, np.float64), PSI_FLOOR)
    q = np.maximum(np.asarray(reference_shares, np.float64), PSI_FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


def band(value: float) -> str:
    """'no drift' below 0.1, 'moderate drift' below 0.25, else 'drift'."""
    return "drift" if value >= DRIFT_PSI else "moderate drift" if value >= MODERATE_PSI else "no drift"


def drift_reference(
    features: pd.DataFrame, bins: int = DRIFT_BINS, population: str = "training users"
) -> DriftReference:
    """The reference of each of the 16 features, from a table of (training) users."""
    return DriftReference(
        bins=int(bins),
        n_users=len(features),
        population=population,
        features={f: feature_reference(features[f], bins) for f in USER_FEATURES},
    )


def drift_report(
    features: pd.DataFrame,
    reference: DriftReference,
    scorable: np.ndarray | None = None,
    *,
    frozen_flagged_share: float | None = None,
    expected_flagged_share: float | None = None,
) -> dict[str, object]:
    """PSI of every feature of the batch's scorable rows against the reference, and the verdict.

    ``frozen_flagged_share`` (the share the frozen threshold flags in this batch) is reported next
    to ``expected_flagged_share`` (the share it was set for on the training users).
    """
    mask = np.ones(len(features), bool) if scorable is None else np.asarray(scorable, bool)
    n = int(mask.sum())
    out: dict[str, dict[str, object]] = {}
    for name, ref in reference.features.items():  # a loop over the 16 features
        x = _values(numeric(features[name])[mask])
        points = ref.values if ref.kind == "values" else ref.edges
        value = psi(_shares(x, ref.kind, points), np.asarray(ref.shares)) if x.size else float("nan")
        out[name] = {"psi": value, "band": band(value), "drifted": bool(value >= DRIFT_PSI)}
    drifted = sorted((f for f, r in out.items() if r["drifted"]), key=lambda f: -float(out[f]["psi"]))  # type: ignore[arg-type]
    moderate = [f for f, r in out.items() if r["band"] == "moderate drift"]
    if n < MIN_DRIFT_ROWS:
        verdict = "too few rows"
    else:
        verdict = "drift" if drifted else "moderate drift" if moderate else "no drift"
    return {
        "verdict": verdict,
        "rows": n,
        "min_rows": MIN_DRIFT_ROWS,
        "reference_population": f"{reference.n_users:,} {reference.population}",
        "features": out,
        "drifted_features": drifted,
        "moderate_features": moderate,
        "expected_flagged_share": expected_flagged_share,
        "frozen_flagged_share": frozen_flagged_share,
    }


def frozen_share(scores: np.ndarray, threshold: float) -> float | None:
    """The share of finite scores at or above the frozen threshold (before the buyer policy)."""
    finite = scores[np.isfinite(scores)]
    return float(np.mean(finite >= threshold)) if finite.size else None


def drift_sentence(report: dict[str, object]) -> str:
    """The verdict in one plain-text line (no markup), for captions and downloads."""
    verdict = str(report["verdict"])
    if verdict == "too few rows":
        return f"too few rows for a drift verdict ({report['rows']:,} scorable, at least {report['min_rows']} needed)"
    feats: dict[str, dict[str, float]] = report["features"]  # type: ignore[assignment]
    worst = max(feats, key=lambda f: np.nan_to_num(feats[f]["psi"], nan=-1.0))
    return f"{verdict} (largest PSI {feats[worst]['psi']:.3f} on {worst})"
