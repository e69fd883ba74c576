"""Deterministic, vectorised generator of RetailRocket-like data: events, item properties, tree, labels.

The real dataset cannot be downloaded here, so the product is built and demoed on this data. The
generator is one ``np.random.default_rng(seed)`` stream consumed in a fixed order, so the same
``(n_events, seed)`` always gives identical tables and byte-identical CSV files.

How the data is made (all vectorised; the only Python loops run over tree depths or visitor kinds):

* a fixed-shape category tree (1,669 categories, 25 roots, depths 0-5 as in the real tree), with
  Zipf-like popularity on the leaves; items live in leaves and have heavy-tailed popularity;
* weekly ``categoryid`` snapshots per item (a few % of items are re-categorised, ~1.5 % have none)
  plus other properties ("available", "790", "888", ...); the events' ``categoryid`` is *derived*
  from those snapshots with the as-of join of the spec (section 1), exactly as the loader does;
* normal visitors (incl. unlabelled power shoppers) browse sessions following a hierarchical
  category walk (stay in the leaf, else a sibling, else a related branch, else a new root), with
  add-to-carts and transactions grouped by checkout;
* abnormal visitors (labelled): crawlers, night scrapers, burst bots, cart stuffers and price
  monitors, some of them deliberately subtle.

The number of events is not exact but within +-1 % of ``n_events`` (in practice a handful of
events short): the abnormal kinds get fixed shares of the budget, normal visitors are
over-generated to fill the rest and then trimmed by whole visitors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.schema import (
    CATEGORY_TREE_COLUMNS,
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_PROPERTY_COLUMNS,
    ITEM_PROPERTY_FILES,
    LOOKBACK,
    RAW_EVENT_COLUMNS,
    UNKNOWN_CATEGORY,
    WINDOW_MS,
)

logger = logging.getLogger(__name__)

SCALES: dict[str, int] = {"demo": 300_000, "retailrocket": 2_756_101}

ABNORMAL_KINDS: tuple[str, ...] = ("crawler", "night_scraper", "burst_bot", "cart_stuffer", "price_monitor")

SEC = 1000
HOUR = 3_600_000
DAY = 86_400_000
T_START = 1_430_622_000_000  # 2015-05-03 03:00:00 UTC, the start of the real data
T_END = 1_442_545_200_000  # 2015-09-18 03:00:00 UTC, the end of the real data
DAY0 = T_START - T_START % DAY  # midnight UTC of the first day
N_DAYS = int((T_END - DAY0) // DAY) + 1
FIRST_SNAPSHOT = 1_431_226_800_000  # Sunday 2015-05-10 03:00 UTC; the real snapshots are weekly
N_WEEKS = 19  # 2015-05-10 .. 2015-09-13

# The real tree: 1,669 categories by depth 0..5; ids drawn from 0..1697 like the real ones.
DEPTH_COUNTS: tuple[int, ...] = (25, 174, 702, 665, 90, 13)
N_CATEGORY_IDS = 1698
# How many nodes of each depth have children (the rest of that depth are leaves).
_PARENT_POOL: tuple[int, ...] = (25, 174, 316, 45, 7)

ITEMS_PER_EVENT = 0.085  # 235k items at 2.76M events
DUPLICATE_RATE = 460 / 2_756_101  # exact duplicate rows in the real events.csv

# UTC hour-of-day weights: the shop is in UTC+3, so the trough is 0-4 UTC and the peak 15-19 UTC.
_HOUR_WEIGHTS = np.array([0.42, 0.3, 0.24, 0.24, 0.32, 0.5, 0.72, 0.9, 1.0, 1.05, 1.08, 1.1,
                          1.1, 1.15, 1.22, 1.3, 1.4, 1.48, 1.5, 1.42, 1.25, 1.0, 0.78, 0.58])
_WEEKDAY_WEIGHTS = np.array([1.05, 1.05, 1.02, 1.0, 0.95, 0.9, 1.0])  # Mon..Sun (1970-01-01 = Thu)

# Share of the requested events given to each abnormal kind, with its per-visitor count law
# (lognormal median, sigma, min, max). The normal population fills the rest.
_KIND_BUDGET: dict[str, tuple[float, float, float, int, int]] = {
    "crawler": (0.075, 450.0, 0.9, 120, 20_000),
    "night_scraper": (0.05, 150.0, 0.8, 30, 6_000),
    "burst_bot": (0.025, 220.0, 0.5, 60, 1_200),
    "cart_stuffer": (0.008, 16.0, 0.6, 3, 150),
    "price_monitor": (0.12, 6.5, 0.6, 4, 400),
}
_POWER_SHARE = 0.002  # normal heavy shoppers, deliberately NOT labelled
_NORMAL_EVENTS_GUESS = 1.30  # lower bound of events per normal visitor, to over-generate then trim


@dataclass
class DemoDataset:
    """A generated RetailRocket-like dataset: prepared events, raw item properties, tree, labels."""

    events: pd.DataFrame
    item_properties: pd.DataFrame
    category_tree: pd.DataFrame
    labels: pd.DataFrame
    seed: int
    n_events_requested: int
    n_duplicates: int  # exact duplicate rows write_raw injects into events.csv
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- small vector helpers


def _group_index(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Owner, position in group and group start for elements of contiguous groups of given sizes."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    pos = np.arange(owner.size, dtype=np.int64) - starts[owner]
    return owner, pos, starts


def _grouped_cumsum(values: np.ndarray, group_start_of_elem: np.ndarray) -> np.ndarray:
    """Cumulative sum restarted at each group (groups contiguous; integer values stay exact)."""
    cs = np.cumsum(values)
    return cs - (cs[group_start_of_elem] - values[group_start_of_elem])


def _group_sum(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sum of each contiguous group (empty groups give 0)."""
    cs = np.concatenate([np.zeros(1, dtype=values.dtype), np.cumsum(values)])
    return cs[starts + counts] - cs[starts]


def _lognormal(rng: np.random.Generator, median: float | np.ndarray, sigma: float | np.ndarray,
               size: int, lo: float, hi: float) -> np.ndarray:
    """Clipped lognormal draws given the median."""
    return np.clip(rng.lognormal(np.log(median), sigma, size), lo, hi)


def _first_true_run_ids(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run id of each element (a run starts where flags is True) and the index of each run start."""
    return np.cumsum(flags) - 1, np.flatnonzero(flags)


class _CondSampler:
    """Draws an entity given its group with probability proportional to weight (vectorised)."""

    def __init__(self, groups: np.ndarray, weights: np.ndarray):
        keep = weights > 0
        ent = np.flatnonzero(keep)
        order = np.argsort(groups[ent], kind="stable")
        self.entity = ent[order]
        g = groups[self.entity].astype(np.int64)
        w = weights[self.entity].astype(np.float64)
        counts = np.bincount(g, minlength=int(g.max()) + 1 if g.size else 0)
        starts = np.cumsum(counts) - counts
        tot = np.bincount(g, weights=w, minlength=counts.size)
        within = _grouped_cumsum(w, starts[g]) / tot[g]
        ends = starts[counts > 0] + counts[counts > 0] - 1
        within[ends] = 1.0  # exact right edge so groups never overlap through rounding
        self.edges = g + within
        self.first = starts
        self.last = starts + counts - 1

    def sample(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Entity index for each query group (which must have positive total weight)."""
        group = np.asarray(group, dtype=np.int64)
        x = group + u
        if x.size > 50_000:  # sorted queries search several times faster
            o = np.argsort(x)
            idx = np.empty(x.size, np.int64)
            idx[o] = np.searchsorted(self.edges, x[o], side="right")
        else:
            idx = np.searchsorted(self.edges, x, side="right")
        idx = np.clip(idx, self.first[group], self.last[group])
        return self.entity[idx]


def _asof_categories(ev_ts: np.ndarray, ev_item: np.ndarray, snap_ts: np.ndarray,
                     snap_item: np.ndarray, snap_cat: np.ndarray) -> np.ndarray:
    """Spec §1 as-of join: latest snapshot at or before the event, else the earliest, else -1."""
    out = np.full(ev_ts.size, UNKNOWN_CATEGORY, dtype=np.int64)
    if snap_ts.size == 0 or ev_ts.size == 0:
        return out
    order = np.lexsort((snap_ts, snap_item))  # stable: equal keys keep input order, last one wins
    s_item, s_ts, s_cat = snap_item[order], snap_ts[order], snap_cat[order]
    first = np.flatnonzero(np.r_[True, s_item[1:] != s_item[:-1]])  # np.unique is slow here
    items = s_item[first]
    t_min = min(int(s_ts.min()), int(ev_ts.min()))
    width = max(int(s_ts.max()), int(ev_ts.max())) - t_min + 1
    s_key = np.searchsorted(items, s_item) * width + (s_ts - t_min)
    lo, hi = int(min(items[0], ev_item.min())), int(max(items[-1], ev_item.max()))
    if hi - lo < 50_000_000:  # dense lookup table: much faster than a binary search per event
        lut = np.full(hi - lo + 1, -1, np.int64)
        lut[items - lo] = np.arange(items.size)
        code = lut[ev_item - lo]
        known = code >= 0
        code = np.maximum(code, 0)
    else:
        code = np.clip(np.searchsorted(items, ev_item), 0, items.size - 1)
        known = items[code] == ev_item
    e_key = code * width + (ev_ts - t_min)
    o = np.argsort(e_key)  # sorted queries search several times faster than random ones
    pos = np.empty(e_key.size, np.int64)
    pos[o] = np.searchsorted(s_key, e_key[o], side="right") - 1
    pos = np.maximum(pos, first[code])  # before every snapshot of the item: its earliest one
    out[known] = s_cat[pos[known]]
    return out


# --------------------------------------------------------------------------- catalogue


@dataclass
class _Catalogue:
    """Tree, leaves, items and the conditional samplers used by the visitor simulations."""

    cat_id: np.ndarray  # node -> categoryid
    parent: np.ndarray  # node -> parent node (-1 for roots)
    root: np.ndarray  # node -> root node
    is_leaf: np.ndarray
    leaf_weight: np.ndarray  # node -> popularity (0 for internal nodes and item-less leaves)
    item_ids: np.ndarray  # item index -> itemid
    item_leaf: np.ndarray  # item index -> home leaf node
    item_weight: np.ndarray
    leaf_items: np.ndarray  # item indices grouped by leaf, by itemid within a leaf
    leaf_ptr: np.ndarray  # node -> first position in leaf_items
    leaf_cnt: np.ndarray  # node -> number of items
    dfs_leaves: np.ndarray  # active leaves in depth-first catalogue order
    root_nodes: np.ndarray
    root_p: np.ndarray
    parent_given_root: _CondSampler
    leaf_given_parent: _CondSampler
    item_given_leaf: _CondSampler
    leaf_marginal: np.ndarray  # active leaf nodes
    leaf_marginal_p: np.ndarray
    sib_list: np.ndarray  # active leaves grouped by parent, most popular first
    sib_ptr: np.ndarray  # node -> first position of its leaf children in sib_list
    sib_cnt: np.ndarray  # node -> number of active leaf children
    sib_pos: np.ndarray  # leaf node -> its position among its siblings


def _build_tree(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Category tree of the real shape: (categoryid, parent node, depth, ancestors[node, depth])."""
    depth = np.repeat(np.arange(len(DEPTH_COUNTS)), DEPTH_COUNTS)
    n = depth.size
    parent = np.full(n, -1, dtype=np.int64)
    anc = np.full((n, len(DEPTH_COUNTS)), -1, dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(DEPTH_COUNTS)])
    anc[offs[0]:offs[1], 0] = np.arange(offs[0], offs[1])
    for d in range(1, len(DEPTH_COUNTS)):  # loop over the 5 tree depths
        prev = np.arange(offs[d - 1], offs[d])
        cur = np.arange(offs[d], offs[d + 1])
        pool = np.sort(rng.choice(prev, size=_PARENT_POOL[d - 1], replace=False))
        w = rng.lognormal(0.0, 0.9, pool.size)
        extra = rng.choice(pool.size, size=cur.size - pool.size, p=w / w.sum())
        assign = rng.permutation(np.concatenate([np.arange(pool.size), extra]))
        parent[cur] = pool[assign]
        anc[cur, :d] = anc[parent[cur], :d]
        anc[cur, d] = cur
    cat_id = rng.choice(N_CATEGORY_IDS, size=n, replace=False).astype(np.int64)
    return cat_id, parent, depth, anc


def _build_catalogue(rng: np.random.Generator, n_items: int) -> _Catalogue:
    """Tree, Zipf-like leaf popularity, items in leaves with heavy-tailed popularity, samplers."""
    cat_id, parent, depth, anc = _build_tree(rng)
    n = cat_id.size
    root = anc[:, 0]
    has_child = np.bincount(parent[parent >= 0], minlength=n) > 0
    is_leaf = ~has_child
    leaves = np.flatnonzero(is_leaf)
    ranks = rng.permutation(leaves.size) + 1
    lw = ranks.astype(np.float64) ** -0.85  # Zipf-like leaf popularity

    # Items: one per leaf first (while there are enough), the rest by popularity^0.8.
    n_items = max(int(n_items), 10)
    if n_items >= leaves.size:
        extra = rng.choice(leaves.size, size=n_items - leaves.size, p=lw**0.8 / (lw**0.8).sum())
        item_leaf_pos = np.concatenate([np.arange(leaves.size), extra])
    else:
        top = np.argsort(-lw, kind="stable")[:n_items]
        item_leaf_pos = top
    item_leaf = leaves[rng.permutation(item_leaf_pos)]
    item_ids = np.sort(rng.choice(int(n_items * 1.99) + 10, size=n_items, replace=False)).astype(np.int64)
    item_ids = item_ids[rng.permutation(n_items)]  # popularity unrelated to the id
    item_weight = rng.lognormal(0.0, 1.3, n_items)

    leaf_cnt = np.bincount(item_leaf, minlength=n)
    leaf_weight = np.zeros(n)
    leaf_weight[leaves] = lw
    leaf_weight[leaf_cnt == 0] = 0.0
    by_leaf = np.lexsort((item_ids, item_leaf))
    leaf_ptr = np.cumsum(leaf_cnt) - leaf_cnt

    active = np.flatnonzero(leaf_weight > 0)
    dfs_order = np.lexsort(anc[active][:, ::-1].T)  # primary key: root, then depth-1 ancestor, ...
    dfs_leaves = active[dfs_order]

    par_w = np.bincount(parent[active], weights=leaf_weight[active], minlength=n)
    sib_list = active[np.lexsort((-leaf_weight[active], parent[active]))]
    sib_cnt = np.bincount(parent[active], minlength=n)
    sib_pos = np.zeros(n, np.int64)
    sib_pos[sib_list] = np.arange(sib_list.size) - (np.cumsum(sib_cnt) - sib_cnt)[parent[sib_list]]
    root_w = np.bincount(root, weights=par_w, minlength=n)
    root_nodes = np.flatnonzero(root_w > 0)
    return _Catalogue(
        cat_id=cat_id, parent=parent, root=root, is_leaf=is_leaf, leaf_weight=leaf_weight,
        item_ids=item_ids, item_leaf=item_leaf, item_weight=item_weight,
        leaf_items=by_leaf, leaf_ptr=leaf_ptr, leaf_cnt=leaf_cnt, dfs_leaves=dfs_leaves,
        root_nodes=root_nodes, root_p=root_w[root_nodes] / root_w[root_nodes].sum(),
        parent_given_root=_CondSampler(root, par_w),
        leaf_given_parent=_CondSampler(np.where(parent >= 0, parent, 0), leaf_weight),
        item_given_leaf=_CondSampler(item_leaf, item_weight),
        leaf_marginal=active, leaf_marginal_p=leaf_weight[active] / leaf_weight[active].sum(),
        sib_list=sib_list, sib_ptr=np.cumsum(sib_cnt) - sib_cnt, sib_cnt=sib_cnt, sib_pos=sib_pos,
    )


def _category_tree_frame(cat: _Catalogue) -> pd.DataFrame:
    """category_tree table (categoryid int64, parentid nullable Int64), sorted by categoryid."""
    pid = pd.array(np.where(cat.parent >= 0, cat.cat_id[np.maximum(cat.parent, 0)], 0), dtype="Int64")
    pid[cat.parent < 0] = pd.NA
    df = pd.DataFrame({"categoryid": cat.cat_id, "parentid": pid})
    return df.sort_values("categoryid", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- item properties


def _weekly_rows(rng: np.random.Generator, n_items: int, n_rows: np.ndarray,
                 p_first_week0: float, max_step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct increasing snapshot weeks per item: (item index, week, rank among the item's rows)."""
    first = np.where(rng.random(n_items) < p_first_week0, 0, rng.integers(0, N_WEEKS, n_items))
    own, rank, starts = _group_index(n_rows)
    step = np.where(rank == 0, 0, rng.integers(1, max_step + 1, own.size))
    week = first[own] + _grouped_cumsum(step, starts[own])
    keep = week < N_WEEKS
    return own[keep], week[keep], rank[keep]


def _category_snapshots(rng: np.random.Generator, cat: _Catalogue) -> tuple[np.ndarray, ...]:
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
    ts = FIRST_SNAPSHOT + week * 7 * DAY
    return ts.astype(np.int64), own, leaf, int((~has).sum()), int(recat.sum())


def _ints_to_str(values: np.ndarray) -> pa.Array:
    """Arrow strings of integers."""
    return pc.cast(pa.array(values, type=pa.int64()), pa.string())


def _join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of Arrow string arrays and literal strings."""
    return pc.binary_join_element_wise(*parts, "")


def _other_properties(rng: np.random.Generator, cat: _Catalogue) -> list[tuple[np.ndarray, np.ndarray, str, pa.Array]]:
    """Non-category properties (the loader must filter them out): available, 790, 888, 364, ..."""
    n = cat.item_ids.size
    out = []
    # (property, mean extra weekly rows): values are drawn per row below.
    for prop, extra_p in (("available", 0.45), ("790", 0.2), ("888", 0.1), ("364", 0.0),
                          ("283", 0.05), ("112", 0.0), ("159", 0.0), ("6", 0.0)):
        own, week, _ = _weekly_rows(rng, n, 1 + rng.binomial(4, extra_p, n), 0.7, 4)
        k = own.size
        if prop == "available":
            val = _ints_to_str((rng.random(k) < 0.62).astype(np.int64))
        elif prop == "790":  # price, "n<digits>.000"
            val = _join("n", _ints_to_str((rng.lognormal(8.5, 1.0, k) // 120 * 120).astype(np.int64)), ".000")
        elif prop == "888":  # a few hashed tokens and a number
            val = _join(_ints_to_str(rng.integers(1000, 1_300_000, k)), " n",
                        _ints_to_str(rng.integers(1, 600, k) * 12), ".000 ",
                        _ints_to_str(rng.integers(1000, 1_300_000, k)))
        elif prop in ("112", "159"):  # near-constant hashed values, as in the real file
            val = _ints_to_str(np.where(rng.random(k) < 0.97, 679677 if prop == "112" else 519769,
                                        rng.integers(1000, 1_300_000, k)))
        else:
            val = _ints_to_str(rng.integers(1000, 1_300_000, k))
        out.append((FIRST_SNAPSHOT + week * 7 * DAY, own, prop, val))
    return out


def _item_properties_frame(parts: list[tuple[np.ndarray, np.ndarray, str, pa.Array]],
                           cat: _Catalogue) -> pd.DataFrame:
    """Raw item_properties rows (timestamp, itemid, property, value), Arrow-backed strings."""
    prop = pa.chunked_array([pa.repeat(pa.scalar(p[2]), p[1].size) for p in parts], type=pa.string())
    val = pa.chunked_array([p[3] for p in parts], type=pa.string())
    return pd.DataFrame({
        "timestamp": np.concatenate([p[0] for p in parts]).astype(np.int64),
        "itemid": cat.item_ids[np.concatenate([p[1] for p in parts])],
        "property": pd.arrays.ArrowStringArray(prop.combine_chunks()),
        "value": pd.arrays.ArrowStringArray(val.combine_chunks()),
    })


# --------------------------------------------------------------------------- time helpers


def _cycle_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Start times (ms) with the weekly and daily cycles of the shop."""
    days = np.arange(N_DAYS)
    wd = _WEEKDAY_WEIGHTS[((DAY0 // DAY + days + 3) % 7)]
    day = rng.choice(N_DAYS, size=n, p=wd / wd.sum())
    hour = rng.choice(24, size=n, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    t = DAY0 + day * DAY + hour * HOUR + rng.integers(0, HOUR, n)
    return np.where(t < T_START, t + DAY, t)  # the first day starts at 03:00


def _fit_span(t0: np.ndarray, dur: np.ndarray) -> np.ndarray:
    """Shift start times back by whole days (keeping the hour) so [t0, t0+dur] fits the span."""
    over = t0 + dur - (T_END - 1)
    t0 = t0 - np.where(over > 0, -(-over // DAY), 0) * DAY
    return np.maximum(t0, T_START)


def _uniform_start(rng: np.random.Generator, dur: np.ndarray) -> np.ndarray:
    """Start time uniform over the span for an activity lasting dur ms (no daily cycle: bots)."""
    room = np.maximum(T_END - 1 - T_START - dur, 1)
    return T_START + (rng.random(dur.size) * room).astype(np.int64)


def _to_ms(seconds: np.ndarray) -> np.ndarray:
    """Seconds to integer milliseconds (at least 1 ms)."""
    return np.maximum(np.rint(seconds * SEC), 1).astype(np.int64)


# --------------------------------------------------------------------------- visitor kinds


@dataclass
class _Part:
    """Events of one visitor kind: local visitor index, time, item index, event code, checkout."""

    n_visitors: int
    owner: np.ndarray
    t: np.ndarray
    item: np.ndarray
    code: np.ndarray  # 0 view, 1 addtocart, 2 transaction
    checkout: np.ndarray  # local checkout index of transaction rows, -1 elsewhere
    kind: str | None  # None = normal (unlabelled)


def _part(n_vis: int, owner: np.ndarray, t: np.ndarray, item: np.ndarray, code: np.ndarray | None,
          kind: str | None) -> _Part:
    """A _Part without transactions."""
    code = np.zeros(owner.size, np.int8) if code is None else code.astype(np.int8)
    return _Part(n_vis, owner, t.astype(np.int64), item, code, np.full(owner.size, -1, np.int64), kind)


def _kind_counts(rng: np.random.Generator, budget: float, median: float, sigma: float,
                 lo: int, hi: int) -> np.ndarray:
    """Heavy-tailed per-visitor event counts of one kind, rescaled so they sum to about the budget."""
    mean = median * np.exp(sigma**2 / 2)
    n = int(round(budget / mean))
    if n == 0 and budget >= lo:  # small datasets still get one visitor of the kind
        n = 1
    if n == 0:
        return np.zeros(0, np.int64)
    raw = _lognormal(rng, median, sigma, n, lo, hi)
    scaled = raw * budget / raw.sum()
    return np.clip(np.rint(scaled), lo, hi * 2).astype(np.int64)


def _catalogue_walk(rng: np.random.Generator, cat: _Catalogue, counts: np.ndarray,
                    run_lo: int, run_hi: int) -> np.ndarray:
    """Items of visitors walking the catalogue leaf by leaf (depth-first), runs of run_lo..run_hi views."""
    n_vis = counts.size
    max_runs = -(-counts // run_lo) + 1
    r_owner, _, r_starts = _group_index(max_runs)
    r_len = rng.integers(run_lo, run_hi + 1, r_owner.size)
    r_begin = _grouped_cumsum(r_len, r_starts[r_owner]) - r_len  # start position within the visitor
    keep = r_begin < counts[r_owner]
    r_owner, r_begin = r_owner[keep], r_begin[keep]
    r_rank = np.arange(r_owner.size) - np.searchsorted(r_owner, r_owner, side="left")
    n_leaves = cat.dfs_leaves.size
    start = rng.integers(0, n_leaves, n_vis)
    r_leaf = cat.dfs_leaves[(start[r_owner] + r_rank) % n_leaves]
    r_off = rng.integers(0, 1 << 30, r_owner.size)
    ev_start = np.cumsum(counts) - counts
    r_global = ev_start[r_owner] + r_begin
    idx = np.arange(int(counts.sum()))
    run = np.searchsorted(r_global, idx, side="right") - 1
    k = idx - r_global[run]
    leaf = r_leaf[run]
    return cat.leaf_items[cat.leaf_ptr[leaf] + (r_off[run] + k) % cat.leaf_cnt[leaf]]


def _few_leaf_items(rng: np.random.Generator, cat: _Catalogue, owner: np.ndarray, n_vis: int,
                    max_leaves: int, p_repeat: float) -> np.ndarray:
    """Items drawn from 1..max_leaves popular leaves per visitor, repeating the previous item sometimes."""
    leaves = rng.choice(cat.leaf_marginal, size=(n_vis, max_leaves), p=cat.leaf_marginal_p)
    k = rng.integers(1, max_leaves + 1, n_vis)
    pick = (rng.random(owner.size) * k[owner]).astype(np.int64)
    leaf = leaves[owner, pick]
    first = np.ones(owner.size, bool)
    first[1:] = owner[1:] != owner[:-1]
    new = first | (rng.random(owner.size) >= p_repeat)
    run, starts = _first_true_run_ids(new)
    return cat.item_given_leaf.sample(leaf[starts], rng.random(starts.size))[run]


def _crawlers(rng: np.random.Generator, cat: _Catalogue, counts: np.ndarray) -> _Part:
    """Catalogue crawlers: hundreds-thousands of views <5 s apart, leaf by leaf, with rare pauses."""
    n_vis = counts.size
    owner, pos, starts = _group_index(counts)
    slow = rng.random(n_vis) < 0.15  # subtle: slower crawlers overlap heavy humans a bit
    gap = np.where(slow[owner], _lognormal(rng, 4.5, 0.5, owner.size, 1.0, 15.0),
                   _lognormal(rng, 1.3, 0.45, owner.size, 0.15, 4.9))
    pause = rng.random(owner.size) < 1 / 350
    gap = np.where(pause, _lognormal(rng, 3 * 3600, 1.0, owner.size, 600, 20 * 3600), gap)
    gap_ms = np.where(pos == 0, 0, _to_ms(gap))
    rel = _grouped_cumsum(gap_ms, starts[owner])
    dur = _group_sum(gap_ms, starts, counts)
    t = _uniform_start(rng, dur)[owner] + rel
    item = _catalogue_walk(rng, cat, counts, 10, 60)
    return _part(n_vis, owner, t, item, None, "crawler")


def _night_scrapers(rng: np.random.Generator, cat: _Catalogue, counts: np.ndarray) -> _Part:
    """Night scrapers: regular 20-60 s gaps in UTC 0-6 h, night after night, mostly new items."""
    n_vis = counts.size
    owner, pos, starts = _group_index(counts)
    subtle = rng.random(n_vis) < 0.25
    g = np.where(subtle, rng.uniform(45, 120, n_vis), rng.uniform(20, 60, n_vis))
    per_night = np.maximum((rng.uniform(4.3, 5.6, n_vis) * 3600 / g).astype(np.int64), 1)
    nights = -(-counts // per_night)
    step = np.where(rng.random(n_vis) < 0.7, 1, 2)
    step = np.where((nights - 1) * step > N_DAYS - 4, 1, step)
    first_day = 1 + (rng.random(n_vis) * np.maximum(N_DAYS - 3 - (nights - 1) * step, 1)).astype(np.int64)
    night = pos // per_night[owner]
    j = pos % per_night[owner]
    jitter = rng.normal(1.0, 0.12, owner.size).clip(0.5, 1.6)
    gap_ms = np.where(j == 0, 0, _to_ms(g[owner] * jitter))
    night_start_idx = np.arange(owner.size) - j
    rel = _grouped_cumsum(gap_ms, night_start_idx)
    offset = rng.integers(0, int(1.3 * HOUR), n_vis)[owner] + rng.integers(0, 20 * 60 * SEC, owner.size)[night_start_idx]
    t = DAY0 + (first_day[owner] + night * step[owner]) * DAY + offset + rel
    item = _catalogue_walk(rng, cat, counts, 8, 25)
    return _part(n_vis, owner, t, item, None, "night_scraper")


def _burst_bots(rng: np.random.Generator, cat: _Catalogue, counts: np.ndarray) -> _Part:
    """Burst bots: hundreds of views within minutes on a few leaves."""
    n_vis = counts.size
    owner, pos, starts = _group_index(counts)
    gap_ms = np.where(pos == 0, 0, _to_ms(_lognormal(rng, 0.6, 0.6, owner.size, 0.05, 4.0)))
    rel = _grouped_cumsum(gap_ms, starts[owner])
    t = _uniform_start(rng, _group_sum(gap_ms, starts, counts))[owner] + rel
    item = _few_leaf_items(rng, cat, owner, n_vis, 3, 0.2)
    return _part(n_vis, owner, t, item, None, "burst_bot")


def _cart_stuffers(rng: np.random.Generator, cat: _Catalogue, n_atc: np.ndarray) -> _Part:
    """Cart stuffers: many add-to-carts, few views, no purchase; some spread over several days."""
    n_vis = n_atc.size
    subtle = rng.random(n_vis) < 0.25
    n_atc = np.where(subtle, rng.integers(3, 7, n_vis), n_atc)
    n_view = rng.poisson(np.where(subtle, 4.0, 1.5))
    counts = n_atc + n_view
    owner, pos, starts = _group_index(counts)
    # Views and add-to-carts interleaved at random: rank of a random key within the visitor.
    order = np.lexsort((rng.random(owner.size), owner))
    rank = np.empty(owner.size, np.int64)
    rank[order] = pos
    code = np.where(rank < n_view[owner], 0, 1)
    days = np.where(rng.random(n_vis) < 0.3, rng.integers(2, 6, n_vis), 1)  # multi-day hoarders
    sess = pos * days[owner] // counts[owner]
    new_sess = (pos > 0) & (sess != np.roll(sess, 1))
    gap_s = np.where(new_sess, rng.integers(1, 4, owner.size) * 86400 + rng.normal(0, 7200, owner.size),
                     _lognormal(rng, 12.0, 0.8, owner.size, 1.0, 600.0))
    gap_ms = np.where(pos == 0, 0, _to_ms(np.maximum(gap_s, 3600 * new_sess)))
    rel = _grouped_cumsum(gap_ms, starts[owner])
    dur = _group_sum(gap_ms, starts, counts)
    t = _fit_span(_cycle_times(rng, n_vis), dur)[owner] + rel
    item = _few_leaf_items(rng, cat, owner, n_vis, 3, 0.35)
    return _part(n_vis, owner, t, item, code, "cart_stuffer")


def _price_monitors(rng: np.random.Generator, cat: _Catalogue, counts: np.ndarray) -> _Part:
    """Price monitors: the same 1-4 items re-viewed at a regular period for days (some irregular)."""
    n_vis = counts.size
    k = rng.choice(np.arange(1, 5), size=n_vis, p=[0.7, 0.15, 0.1, 0.05])
    visits = np.maximum(np.rint(counts / k).astype(np.int64), 2)
    counts = visits * k
    subtle = rng.random(n_vis) < 0.3
    period = np.where(subtle, _lognormal(rng, 22 * 3600, 0.5, n_vis, 6 * 3600, 60 * 3600),
                      _lognormal(rng, 4 * 3600, 0.7, n_vis, 1800, 24 * 3600))
    period = np.minimum(period, 0.85 * (T_END - T_START) / SEC / visits)
    jit = np.where(subtle, 0.25, 0.02)
    # Watched items: the first by global popularity, the others mostly from the same leaf.
    first_leaf = rng.choice(cat.leaf_marginal, size=n_vis, p=cat.leaf_marginal_p)
    other_leaf = rng.choice(cat.leaf_marginal, size=(n_vis, 4), p=cat.leaf_marginal_p)
    leaf = np.where(rng.random((n_vis, 4)) < 0.7, first_leaf[:, None], other_leaf)
    watched = cat.item_given_leaf.sample(leaf.ravel(), rng.random(leaf.size)).reshape(n_vis, 4)
    owner, pos, starts = _group_index(counts)
    visit = pos // k[owner]
    j = pos % k[owner]
    within = rng.uniform(1.5, 4.0, n_vis)
    visit_first = np.arange(owner.size) - j  # one jitter per visit, so a visit's items stay in order
    jitter = np.clip(rng.normal(0, 1, owner.size), -1.6, 1.6)[visit_first]
    offs_s = visit * period[owner] + jitter * (jit * period)[owner] + j * within[owner]
    rel = _to_ms(offs_s - offs_s[starts[owner]] + 0.001)
    dur = rel[starts + counts - 1]
    t = _uniform_start(rng, dur)[owner] + rel
    return _part(n_vis, owner, t, watched[owner, j], None, "price_monitor")


def _normal_visitors(rng: np.random.Generator, cat: _Catalogue, n_vis: int) -> _Part:
    """Normal visitors (incl. unlabelled power shoppers): sessions of hierarchical category browsing."""
    power = rng.random(n_vis) < _POWER_SHARE
    n_sess = np.where(power, 3 + rng.geometric(0.2, n_vis), rng.geometric(0.85, n_vis))
    n_sess = np.minimum(n_sess, 40)
    s_owner, s_pos, s_starts = _group_index(n_sess)
    # Mostly one view per session (landing pages), with a lognormal tail of longer sessions.
    length = np.ceil(rng.lognormal(np.log(np.where(power[s_owner], 1.5, 0.18)), 1.35))
    length = np.clip(length, 1, 150).astype(np.int64)
    v_sess, v_pos, v_starts = _group_index(length)
    v_owner = s_owner[v_sess]
    n = v_owner.size

    # Time: in-session gaps, then gaps between sessions (same day, or days later at a similar hour).
    g_in = np.where(v_pos == 0, 0, _to_ms(_lognormal(rng, 160.0, 1.1, n, 3.0, 1790.0)))
    rel_in = _grouped_cumsum(g_in, v_starts[v_sess])
    s_dur = _group_sum(g_in, v_starts, length)
    later = rng.random(s_owner.size) < 0.8
    g_s = np.where(later, rng.geometric(0.25, s_owner.size) * 86400.0 + rng.normal(0, 5400, s_owner.size),
                   _lognormal(rng, 3 * 3600, 0.8, s_owner.size, 2100, 20 * 3600))
    g_s = np.where(s_pos == 0, 0, _to_ms(np.maximum(g_s, 2100.0)))
    g_s = np.minimum(g_s, 30 * DAY)
    # Long-lived returners: shrink the gaps between sessions so the visitor fits in 100 days.
    tot_gap = _group_sum(g_s, s_starts, n_sess)
    tot_in = _group_sum(s_dur, s_starts, n_sess)
    shrink = np.clip((100 * DAY - tot_in) / np.maximum(tot_gap, 1), 0.0, 1.0)
    g_s = np.where(shrink[s_owner] < 1, (g_s * shrink[s_owner]).astype(np.int64) + 1, g_s)
    inc = np.where(s_pos == 0, 0, np.roll(s_dur, 1) + g_s)
    s_rel = _grouped_cumsum(inc, s_starts[s_owner])
    last_s = s_starts + n_sess - 1
    dur = s_rel[last_s] + s_dur[last_s]
    t0 = _fit_span(_cycle_times(rng, n_vis), dur + HOUR)  # + room for the last cart/checkout
    t = t0[v_owner] + s_rel[v_sess] + rel_in

    # Category walk: new segment at sessions' starts / sometimes in-session; its level decides
    # whether the new leaf is a sibling, in another branch of the same root, or under a new root.
    first_v = (v_pos == 0) & (s_pos[v_sess] == 0)
    first_s = (v_pos == 0) & ~first_v
    r = rng.random(n)
    lv = rng.random(n)
    new_seg = first_v | (first_s & (r >= 0.55)) | (~first_v & ~first_s & (r < 0.12))
    root_sw = first_v | (new_seg & np.where(first_s, lv < 0.3, lv < 0.1))
    par_sw = root_sw | (new_seg & np.where(first_s, lv < 0.55, lv < 0.3))
    root_run, root_first = _first_true_run_ids(root_sw)
    roots = rng.choice(cat.root_nodes, size=root_first.size, p=cat.root_p)
    par_run, par_first = _first_true_run_ids(par_sw)
    pars = cat.parent_given_root.sample(roots[root_run[par_first]], rng.random(par_first.size))
    seg, seg_first = _first_true_run_ids(new_seg)
    # Within a parent run the first leaf is drawn by popularity; each later segment moves to a
    # different sibling, mostly a neighbour in popularity order (a walk the Markov model can learn).
    seg_par = pars[par_run[seg_first]]
    base = cat.leaf_given_parent.sample(seg_par, rng.random(seg_first.size))
    run_first = par_sw[seg_first]
    n_sib = cat.sib_cnt[seg_par]
    step = np.where(run_first, 0, 1 + np.minimum(rng.geometric(0.55, seg_first.size) - 1,
                                                 np.maximum(n_sib - 2, 0)))
    run_start = np.maximum.accumulate(np.where(run_first, np.arange(seg_first.size), 0))
    sib = (cat.sib_pos[base[run_start]] + _grouped_cumsum(step, run_start)) % np.maximum(n_sib, 1)
    leaves = cat.sib_list[cat.sib_ptr[seg_par] + sib]
    new_item = new_seg | (rng.random(n) >= 0.38)
    item_run, item_first = _first_true_run_ids(new_item)
    items = cat.item_given_leaf.sample(leaves[seg[item_first]], rng.random(item_first.size))
    v_item = items[item_run]

    # Add-to-cart between a view and the next one (same item); checkout at the session's end.
    p_atc = np.where(power, 0.06, 0.024)[v_owner]
    atc = rng.random(n) < p_atc
    nxt = np.roll(t, -1) - t
    last_in_sess = np.ones(n, bool)
    last_in_sess[:-1] = v_sess[1:] != v_sess[:-1]
    atc_gap = np.where(last_in_sess, _to_ms(_lognormal(rng, 30.0, 0.7, n, 2.0, 600.0)),
                       np.maximum((nxt * rng.uniform(0.15, 0.85, n)).astype(np.int64), 1))
    t_atc = t + atc_gap
    conv = atc & (rng.random(n) < np.where(power, 0.5, 0.45)[v_owner])
    s_end = np.where(atc, t_atc, t)[v_starts + length - 1]
    has_co = np.bincount(v_sess[conv], minlength=s_owner.size) > 0
    co_id = np.cumsum(has_co) - 1
    co_t = s_end + _to_ms(_lognormal(rng, 70.0, 0.8, s_owner.size, 5.0, 1500.0))
    conv_idx = np.flatnonzero(conv)
    c_sess = v_sess[conv_idx]
    c_rank = np.arange(conv_idx.size) - np.searchsorted(c_sess, c_sess, side="left")
    atc_idx = np.flatnonzero(atc)
    owner = np.concatenate([v_owner, v_owner[atc_idx], v_owner[conv_idx]])
    t_all = np.concatenate([t, t_atc[atc_idx], co_t[c_sess] + c_rank])
    item_all = np.concatenate([v_item, v_item[atc_idx], v_item[conv_idx]])
    code = np.concatenate([np.zeros(n, np.int8), np.ones(atc_idx.size, np.int8),
                           np.full(conv_idx.size, 2, np.int8)])
    checkout = np.concatenate([np.full(n + atc_idx.size, -1, np.int64), co_id[c_sess]])
    return _Part(n_vis, owner, t_all.astype(np.int64), item_all, code, checkout, None)


def _trim_visitors(part: _Part, n_target: int) -> _Part:
    """Keep the first visitors whose events add up to at most n_target (whole visitors only)."""
    per = np.bincount(part.owner, minlength=part.n_visitors)
    keep_vis = int(np.searchsorted(np.cumsum(per), n_target, side="right"))
    m = part.owner < keep_vis
    # Checkouts are numbered in visitor order, so a prefix of visitors keeps ids 0..k-1.
    return _Part(keep_vis, part.owner[m], part.t[m], part.item[m], part.code[m], part.checkout[m], part.kind)


# --------------------------------------------------------------------------- assembly


def _strictly_increasing(vis: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per visitor (rows sorted by visitor, time), bump equal timestamps so they strictly increase."""
    i = np.arange(t.size, dtype=np.int64)
    key = t - i
    k_min = int(key.min()) if key.size else 0
    big = int(key.max()) - k_min + 1 if key.size else 1
    off = vis.astype(np.int64) * big
    return np.maximum.accumulate(off + key - k_min) - off + k_min + i


def generate(n_events: int = 300_000, seed: int = 42) -> DemoDataset:
    """A deterministic RetailRocket-like dataset of about n_events events (see the module doc)."""
    if n_events < 1000:
        raise ValueError(f"n_events must be >= 1000, got {n_events}")
    rng = np.random.default_rng(seed)
    cat = _build_catalogue(rng, int(round(ITEMS_PER_EVENT * n_events)))
    snap_ts, snap_item, snap_leaf, n_no_cat, n_recat = _category_snapshots(rng, cat)

    parts: list[_Part] = []
    makers = {"crawler": _crawlers, "night_scraper": _night_scrapers, "burst_bot": _burst_bots,
              "cart_stuffer": _cart_stuffers, "price_monitor": _price_monitors}
    for kind in ABNORMAL_KINDS:  # loop over the 5 abnormal kinds
        share, median, sigma, lo, hi = _KIND_BUDGET[kind]
        counts = _kind_counts(rng, share * n_events, median, sigma, lo, hi)
        parts.append(makers[kind](rng, cat, counts))
    n_abn = sum(p.owner.size for p in parts)
    remaining = max(n_events - n_abn, 0)
    normal = _normal_visitors(rng, cat, int(remaining / _NORMAL_EVENTS_GUESS) + 50)
    parts.append(_trim_visitors(normal, remaining))

    # Global visitor index, then dense visitor ids in random order (like the real 0..1.4M ids).
    vis_off = np.cumsum([0] + [p.n_visitors for p in parts])
    n_vis = int(vis_off[-1])
    vid_of = rng.permutation(n_vis).astype(np.int64)
    vis = np.concatenate([p.owner + o for p, o in zip(parts, vis_off[:-1])])
    t = np.concatenate([p.t for p in parts])
    item = np.concatenate([p.item for p in parts])
    code = np.concatenate([p.code for p in parts])
    co = np.concatenate([p.checkout for p in parts])
    n_co = int(co.max()) + 1 if (co >= 0).any() else 0
    txn_ids = rng.permutation(n_co).astype(np.float64)

    # By visitor then time: one int64 key (a visitor's generated times are already distinct, so
    # the unstable but fast argsort is deterministic), then times made strictly increasing.
    t_min = T_START - DAY
    width = np.int64(T_END + DAY - t_min)
    order = np.argsort(vis * width + (t - t_min))
    vis, t, item, code, co = vis[order], t[order], item[order], code[order], co[order]
    t = _strictly_increasing(vis, t)
    order = np.argsort((t - t_min) * np.int64(n_vis) + vis)  # chronological, like a log
    vis, t, item, code, co = vis[order], t[order], item[order], code[order], co[order]

    itemid = cat.item_ids[item]
    categoryid = _asof_categories(t, itemid, snap_ts, cat.item_ids[snap_item], cat.cat_id[snap_leaf])
    events = pd.DataFrame({
        "timestamp": t,
        "visitorid": vid_of[vis],
        "event": pd.Categorical.from_codes(code, categories=list(EVENT_TYPES)),
        "itemid": itemid,
        "transactionid": np.where(co >= 0, txn_ids[np.maximum(co, 0)], np.nan),
        "categoryid": categoryid,
    })[list(EVENT_COLUMNS)]

    labels = pd.DataFrame({
        "visitorid": np.concatenate([vid_of[vis_off[i]:vis_off[i + 1]] for i, p in enumerate(parts)
                                     if p.kind is not None]),
        "kind": np.concatenate([np.full(p.n_visitors, p.kind, dtype=object) for p in parts
                                if p.kind is not None]),
    }).sort_values("visitorid", kind="stable").reset_index(drop=True)

    props = [(snap_ts, snap_item, "categoryid", _ints_to_str(cat.cat_id[snap_leaf]))]
    props += _other_properties(rng, cat)
    item_properties = _item_properties_frame(props, cat)

    per_kind = {p.kind or "normal": {"visitors": p.n_visitors, "events": int(p.owner.size)} for p in parts}
    info = {
        "n_events": len(events), "n_visitors": n_vis, "n_items": int(cat.item_ids.size),
        "n_categories": int(cat.cat_id.size), "n_leaves": int(cat.is_leaf.sum()),
        "items_without_category": n_no_cat, "items_recategorised": n_recat,
        "category_snapshots": int(snap_ts.size), "item_property_rows": len(item_properties),
        "transactions": n_co, "per_kind": per_kind,
    }
    n_dup = max(1, int(round(len(events) * DUPLICATE_RATE)))
    info["n_duplicates"] = n_dup
    logger.info("generated demo data n_events=%d seed=%d: %s", n_events, seed, info)
    return DemoDataset(events=events, item_properties=item_properties,
                       category_tree=_category_tree_frame(cat), labels=labels, seed=seed,
                       n_events_requested=n_events, n_duplicates=n_dup, info=info)


# --------------------------------------------------------------------------- raw CSV files


def _write_csv(table: pa.Table, path: Path, trailing_newline: bool = True) -> None:
    """CSV with an unquoted header and unquoted values, like the RetailRocket files."""
    with open(path, "wb") as fh:
        fh.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    if not trailing_newline:  # the real events.csv may end without a newline
        with open(path, "r+b") as fh:
            fh.seek(-1, 2)
            if fh.read(1) == b"\n":
                fh.truncate(fh.tell() - 1)


def write_raw(ds: DemoDataset, raw_dir: str | Path) -> dict:
    """Write the RetailRocket-shaped raw files (+ abnormal_labels.csv); returns what was written."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([ds.seed, 20150503])
    ev = ds.events
    n = len(ev)
    dup = rng.choice(n, size=min(ds.n_duplicates, n), replace=False)
    rows = rng.permutation(np.concatenate([np.arange(n), dup]))  # unsorted, duplicates scattered
    codes = ev["event"].cat.codes.to_numpy()[rows].astype(np.int64)
    txn = ev["transactionid"].to_numpy()[rows]
    table = pa.table({
        "timestamp": ev["timestamp"].to_numpy()[rows],
        "visitorid": ev["visitorid"].to_numpy()[rows],
        "event": pa.array(list(EVENT_TYPES), pa.string()).take(pa.array(codes)),
        "itemid": ev["itemid"].to_numpy()[rows],
        "transactionid": pa.array(np.nan_to_num(txn, nan=0).astype(np.int64), mask=np.isnan(txn)),
    })
    assert tuple(table.column_names) == RAW_EVENT_COLUMNS
    files = {"events": raw_dir / "events.csv"}
    _write_csv(table, files["events"], trailing_newline=False)

    ip = ds.item_properties
    perm = pa.array(rng.permutation(len(ip)))
    ip_table = pa.table({
        "timestamp": pa.array(ip["timestamp"].to_numpy()),
        "itemid": pa.array(ip["itemid"].to_numpy()),
        "property": pa.array(ip["property"].array),
        "value": pa.array(ip["value"].array),
    }).take(perm)
    assert tuple(ip_table.column_names) == ITEM_PROPERTY_COLUMNS
    half = (len(ip) + 1) // 2
    for i, name in enumerate(ITEM_PROPERTY_FILES):
        files[name] = raw_dir / name
        _write_csv(ip_table.slice(half * i, half if i == 0 else len(ip) - half), files[name])

    tree = ds.category_tree
    files["category_tree"] = raw_dir / "category_tree.csv"
    parent = tree["parentid"].astype("Int64")
    _write_csv(pa.table({"categoryid": pa.array(tree["categoryid"].to_numpy(np.int64)),
                         "parentid": pa.array(parent.to_numpy(dtype=np.int64, na_value=0),
                                              mask=parent.isna().to_numpy())}),
               files["category_tree"])
    assert tuple(tree.columns) == CATEGORY_TREE_COLUMNS
    files["labels"] = raw_dir / "abnormal_labels.csv"
    _write_csv(pa.table({"visitorid": pa.array(ds.labels["visitorid"].to_numpy()),
                         "kind": pa.array(ds.labels["kind"].astype(str).tolist(), pa.string())}),
               files["labels"])
    info = {"raw_dir": str(raw_dir), "files": {k: str(v) for k, v in files.items()},
            "events_rows_written": n + dup.size, "duplicates_injected": int(dup.size),
            "item_property_rows": len(ip), "labels": len(ds.labels)}
    logger.info("wrote raw demo files to %s: %s", raw_dir, info)
    return info


# --------------------------------------------------------------------------- realism summary


def _event_codes(events: pd.DataFrame) -> np.ndarray:
    """Event type codes (index into EVENT_TYPES, -1 for anything else) of a categorical or string column."""
    col = events["event"]
    if isinstance(col.dtype, pd.CategoricalDtype) and tuple(col.cat.categories) == EVENT_TYPES:
        return col.cat.codes.to_numpy().astype(np.int64)
    return pd.Categorical(col.astype(str), categories=list(EVENT_TYPES)).codes.astype(np.int64)


def _consecutive_views(events: pd.DataFrame, known_only: bool = False) -> tuple[np.ndarray, ...]:
    """View rows sorted by (visitorid, timestamp), ties in file order: visitor, time, item, category."""
    mask = _event_codes(events) == 0
    if known_only:
        mask &= events["categoryid"].to_numpy() != UNKNOWN_CATEGORY
    vis = events["visitorid"].to_numpy(np.int64)[mask]
    ts = events["timestamp"].to_numpy(np.int64)[mask]
    order = np.lexsort((ts, vis))  # lexsort is stable
    return (vis[order], ts[order], events["itemid"].to_numpy(np.int64)[mask][order],
            events["categoryid"].to_numpy(np.int64)[mask][order])


def candidate_rows_estimate(events: pd.DataFrame, lookback: int = LOOKBACK, window_ms: int = WINDOW_MS) -> int:
    """Exact number of (case, candidate) rows of spec §2: sum over views of distinct categories in H."""
    vis, ts, _, cats = _consecutive_views(events, known_only=True)
    n = vis.size
    if n == 0:
        return 0
    idx = np.arange(n)
    first = np.searchsorted(vis, vis, side="left")
    # Window start a_i: max(first view of visitor, i - lookback, first view at >= t_i - window).
    key_t = (vis - vis.min()) * (int(ts.max()) - int(ts.min()) + window_ms + 1) + (ts - ts.min())
    a = np.maximum(np.maximum(first, idx - lookback), np.searchsorted(key_t, key_t - window_ms, side="left"))
    # j counts in case i iff a_i <= j < i and j is the last view of its category before i, i.e.
    # i in (j, min(next same-category view of j, last i with a_i <= j)].
    o = np.lexsort((cats, vis))  # stable, so index order within (visitor, category)
    nxt = np.full(n, n, dtype=np.int64)
    same = (vis[o][1:] == vis[o][:-1]) & (cats[o][1:] == cats[o][:-1])
    nxt[o[:-1][same]] = o[1:][same]
    last_i = np.searchsorted(a, idx, side="right") - 1  # a is non-decreasing
    return int(np.maximum(np.minimum(nxt, last_i) - idx, 0).sum())


def realism_summary(events: pd.DataFrame) -> dict:
    """Headline statistics to compare with the real RetailRocket data (see the README table)."""
    codes = _event_codes(events)
    mix = {e: float((codes == i).mean()) for i, e in enumerate(EVENT_TYPES)}
    per = events["visitorid"].value_counts().to_numpy()
    vis, ts, item, cats = _consecutive_views(events)
    same_v = vis[1:] == vis[:-1]
    gaps_s = (ts[1:] - ts[:-1])[same_v] / 1000.0
    kc = (cats[1:] != UNKNOWN_CATEGORY) & (cats[:-1] != UNKNOWN_CATEGORY) & same_v
    t = events["timestamp"].to_numpy()
    hours = (t // HOUR) % 24
    return {
        "n_events": int(len(events)),
        "n_visitors": int(per.size),
        "n_items": int(events["itemid"].nunique()),
        "n_categories_with_events": int(events.loc[events["categoryid"] != UNKNOWN_CATEGORY, "categoryid"].nunique()),
        "event_mix": mix,
        "events_per_visitor": {
            "mean": float(per.mean()), "median": float(np.median(per)),
            "p90": float(np.quantile(per, 0.9)), "p99": float(np.quantile(per, 0.99)),
            "max": int(per.max()),
        },
        "repeat_view_share": float((item[1:] == item[:-1])[same_v].mean()) if same_v.any() else 0.0,
        "same_category_share": float((cats[1:] == cats[:-1])[kc].mean()) if kc.any() else 0.0,
        "view_gap_median_s": float(np.median(gaps_s)) if gaps_s.size else 0.0,
        "view_gap_within_24h_share": float((gaps_s <= 86400).mean()) if gaps_s.size else 0.0,
        "unknown_category_share": float((events["categoryid"].to_numpy() == UNKNOWN_CATEGORY).mean()),
        "night_share": float((hours < 6).mean()),
        "span_days": float((t.max() - t.min()) / DAY),
        "candidate_rows": candidate_rows_estimate(events),
    }
