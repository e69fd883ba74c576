"""One uploaded batch of users, scored the way the dashboard and ``python -m core score`` both do it.

How the flags were set (the mode), the columns and file metadata every scored download carries,
the drift summary, and fitting a detector on the batch itself: one place, so the command's output
is byte-for-byte the dashboard's download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.anomaly.detector import DETECTOR_FIT_CAP, Detector, fit_detector, fit_sample
from core.anomaly.drift import MIN_DRIFT_ROWS, DriftReference, drift_report, frozen_share
from core.anomaly.scoring import provenance
from core.anomaly.validation import FeatureMatrix
from core.base.json_ready import json_ready
from core.base.schema import DEFAULT_SEED


@dataclass(frozen=True)
class BatchFit:
    """A detector fitted on the batch being scored: how many rows it saw and with which seed."""

    detector: Detector
    fit_rows: int
    seed: int


def fit_on_batch(
    features: pd.DataFrame,
    scorable: np.ndarray,
    name: str,
    seed: int = DEFAULT_SEED,
    cap: int = DETECTOR_FIT_CAP,
) -> BatchFit:
    """The named detector fitted on the batch's scorable rows (a fixed random sample of ``cap``
    rows when there are more, as the build does). Its scores do not depend on a share: the
    batch's own quantile flags them (``flag_scores``), so one fit serves every share."""
    rows = features.loc[scorable] if not scorable.all() else features
    sample = fit_sample(rows, cap, seed)
    detector = fit_detector(sample, name, seed=seed, fingerprint="this batch")
    return BatchFit(detector, len(sample), seed)


def mode_label(share: float | None, fit: BatchFit | None = None) -> str:
    """How the flags were set, in words: the frozen threshold, a share of the batch, or a fit on it."""
    if share is None:
        return "frozen threshold"
    if fit is None:
        return f"top {round(100 * share)}% of this batch"
    return f"fitted on this batch, top {round(100 * share)}%"  # the seed and fit rows are columns of their own


def batch_drift(
    features: pd.DataFrame,
    scorable: np.ndarray,
    scores: np.ndarray,
    detector: Detector,
    reference: DriftReference | None,
) -> dict[str, object] | None:
    """The drift report of the batch with the share the frozen threshold flags in it (before the
    buyer policy) next to the share it was set for; None when the build has no reference."""
    if reference is None:
        return None
    return drift_report(
        features,
        reference,
        scorable,
        frozen_flagged_share=frozen_share(scores, float(detector.threshold_)),
        expected_flagged_share=float(detector.share),
    )


def api_drift(
    features: pd.DataFrame | FeatureMatrix,
    scorable: np.ndarray,
    scores: np.ndarray,
    detector: Detector,
    reference: DriftReference | None,
) -> dict[str, object] | None:
    """The JSON-ready drift summary of an API answer: only for batches of MIN_DRIFT_ROWS or more
    scorable users (a one-user request pays nothing for it)."""
    if int(np.count_nonzero(scorable)) < MIN_DRIFT_ROWS:
        return None
    table = features.frame() if isinstance(features, FeatureMatrix) else features
    return json_ready(batch_drift(table, scorable, scores, detector, reference))


def output_constants(
    detector: Detector,
    protect_buyers: bool,
    threshold: float,
    mode: str,
    drift: dict[str, object] | None = None,
    fit: BatchFit | None = None,
) -> dict[str, object]:
    """The columns every row of a scored download carries: detector, policy, threshold, mode,
    the seed and fit rows of a fit on the batch, and, when the build has a drift reference, the batch's drift verdict (the verdict only: a
    longer text is repeated on every CSV row; the parquet metadata holds the full report)."""
    out = {**provenance(detector, protect_buyers, threshold), "mode": mode}
    if fit is not None:  # "fitted on this batch": with which seed and on how many rows
        out |= {"fit_seed": fit.seed, "fit_rows": fit.fit_rows}
    if drift is not None:
        out["drift"] = str(drift["verdict"])
    return out


def output_metadata(constants: dict[str, object], drift: dict[str, object] | None) -> dict[str, str]:
    """The parquet download's key-value metadata: the constants as text and the full drift report."""
    meta = {k: str(v) for k, v in constants.items()}
    if drift is not None:
        meta["drift_report"] = json.dumps(json_ready(drift), sort_keys=True)
    return meta
