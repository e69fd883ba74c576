"""Judging detectors against known labels: PR-AUC, precision/recall, what happens to buyers.

Accepts a ``kind`` column in the labels (per-kind recall) and an optional frame of normal
look-alike visitors (scored with the threshold fitted on the main features, never fitted on).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.anomaly.detector import Detector, make_detector
from core.base.schema import DEFAULT_SHARE, USER_FEATURES
from core.base.stats import pr_auc


def _kind_of(features: pd.DataFrame, labels: pd.DataFrame | None) -> np.ndarray:
    """Each user's labelled kind ("" when not labelled abnormal)."""
    ids = features["visitorid"].to_numpy()
    if labels is None or labels.empty:
        return np.full(len(ids), "", dtype=object)
    kind = labels["kind"] if "kind" in labels.columns else pd.Series("bot", index=labels.index)
    m = pd.Series(kind.astype(str).to_numpy(), index=labels["visitorid"].to_numpy())
    m = m[~m.index.duplicated()]
    return pd.Series(ids).map(m).fillna("").to_numpy(object)


def detector_report(
    features: pd.DataFrame,
    labels: pd.DataFrame | None,
    lookalikes: pd.DataFrame | None,
    detectors: dict[str, Detector | str],
    shares: tuple[float, ...] = (DEFAULT_SHARE,),
) -> pd.DataFrame:
    """One row per (detector, share): PR-AUC on known bots, precision/recall, per-kind recall,
    normal buyers flagged, transactions held by flagged users, look-alike kinds flagged.

    ``labels``: visitorid + kind of the known bots. ``lookalikes``: feature rows of normal
    look-alike visitors with a ``kind`` column; they are scored with the threshold fitted on
    ``features`` and never enter the fit. A detector given as a string is the named raw-feature
    rule (e.g. "events" = the volume rule), thresholded at the same training quantile.
    Each detector is refitted on ``features`` (its parameters, that share) at each share.
    """
    kind = _kind_of(features, labels)
    bot = kind != ""
    buyer = (features["transaction"].to_numpy(np.float64) > 0) & ~bot
    txn = features["transaction"].to_numpy(np.float64)
    kinds = sorted(set(kind[bot]))
    la_kinds = [] if lookalikes is None else sorted(lookalikes["kind"].astype(str).unique())
    rows = []
    for name, det in detectors.items():  # a handful of detectors
        for share in shares:
            if isinstance(det, str):
                s = features[det].to_numpy(np.float64)
                thr = float(np.quantile(s, 1.0 - share))
                s_la = None if lookalikes is None else lookalikes[det].to_numpy(np.float64)
            else:
                fitted = make_detector(det.name, **{**det.get_params(), "share": share})
                fitted.fit(features.loc[:, list(USER_FEATURES)])
                s = fitted.score_samples(features)
                thr = fitted.threshold_
                s_la = None if lookalikes is None else fitted.score_samples(lookalikes)
            flag = s >= thr
            row: dict[str, Any] = {
                "detector": name,
                "share": share,
                "threshold": thr,
                "flagged_share": flag.mean(),
                "pr_auc": pr_auc(bot, s),
                "precision": (flag & bot).sum() / max(flag.sum(), 1),
                "recall": (flag & bot).sum() / max(bot.sum(), 1),
                "normal_buyers_flagged": (flag & buyer).sum() / max(buyer.sum(), 1),
                "txn_held_by_flagged": txn[flag].sum() / max(txn.sum(), 1.0),
            }
            for k in kinds:
                row[f"recall_{k}"] = flag[kind == k].mean()
            for k in la_kinds:
                # la_kinds is empty without look-alikes, and then s_la is None too
                assert lookalikes is not None and s_la is not None
                m = lookalikes["kind"].astype(str).to_numpy() == k
                row[f"lookalike_{k}_flagged"] = (s_la[m] >= thr).mean()
            rows.append(row)
    return pd.DataFrame(rows)
