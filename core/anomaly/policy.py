"""The "keep visitors who bought" policy and what cleaning costs at every operating share.

One function applies the policy (``apply_policy``) for the dashboard, the API and the build, so
the three can never disagree; ``cleaning_cost`` counts what removing the flagged users' events
takes away, and ``cost_sentence`` says it in one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.anomaly.validation import FeatureMatrix

DEFAULT_SHARES: np.ndarray = np.round(np.arange(0.01, 0.2001, 0.01), 2)
# Above this share of all transactions held by flagged users, cleaning visibly hurts sales data.
TXN_WARNING_SHARE = 0.05
DEFAULT_PROTECT_BUYERS = True
POLICY_NAME = "keep visitors who bought"


def policy_label(protect_buyers: bool) -> str:
    """The policy as one short phrase for captions, downloads and API answers."""
    return POLICY_NAME if protect_buyers else "flag buyers too"


def bought(features: pd.DataFrame | FeatureMatrix) -> np.ndarray:
    """True for visitors with at least one transaction (a missing or non-numeric value is False)."""
    col = features["transaction"]
    if isinstance(col, (pd.Series, np.ndarray)) and isinstance(col.dtype, np.dtype) and col.dtype.kind in "iuf":
        txn = np.asarray(col, np.float64)  # numbers already
    else:
        txn = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(txn, nan=0.0) > 0


def apply_policy(flags: np.ndarray, features: pd.DataFrame | FeatureMatrix, protect_buyers: bool) -> np.ndarray:
    """Flags after the "keep visitors who bought" policy (unflag transaction > 0 when on)."""
    flags = np.asarray(flags, bool)
    if not protect_buyers:
        return flags.copy()
    return flags & ~bought(features)


_COST_COUNTS = ("events", "view", "addtocart", "transaction")
# The feature columns cleaning_cost reads: a caller may pass only these.
COST_COLUMNS: tuple[str, ...] = _COST_COUNTS


def cleaning_cost(
    features: pd.DataFrame,
    scores: np.ndarray,
    shares: np.ndarray = DEFAULT_SHARES,
    frozen_threshold: float | None = None,
    protect_buyers: bool = False,
) -> pd.DataFrame:
    """What cleaning removes at each share (threshold = (1 - s) quantile of these scores) and
    at the frozen threshold: users, events, views, add-to-carts, transactions, buyers.

    The users are sorted by score once and every count is a cumulative sum read at each
    threshold: no (points x users) matrix, whose size grows with both. Sums of whole numbers
    below 2**53 are exact, so the counts are the same.
    """
    s = np.asarray(scores, np.float64)
    shares = np.asarray(shares, np.float64)
    finite = np.flatnonzero(np.isfinite(s))  # NaN scores are never flagged
    order = finite[np.argsort(s[finite], kind="stable")[::-1]]  # highest score first
    desc = s[order]
    thr = np.quantile(desc, 1.0 - shares) if desc.size else np.full(shares.shape, np.nan)
    labels = [f"{x:.0%}" for x in shares]
    if frozen_threshold is not None:
        thr = np.append(thr, float(frozen_threshold))
        shares = np.append(shares, np.nan)
        labels.append("frozen")
    # users flagged at each threshold: the scores >= it, a prefix of the descending order
    n_flagged = desc.size - np.searchsorted(desc[::-1], thr, side="left")
    n_flagged[np.isnan(thr)] = 0
    buyer = bought(features)
    kept = ~buyer[order] if protect_buyers else np.ones(order.size, bool)  # the policy unflags buyers
    vals = {"users": np.ones(len(s)), "buyers": buyer.astype(np.float64)}
    vals.update(
        {c: np.nan_to_num(pd.to_numeric(features[c], errors="coerce").to_numpy(np.float64)) for c in _COST_COUNTS}
    )
    out: dict[str, Any] = {"point": labels, "share": shares, "threshold": thr, "protect_buyers": protect_buyers}
    for name in ("users", *_COST_COUNTS, "buyers"):
        v = vals[name]
        prefix = np.concatenate([[0.0], np.cumsum(np.where(kept, v[order], 0.0))])
        removed = prefix[n_flagged]
        total = v.sum()
        out[f"{name}_removed"] = removed.astype(np.int64)
        out[f"{name}_removed_share"] = removed / total if total else np.nan
    out["txn_warning"] = out["transaction_removed_share"] > TXN_WARNING_SHARE
    return pd.DataFrame(out)


def cost_sentence(row: pd.Series | dict[str, Any]) -> str:
    """ "Flagging … removes …" for one row of ``cleaning_cost`` (plain text, no markup)."""
    text = (
        f"This operating point removes {row['users_removed']:,} users "
        f"({row['users_removed_share']:.1%}), {row['events_removed']:,} events "
        f"({row['events_removed_share']:.1%}), {row['view_removed']:,} views, "
        f"{row['addtocart_removed']:,} add-to-carts ({row['addtocart_removed_share']:.1%}), "
        f"{row['transaction_removed']:,} transactions ({row['transaction_removed_share']:.1%}) "
        f"and {row['buyers_removed']:,} buyers ({row['buyers_removed_share']:.1%})."
    )
    if bool(row["txn_warning"]):
        text += (
            f" Warning: the flagged users hold more than {TXN_WARNING_SHARE:.0%} of all "
            "transactions; cleaning would remove real sales."
        )
    return text
