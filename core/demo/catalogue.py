"""The catalogue: a category tree of the real shape, items in its leaves, and popularity samplers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.demo.common import grouped_cumsum

# The real tree: 1,669 categories by depth 0..5; ids drawn from 0..1697 like the real ones.
DEPTH_COUNTS: tuple[int, ...] = (25, 174, 702, 665, 90, 13)
N_CATEGORY_IDS = 1698
# How many nodes of each depth have children (the rest of that depth are leaves).
_PARENT_POOL: tuple[int, ...] = (25, 174, 316, 45, 7)

ITEMS_PER_EVENT = 0.085  # 235k items at 2.76M events


class CondSampler:
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
        within = grouped_cumsum(w, starts[g]) / tot[g]
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


# --------------------------------------------------------------------------- catalogue


@dataclass
class Catalogue:
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
    parent_given_root: CondSampler
    leaf_given_parent: CondSampler
    item_given_leaf: CondSampler
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
    anc[offs[0] : offs[1], 0] = np.arange(offs[0], offs[1])
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


def build_catalogue(rng: np.random.Generator, n_items: int) -> Catalogue:
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
    return Catalogue(
        cat_id=cat_id,
        parent=parent,
        root=root,
        is_leaf=is_leaf,
        leaf_weight=leaf_weight,
        item_ids=item_ids,
        item_leaf=item_leaf,
        item_weight=item_weight,
        leaf_items=by_leaf,
        leaf_ptr=leaf_ptr,
        leaf_cnt=leaf_cnt,
        dfs_leaves=dfs_leaves,
        root_nodes=root_nodes,
        root_p=root_w[root_nodes] / root_w[root_nodes].sum(),
        parent_given_root=CondSampler(root, par_w),
        leaf_given_parent=CondSampler(np.where(parent >= 0, parent, 0), leaf_weight),
        item_given_leaf=CondSampler(item_leaf, item_weight),
        leaf_marginal=active,
        leaf_marginal_p=leaf_weight[active] / leaf_weight[active].sum(),
        sib_list=sib_list,
        sib_ptr=np.cumsum(sib_cnt) - sib_cnt,
        sib_cnt=sib_cnt,
        sib_pos=sib_pos,
    )


def category_tree_frame(cat: Catalogue) -> pd.DataFrame:
    """category_tree table (categoryid int64, parentid nullable Int64), sorted by categoryid."""
    pid = pd.array(np.where(cat.parent >= 0, cat.cat_id[np.maximum(cat.parent, 0)], 0), dtype="Int64")
    pid[cat.parent < 0] = pd.NA
    df = pd.DataFrame({"categoryid": cat.cat_id, "parentid": pid})
    return df.sort_values("categoryid", kind="stable").reset_index(drop=True)
