"""``python -m core score``: the anomaly page's scoring of one file, for files beyond its budget.

OUT is byte for byte the page's scored download for the same file and choices: both are written by
``core.userfiles.export`` with the constants of ``core.anomaly.batch``. No row limit but the machine's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.anomaly import batch
from core.anomaly.labels import label_metrics, match_labels, read_labels
from core.anomaly.policy import DEFAULT_PROTECT_BUYERS, policy_label
from core.anomaly.scoring import flag_scores, score_rows
from core.anomaly.validation import validate_features
from core.base.errors import DataError
from core.base.schema import DEFAULT_SEED
from core.store import artifacts as A
from core.userfiles.export import cleaned_csv_bytes, cleaned_parquet_bytes, scored_csv_bytes, scored_parquet_bytes
from core.userfiles.uploads import read_upload

OUT_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class ScoreOptions:
    """What ``python -m core score`` was asked to do."""

    input: str
    out: str
    detector: str | None = None
    share: float | None = None
    fit_on_batch: bool = False
    protect_buyers: bool = DEFAULT_PROTECT_BUYERS
    labels: str | None = None
    report: str | None = None
    cleaned_events: str | None = None
    seed: int = DEFAULT_SEED
    artifact_dir: str | None = None


def _suffix(path: str, what: str) -> str:
    """'.csv' or '.parquet' of an output path; a DataError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUT_SUFFIXES:
        raise DataError(f"{what} {path!r} must end in .csv or .parquet.")
    return suffix


def run(opts: ScoreOptions) -> dict[str, Any]:
    """Score the input, write OUT (and the cleaned events), return the report."""
    out_suffix = _suffix(opts.out, "OUT")
    clean_suffix = _suffix(opts.cleaned_events, "--cleaned-events") if opts.cleaned_events else None
    if opts.fit_on_batch and opts.share is None:
        raise DataError("--fit-on-batch needs --share S: the share of this batch to flag.")
    arts = A.load_artifacts(opts.artifact_dir)
    served = A.require(arts.detector, "anomaly detector")
    name = opts.detector or served.name
    frozen = arts.detectors.get(name)
    if frozen is None:
        raise DataError(f"--detector must be one of {sorted(arts.detectors)}, got {name!r}.")
    path = Path(opts.input)
    if not path.is_file():
        raise DataError(f"INPUT {opts.input!r} is not a file.")
    up = read_upload(path.name, path.read_bytes(), limits=False)
    df = up.features
    val = validate_features(df)
    if val.missing_columns:
        raise DataError(" ".join(val.messages()))
    frozen_scores = score_rows(df, val.scorable, frozen)
    fit = batch.fit_on_batch(df, val.scorable, name, opts.seed) if opts.fit_on_batch else None
    detector = frozen if fit is None else fit.detector
    scores = frozen_scores if fit is None else score_rows(df, val.scorable, detector)
    flagged = flag_scores(scores, opts.share, detector, df, protect_buyers=opts.protect_buyers)
    flags = flagged["is_anomaly"].to_numpy()
    threshold = float(flagged["threshold"].iloc[0]) if len(flagged) else float("nan")
    drift = batch.batch_drift(df, val.scorable, frozen_scores, frozen, arts.drift_reference)
    mode = batch.mode_label(opts.share, fit)
    constants = batch.output_constants(detector, opts.protect_buyers, threshold, mode, drift, fit)
    metadata = batch.output_metadata(constants, drift)
    data = (
        scored_csv_bytes(df, scores, flags, constants)
        if out_suffix == ".csv"
        else scored_parquet_bytes(df, scores, flags, constants, metadata)
    )
    Path(opts.out).write_bytes(data)
    del data
    if opts.cleaned_events:
        if up.events is None:
            raise DataError("--cleaned-events needs raw events as INPUT (timestamp,visitorid,event,itemid,...).")
        ids = df["visitorid"].to_numpy()[flags]
        clean = (
            cleaned_csv_bytes(up.events, ids)
            if clean_suffix == ".csv"
            else cleaned_parquet_bytes(
                up.events, ids, {**metadata, "cleaning": "every event of the flagged visitors removed"}
            )
        )
        Path(opts.cleaned_events).write_bytes(clean)
    n_scored = int(np.isfinite(scores).sum())
    report: dict[str, Any] = {
        "input": path.name,
        "kind": up.kind,
        "rows": len(df),
        "scored": n_scored,
        "flagged": int(flags.sum()),
        "flagged_share": int(flags.sum()) / n_scored if n_scored else None,
        "detector": detector.name,
        "policy": policy_label(opts.protect_buyers),
        "mode": mode,
        "threshold": threshold,
        "drift": drift,
        "duplicates_dropped": up.duplicates_dropped,
    }
    if fit is not None:
        report["fit"] = {"seed": fit.seed, "fit_rows": fit.fit_rows}
    if opts.labels:
        lpath = Path(opts.labels)
        if not lpath.is_file():
            raise DataError(f"--labels {opts.labels!r} is not a file.")
        y, unknown = match_labels(read_labels(lpath.name, lpath.read_bytes()), df["visitorid"].to_numpy())
        report["labels"] = {**label_metrics(y, scores, flags, seed=opts.seed), "unknown_visitorids": unknown}
    if opts.report:
        A.write_json(report, Path(opts.report))
    return report
