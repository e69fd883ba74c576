"""Item properties: weekly category snapshots and other properties (the as-of join is core.reading.categories')."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.base.schema import MS_PER_DAY
from core.demo.catalogue import Catalogue
from core.demo.common import FIRST_SNAPSHOT, N_WEEKS, group_index, grouped_cumsum

# --------------------------------------------------------------------------- item properties


def _weekly_rows(
    rng: np.random.Generator, n_items: int, n_rows: np.ndarray, p_first_week0: float, max_step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct increasing snapshot weeks per item: (item index, week, rank among the item's rows)."""
    first = np.where(rng.random(n_items) < p_first_week0, 0, rng.integers(0, N_WEEKS, n_items))
    own, rank, starts = group_index(n_rows)
    step = np.where(rank == 0, 0, rng.integers(1, max_step + 1, own.size))
    week = first[own] + grouped_cumsum(step, starts[own])
    keep = week < N_WEEKS
    return own[keep], week[keep], rank[keep]


def category_snapshots(rng: np.random.Generator, cat: Catalogue) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Weekly categoryid snapshots (timestamp, item index, leaf node) plus two info counts."""
    n_items = cat.item_ids.size
    has = rng.random(n_items) >= 0.015  # ~1.5 % of items never get a categoryid
    recat = has & (rng.random(n_items) < 0.04)
    n_rows = np.where(has, 1 + rng.binomial(3, 0.25, n_items) + recat, 0)
    own, week, rank = _weekly_rows(rng, n_items, n_rows, 0.75, 5)
    n_kept = np.bincount(own, minlength=n_items)
    recat &= n_kept >= 2
    # Re-categorised from a later snapshot on: a sibling leaf when there is one, else any leaf.
    recat_rank = 1 + (rng.random(n_items) * np.maximum(n_kept - 1, 1)).astype(np.int64)
    sib = cat.leaf_given_parent.sample(cat.parent[cat.item_leaf], rng.random(n_items))
    anyleaf = rng.choice(cat.leaf_marginal, size=n_items, p=cat.leaf_marginal_p)
    new_leaf = np.where((rng.random(n_items) < 0.7) & (sib != cat.item_leaf), sib, anyleaf)
    recat &= new_leaf != cat.item_leaf
    leaf = np.where(recat[own] & (rank >= recat_rank[own]), new_leaf[own], cat.item_leaf[own])
    ts = FIRST_SNAPSHOT + week * 7 * MS_PER_DAY
    return ts.astype(np.int64), own, leaf, int((~has).sum()), int(recat.sum())


def ints_to_str(values: np.ndarray) -> pa.Array:
    """Arrow strings of integers."""
    return pc.cast(pa.array(values, type=pa.int64()), pa.string())


def _join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of Arrow string arrays and literal strings."""
    return pc.binary_join_element_wise(*parts, "")


def other_properties(rng: np.random.Generator, cat: Catalogue) -> list[tuple[np.ndarray, np.ndarray, str, pa.Array]]:
    """Non-category properties (the loader must filter them out): available, 790, 888, 364, ..."""
    n = cat.item_ids.size
    out = []
    # (property, mean extra weekly rows): values are drawn per row below.
    for prop, extra_p in (
        ("available", 0.45),
        ("790", 0.2),
        ("888", 0.1),
        ("364", 0.0),
        ("283", 0.05),
        ("112", 0.0),
        ("159", 0.0),
        ("6", 0.0),
    ):
        own, week, _ = _weekly_rows(rng, n, 1 + rng.binomial(4, extra_p, n), 0.7, 4)
        k = own.size
        if prop == "available":
            val = ints_to_str((rng.random(k) < 0.62).astype(np.int64))
        elif prop == "790":  # price, "n<digits>.000"
            val = _join("n", ints_to_str((rng.lognormal(8.5, 1.0, k) // 120 * 120).astype(np.int64)), ".000")
        elif prop == "888":  # a few hashed tokens and a number
            val = _join(
                ints_to_str(rng.integers(1000, 1_300_000, k)),
                " n",
                ints_to_str(rng.integers(1, 600, k) * 12),
                ".000 ",
                ints_to_str(rng.integers(1000, 1_300_000, k)),
            )
        elif prop in ("112", "159"):  # near-constant hashed values, as in the real file
            val = ints_to_str(
                np.where(rng.random(k) < 0.97, 679677 if prop == "112" else 519769, rng.integers(1000, 1_300_000, k))
            )
        else:
            val = ints_to_str(rng.integers(1000, 1_300_000, k))
        out.append((FIRST_SNAPSHOT + week * 7 * MS_PER_DAY, own, prop, val))
    return out


def filler_properties(rng: np.random.Generator, item_ids: np.ndarray, n: int) -> pa.Table:
    """``n`` rows of non-category properties of the real files' shape, for full-size property files.

    The real files hold 20.3M rows of ~1,100 numeric property names (a few very common), weekly
    timestamps and values such as "n552.000", "1338" or "1338 n12.000 924617 n24.000"; only
    ~4 % are categoryid rows, which never come from here.
    """
    week = rng.integers(0, N_WEEKS, n)
    prop = ints_to_str(np.minimum(rng.geometric(0.01, n) - 1, 1103))
    kind = rng.choice(3, size=n, p=[0.4, 0.3, 0.3])
    sizes = np.bincount(kind, minlength=3)
    tokens = [ints_to_str(rng.integers(1000, 1_300_000, int(sizes[k]))) for k in (1, 2, 2)]
    values = pa.concat_arrays(
        [
            _join("n", ints_to_str(rng.integers(1, 3000, int(sizes[0])) * 12), ".000"),
            tokens[0],
            _join(tokens[1], " n", ints_to_str(rng.integers(1, 600, int(sizes[2])) * 12), ".000 ", tokens[2]),
        ]
    )
    # Rows of each value format are made together, then put back in the drawn order.
    place = np.empty(n, np.int64)
    place[np.argsort(kind, kind="stable")] = np.arange(n)
    return pa.table(
        {
            "timestamp": pa.array(FIRST_SNAPSHOT + week * 7 * MS_PER_DAY, pa.int64()),
            "itemid": pa.array(item_ids[rng.integers(0, item_ids.size, n)], pa.int64()),
            "property": prop,
            "value": values.take(pa.array(place)),
        }
    )


def item_properties_frame(parts: list[tuple[np.ndarray, np.ndarray, str, pa.Array]], cat: Catalogue) -> pd.DataFrame:
    """Raw item_properties rows (timestamp, itemid, property, value), Arrow-backed strings."""
    prop = pa.chunked_array([pa.repeat(pa.scalar(p[2]), p[1].size) for p in parts], type=pa.string())
    val = pa.chunked_array([p[3] for p in parts], type=pa.string())
    return pd.DataFrame(
        {
            "timestamp": np.concatenate([p[0] for p in parts]).astype(np.int64),
            "itemid": cat.item_ids[np.concatenate([p[1] for p in parts])],
            "property": pd.arrays.ArrowStringArray(prop.combine_chunks()),
            "value": pd.arrays.ArrowStringArray(val.combine_chunks()),
        }
    )
