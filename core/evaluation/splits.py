"""The two evaluation splits (by visitor group, by time) and the cases they share.

Every comparison is made on one fixed set of test cases (same case ids); a SplitSpec also names
the users the detector is fitted on and the ones it scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.anomaly.features import user_features
from core.base import arrays
from core.base.errors import DataError
from core.base.schema import LOOKBACK, MIN_LABEL_COUNT, MS_PER_DAY, TEST_SIZE, WINDOW_MS
from core.ranking.candidates import prepare_cases
from core.ranking.cases import case_table, case_times
from core.ranking.split import visitor_split

TEST_DAYS = 14
# What a split keeps of its training rows: enough for case ids, visitors and Markov transitions.
# Whole rows of the (sampled) training cases come from the source table (SplitSpec.train_rows);
# a copy of every training row would cost ~400 MB at RetailRocket scale.
TRAIN_KEYS: list[str] = ["case_id", "visitorid", "is_last", "categoryid", "y"]


def temporal_cutoff(timestamps: np.ndarray, test_days: int = TEST_DAYS) -> int:
    """First test millisecond: max timestamp minus test_days days (events at it are test)."""
    ts = np.asarray(timestamps, dtype=np.int64)
    if ts.size == 0:
        raise DataError("temporal split: no events")
    return int(ts.max()) - int(test_days) * MS_PER_DAY


def temporal_split(events: pd.DataFrame, test_days: int = TEST_DAYS) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(events before the cutoff, events at/after it, cutoff ms); cutoff = max ts - test_days."""
    cutoff = temporal_cutoff(events["timestamp"].to_numpy(), test_days)
    test = events["timestamp"].to_numpy(np.int64) >= cutoff
    return events.loc[~test], events.loc[test], cutoff


def switch_case_ids(cands: pd.DataFrame) -> np.ndarray:
    """case_ids whose true next category differs from the last viewed one (is_last row != y)."""
    last = cands["is_last"].to_numpy() == 1
    switch = last & (cands["label"].to_numpy() == 0)
    return arrays.unique(cands["case_id"].to_numpy(np.int64)[switch])


def switch_only(cands: pd.DataFrame) -> pd.DataFrame:
    """The candidate rows of switch cases only (is_last candidate != y)."""
    return cands.loc[np.isin(cands["case_id"].to_numpy(np.int64), switch_case_ids(cands))]


@dataclass
class SplitSpec:
    """A train/test split of cases, plus the users the detector is fitted on and scores."""

    name: str
    train: pd.DataFrame  # TRAIN_KEYS of the training cases' candidate rows, with the source's index
    test: pd.DataFrame  # candidate rows of test cases (raw: nobody removed)
    detector_train: pd.DataFrame  # user features the detector is fitted on
    detector_test: pd.DataFrame  # user features of the test visitors (scored, frozen threshold)
    caption: str  # plain language: who the test visitors are
    info: dict[str, Any]
    source: pd.DataFrame | None = None  # every candidate row; train_rows takes whole rows from it

    def train_rows(self, keys: pd.DataFrame) -> pd.DataFrame:
        """Whole candidate rows of some training rows (a subset of ``train``, by index)."""
        return keys if self.source is None else self.source.loc[keys.index]


def evaluation_cases(
    events: pd.DataFrame, cases: tuple[pd.DataFrame, int, int] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """History candidates of every case with rare labels dropped, and the counts (``cases``:
    ranking.prepare_cases of ``events`` at the contract settings, when already computed)."""
    if cases is None:
        cases = prepare_cases(events, LOOKBACK, WINDOW_MS, MIN_LABEL_COUNT)
    cands, n_all, n_dropped = cases
    if cands.empty:
        raise DataError("honest evaluation: no ranking cases left after dropping rare labels")
    return cands, {
        "min_count": MIN_LABEL_COUNT,
        "cases_before": n_all,
        "cases_dropped": n_dropped,
        "cases_kept": n_all - n_dropped,
    }


def _unseen_share(train: pd.DataFrame, test: pd.DataFrame) -> tuple[int, float]:
    """Test cases whose label never occurs as a training label: count and share."""
    tr_y = arrays.unique(case_table(train)["y"].to_numpy())
    te_y = case_table(test)["y"].to_numpy()
    unseen = int((~np.isin(te_y, tr_y)).sum())
    return unseen, unseen / te_y.size if te_y.size else float("nan")


def group_split_spec(cands: pd.DataFrame, features: pd.DataFrame, seed: int) -> SplitSpec:
    """Visitors split once (GroupShuffleSplit over ALL visitors); cases and users follow them."""
    train_v, test_v = visitor_split(features["visitorid"].to_numpy(), TEST_SIZE, seed)
    is_test = np.isin(cands["visitorid"].to_numpy(), test_v)
    train, test = cands.loc[~is_test, TRAIN_KEYS], cands.loc[is_test]
    overlap = arrays.intersect(arrays.unique(train["visitorid"]), arrays.unique(test["visitorid"])).size
    if overlap or arrays.intersect(train_v, test_v).size:
        raise DataError(f"group split: train and test share {overlap} visitors")
    unseen, unseen_share = _unseen_share(train, test)
    uv = features["visitorid"].to_numpy()
    info = {
        "method": f"GroupShuffleSplit by visitorid over all visitors, test_size {TEST_SIZE}, random_state {seed}",
        "train_visitors": int(train_v.size),
        "test_visitors": int(test_v.size),
        "visitor_overlap": int(overlap),
        "disjoint": True,
        "train_cases": int(train["case_id"].nunique()),
        "test_cases": int(test["case_id"].nunique()),
        "test_visitors_with_cases": int(test["visitorid"].nunique()),
        "test_cases_label_unseen_in_train": unseen,
        "test_label_unseen_share": unseen_share,
    }
    return SplitSpec(
        name="group",
        train=train,
        test=test,
        detector_train=features.loc[np.isin(uv, train_v)].reset_index(drop=True),
        detector_test=features.loc[np.isin(uv, test_v)].reset_index(drop=True),
        caption=f"test visitors ({TEST_SIZE:.0%} of visitors, split by visitor)",
        info=info,
        source=cands,
    )


def temporal_split_spec(
    events: pd.DataFrame, cands: pd.DataFrame, features: pd.DataFrame, test_days: int = TEST_DAYS
) -> SplitSpec:
    """Cases whose labelled view is in the last test_days days are test; everything else trains."""
    before, _, cutoff = temporal_split(events, test_days)
    view_ts, ref_ts = case_times(events)
    cid = cands["case_id"].to_numpy(np.int64)
    # Consistency with ranking's case numbering: every case's t_ref is its previous view's time.
    if view_ts.size <= cid.max(initial=-1) or not np.array_equal(ref_ts[cid], cands["t_ref"].to_numpy(np.int64)):
        raise DataError("temporal split: case view times disagree with ranking's case ids")
    is_test = view_ts[cid] >= cutoff
    train, test = cands.loc[~is_test, TRAIN_KEYS], cands.loc[is_test]
    if train.empty or test.empty:
        raise DataError(f"temporal split: {len(train)} train and {len(test)} test candidate rows")
    test_vis = arrays.unique(test["visitorid"].to_numpy())
    unseen, unseen_share = _unseen_share(train, test)
    date = pd.Timestamp(cutoff, unit="ms", tz="UTC").isoformat()
    info = {
        "method": f"cases whose labelled view has timestamp >= max timestamp - {test_days} days "
        "are test; their history may reach back before the cutoff (as a live system "
        "sees it); detector, Markov statistics and rankers use earlier data only",
        "test_days": test_days,
        "cutoff_ms": cutoff,
        "cutoff_utc": date,
        "train_cases": int(train["case_id"].nunique()),
        "test_cases": int(test["case_id"].nunique()),
        "test_visitors_with_cases": int(test_vis.size),
        "test_visitors_also_in_train": int(np.isin(test_vis, arrays.unique(train["visitorid"])).sum()),
        "test_cases_label_unseen_in_train": unseen,
        "test_label_unseen_share": unseen_share,
        "detector_train_events": int(len(before)),
    }
    feats_before = user_features(before)
    uv = features["visitorid"].to_numpy()
    return SplitSpec(
        name="temporal",
        train=train,
        test=test,
        detector_train=feats_before,
        # Test visitors are scored on all their events up to the end of the data (what an audit
        # at the end of the window sees), with the threshold frozen on pre-cutoff users.
        detector_test=features.loc[np.isin(uv, test_vis)].reset_index(drop=True),
        caption=f"visitors with a view in the last {test_days} days (from {date[:10]}), cases "
        "whose labelled view falls in that window",
        info=info,
        source=cands,
    )
