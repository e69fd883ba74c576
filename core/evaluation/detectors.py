"""Task 2 detector quality: every registered detector vs the volume rule, and seed stability."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from core.anomaly.detector import DETECTOR_FIT_CAP, DETECTORS, Detector, fit_detector, fit_sample
from core.anomaly.policy import DEFAULT_PROTECT_BUYERS, apply_policy, policy_label
from core.base import arrays
from core.base.schema import DEFAULT_SEED, DEFAULT_SHARE
from core.base.stats import flag_top_share, jaccard, pr_auc
from core.evaluation.splits import SplitSpec

STABILITY_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
# IsolationForest stability is measured on at most this many users (a fixed random sample).
STABILITY_USER_CAP = 50_000


def fit_and_flag(
    spec: SplitSpec,
    share: float,
    seed: int,
    labels: pd.DataFrame | None,
    protect_buyers: bool = DEFAULT_PROTECT_BUYERS,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Default detector fitted on the split's training users, flags after the buyer policy;
    flagged train ids, flagged test ids, info."""
    fit_users = fit_sample(spec.detector_train, DETECTOR_FIT_CAP, seed)
    det = fit_detector(fit_users, share=share, seed=seed)
    # Only training visitors that have cases matter for cleaning the training cases.
    dv = spec.detector_train["visitorid"].to_numpy()
    with_cases = spec.detector_train.loc[np.isin(dv, arrays.unique(spec.train["visitorid"].to_numpy()))]
    tr_flag = det.score_samples(with_cases) >= det.threshold_ if len(with_cases) else np.zeros(0, bool)
    tr_flag = apply_policy(tr_flag, with_cases, protect_buyers)
    te_scores = det.score_samples(spec.detector_test) if len(spec.detector_test) else np.zeros(0)
    te_flag = apply_policy(te_scores >= det.threshold_, spec.detector_test, protect_buyers)
    flagged_train = with_cases["visitorid"].to_numpy()[tr_flag]
    flagged_test = spec.detector_test["visitorid"].to_numpy()[te_flag]
    test_case_vis = arrays.unique(spec.test["visitorid"].to_numpy())
    info: dict[str, Any] = {
        "population": f"detector fitted on the {spec.name} split's training users only; its "
        f"threshold is frozen at their (1 - {share:g}) score quantile and applied to test visitors",
        "detector": det.name,
        "policy": policy_label(protect_buyers),
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


def detection_stats(flags: np.ndarray, scores: np.ndarray, truth: np.ndarray | None) -> dict[str, Any]:
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
    features: pd.DataFrame,
    share: float,
    seeds: Sequence[int],
    truth: np.ndarray | None,
    sample_seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """The isolation_forest detector refitted with several seeds: pairwise Jaccard of flagged
    sets, PR-AUC spread."""
    n = len(features)
    if n > STABILITY_USER_CAP:
        idx = np.sort(np.random.default_rng(sample_seed).choice(n, STABILITY_USER_CAP, replace=False))
        features = features.iloc[idx].reset_index(drop=True)
        truth = None if truth is None else truth[idx]
    ids = features["visitorid"].to_numpy()
    flagged, aucs = [], []
    for s in seeds:  # a handful of seeds
        det = fit_detector(features, share=share, seed=s)
        sc = det.score_samples(features)
        flagged.append(ids[flag_top_share(sc, share, ids)])
        if truth is not None:
            aucs.append(pr_auc(truth, sc))
    pairs = [jaccard(a, b) for a, b in combinations(flagged, 2)]
    out = {
        "method": "isolation_forest",
        "population": f"{len(features)} users"
        + (f" (fixed random sample of {n})" if n > len(features) else " (all)")
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


def _per_user_rates(flags: np.ndarray, bot: np.ndarray, buyer: np.ndarray, txn: np.ndarray) -> dict[str, float]:
    """Share of labelled-normal buyers flagged and share of all transactions held by flagged users."""
    return {
        "normal_buyers_flagged": float((flags & buyer).sum() / max(buyer.sum(), 1)),
        "txn_held_by_flagged": float(txn[flags].sum() / max(txn.sum(), 1.0)),
    }


def detector_quality(
    features: pd.DataFrame,
    labels: pd.DataFrame | None,
    share: float = DEFAULT_SHARE,
    seed: int = DEFAULT_SEED,
    seeds: Sequence[int] = STABILITY_SEEDS,
    lookalikes: pd.DataFrame | None = None,
    fitted: Mapping[str, Detector] | None = None,
    fitted_scores: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Every registered detector vs the volume rule (events) at one share: PR-AUC, precision,
    recall, per-kind recall, buyers and transactions hit, overlap, and seed stability.

    Flags are the detector alone (no buyer policy), so what it does to buyers stays visible.
    ``lookalikes``: feature rows of normal look-alike visitors with a ``kind`` column, scored by
    detectors fitted on ``features`` and flagged at the main population's cut score.
    ``fitted`` / ``fitted_scores``: every registered detector already fitted on
    ``anomaly.fit_sample(features, DETECTOR_FIT_CAP, seed)`` and its scores of ``features`` (the
    build's own), reused instead of fitted and scored again.
    """
    ids = features["visitorid"].to_numpy()
    truth = None if labels is None else np.isin(ids, labels["visitorid"].to_numpy())
    if fitted is None:
        fit_users = fit_sample(features, DETECTOR_FIT_CAP, seed)
        fitted = {name: fit_detector(fit_users, name, share=share, seed=seed) for name in DETECTORS}
        fitted_scores = None
    methods: dict[str, tuple[Detector | str, str]] = {
        name: (det, f"{name} (core.anomaly, one-sided behaviour columns, seed {seed})") for name, det in fitted.items()
    }
    methods["volume_rule"] = ("events", "events per visitor (higher = more anomalous)")
    txn = features["transaction"].to_numpy(np.float64)
    bot = np.zeros(len(ids), bool) if truth is None else truth
    buyer = (txn > 0) & ~bot
    kind_of = None
    if labels is not None and "kind" in labels.columns:
        kinds = labels.drop_duplicates("visitorid").set_index("visitorid")["kind"].astype(str)
        kind_of = pd.Series(ids).map(kinds)
    population = (
        f"all {len(features)} visitors of the events; each method flags its top "
        f"{share:g} share (round(share x n) users, ties by visitorid); no buyer policy"
    )
    known = dict(fitted_scores or {})
    scores = {
        m: (
            features[d].to_numpy(np.float64)
            if isinstance(d, str)
            else known[m]
            if m in known
            else d.score_samples(features)
        )
        for m, (d, _) in methods.items()
    }
    flags = {m: flag_top_share(sc, share, ids) for m, sc in scores.items()}
    volume = ids[flags["volume_rule"]]
    rows = []
    for m, (det, desc) in methods.items():  # a handful of methods
        row = {
            "method": m,
            "description": desc,
            "population": population,
            "share": share,
            "n_users": int(len(features)),
            **detection_stats(flags[m], scores[m], truth),
            **_per_user_rates(flags[m], bot, buyer, txn),
            "jaccard_with_volume_rule": jaccard(ids[flags[m]], volume),
        }
        if kind_of is not None:
            flagged_kind = kind_of[flags[m]].value_counts()
            total_kind = kind_of.value_counts()
            row["recall_by_kind"] = {str(k): float(flagged_kind.get(k, 0) / v) for k, v in total_kind.items()}
        if lookalikes is not None and len(lookalikes):
            cut = scores[m][flags[m]].min() if flags[m].any() else np.inf
            la = lookalikes[det].to_numpy(np.float64) if isinstance(det, str) else det.score_samples(lookalikes)
            la_kind = lookalikes["kind"].astype(str).to_numpy()
            row["lookalikes_flagged"] = {k: float((la[la_kind == k] >= cut).mean()) for k in sorted(set(la_kind))}
        rows.append(row)
    lab: dict[str, Any] = {"present": labels is not None}
    if truth is not None:
        lab.update(
            source="demo generator ground truth (visitors in labels are abnormal)",
            n_abnormal=int(truth.sum()),
            base_rate=float(truth.mean()),
            note="PR-AUC of a random score equals the base rate; normal buyers = buyers not in the labels",
        )
    else:
        lab["note"] = (
            "labels are absent (real data): precision, recall and PR-AUC cannot be "
            "computed; normal buyers = every buyer; only overlap and stability are "
            "reported otherwise"
        )
    return {
        "title": "Task 2: detector quality at the operating share",
        "population": population,
        "share": share,
        "labels": lab,
        "methods": rows,
        "stability": stability(features, share, seeds, truth, seed),
    }


def quality_table(quality: dict[str, Any]) -> pd.DataFrame:
    """The CSV form of ``detector_quality``: one row per method, per-kind recall as columns."""
    rows = []
    for r in quality["methods"]:
        flat = {k: v for k, v in r.items() if k not in ("recall_by_kind", "lookalikes_flagged")}
        flat.update({f"recall_{k}": v for k, v in (r.get("recall_by_kind") or {}).items()})
        flat.update({f"lookalike_{k}_flagged": v for k, v in (r.get("lookalikes_flagged") or {}).items()})
        rows.append(flat)
    return pd.DataFrame(rows)
