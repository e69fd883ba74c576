"""Abnormal visitor kinds (labelled): crawlers, night scrapers, burst bots, cart stuffers, monitors."""

from __future__ import annotations

import numpy as np

from core.demo.catalogue import Catalogue
from core.demo.common import (DAY, HOUR, N_DAYS, SEC, T_END, T_START, DAY0, Part, bot_part, cycle_times,
                              fit_span, group_index, group_sum, grouped_cumsum, lognormal, run_ids,
                              to_ms, uniform_start)

ABNORMAL_KINDS: tuple[str, ...] = ("crawler", "night_scraper", "burst_bot", "cart_stuffer", "price_monitor")

# Share of the requested events given to each abnormal kind, with its per-visitor count law
# (lognormal median, sigma, min, max). The normal population fills the rest.
KIND_BUDGET: dict[str, tuple[float, float, float, int, int]] = {
    "crawler": (0.075, 450.0, 0.9, 120, 20_000),
    "night_scraper": (0.05, 150.0, 0.8, 30, 6_000),
    "burst_bot": (0.025, 220.0, 0.5, 60, 1_200),
    "cart_stuffer": (0.008, 16.0, 0.6, 3, 150),
    "price_monitor": (0.12, 6.5, 0.6, 4, 400),
}

def _catalogue_walk(rng: np.random.Generator, cat: Catalogue, counts: np.ndarray,
                    run_lo: int, run_hi: int) -> np.ndarray:
    """Items of visitors walking the catalogue leaf by leaf (depth-first), runs of run_lo..run_hi views."""
    n_vis = counts.size
    max_runs = -(-counts // run_lo) + 1
    r_owner, _, r_starts = group_index(max_runs)
    r_len = rng.integers(run_lo, run_hi + 1, r_owner.size)
    r_begin = grouped_cumsum(r_len, r_starts[r_owner]) - r_len  # start position within the visitor
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


def _few_leaf_items(rng: np.random.Generator, cat: Catalogue, owner: np.ndarray, n_vis: int,
                    max_leaves: int, p_repeat: float) -> np.ndarray:
    """Items drawn from 1..max_leaves popular leaves per visitor, repeating the previous item sometimes."""
    leaves = rng.choice(cat.leaf_marginal, size=(n_vis, max_leaves), p=cat.leaf_marginal_p)
    k = rng.integers(1, max_leaves + 1, n_vis)
    pick = (rng.random(owner.size) * k[owner]).astype(np.int64)
    leaf = leaves[owner, pick]
    first = np.ones(owner.size, bool)
    first[1:] = owner[1:] != owner[:-1]
    new = first | (rng.random(owner.size) >= p_repeat)
    run, starts = run_ids(new)
    return cat.item_given_leaf.sample(leaf[starts], rng.random(starts.size))[run]


def _crawlers(rng: np.random.Generator, cat: Catalogue, counts: np.ndarray) -> Part:
    """Catalogue crawlers: hundreds-thousands of views <5 s apart, leaf by leaf, with rare pauses."""
    n_vis = counts.size
    owner, pos, starts = group_index(counts)
    slow = rng.random(n_vis) < 0.15  # subtle: slower crawlers overlap heavy humans a bit
    gap = np.where(slow[owner], lognormal(rng, 4.5, 0.5, owner.size, 1.0, 15.0),
                   lognormal(rng, 1.3, 0.45, owner.size, 0.15, 4.9))
    pause = rng.random(owner.size) < 1 / 350
    gap = np.where(pause, lognormal(rng, 3 * 3600, 1.0, owner.size, 600, 20 * 3600), gap)
    gap_ms = np.where(pos == 0, 0, to_ms(gap))
    rel = grouped_cumsum(gap_ms, starts[owner])
    dur = group_sum(gap_ms, starts, counts)
    t = uniform_start(rng, dur)[owner] + rel
    item = _catalogue_walk(rng, cat, counts, 10, 60)
    return bot_part(n_vis, owner, t, item, None, "crawler")


def _night_scrapers(rng: np.random.Generator, cat: Catalogue, counts: np.ndarray) -> Part:
    """Night scrapers: regular 20-60 s gaps in UTC 0-6 h, night after night, mostly new items."""
    n_vis = counts.size
    owner, pos, starts = group_index(counts)
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
    gap_ms = np.where(j == 0, 0, to_ms(g[owner] * jitter))
    night_start_idx = np.arange(owner.size) - j
    rel = grouped_cumsum(gap_ms, night_start_idx)
    offset = rng.integers(0, int(1.3 * HOUR), n_vis)[owner] + rng.integers(0, 20 * 60 * SEC, owner.size)[night_start_idx]
    t = DAY0 + (first_day[owner] + night * step[owner]) * DAY + offset + rel
    item = _catalogue_walk(rng, cat, counts, 8, 25)
    return bot_part(n_vis, owner, t, item, None, "night_scraper")


def _burst_bots(rng: np.random.Generator, cat: Catalogue, counts: np.ndarray) -> Part:
    """Burst bots: hundreds of views within minutes on a few leaves."""
    n_vis = counts.size
    owner, pos, starts = group_index(counts)
    gap_ms = np.where(pos == 0, 0, to_ms(lognormal(rng, 0.6, 0.6, owner.size, 0.05, 4.0)))
    rel = grouped_cumsum(gap_ms, starts[owner])
    t = uniform_start(rng, group_sum(gap_ms, starts, counts))[owner] + rel
    item = _few_leaf_items(rng, cat, owner, n_vis, 3, 0.2)
    return bot_part(n_vis, owner, t, item, None, "burst_bot")


def _cart_stuffers(rng: np.random.Generator, cat: Catalogue, n_atc: np.ndarray) -> Part:
    """Cart stuffers: many add-to-carts, few views, no purchase; some spread over several days."""
    n_vis = n_atc.size
    subtle = rng.random(n_vis) < 0.25
    n_atc = np.where(subtle, rng.integers(3, 7, n_vis), n_atc)
    n_view = rng.poisson(np.where(subtle, 4.0, 1.5))
    counts = n_atc + n_view
    owner, pos, starts = group_index(counts)
    # Views and add-to-carts interleaved at random: rank of a random key within the visitor.
    order = np.lexsort((rng.random(owner.size), owner))
    rank = np.empty(owner.size, np.int64)
    rank[order] = pos
    code = np.where(rank < n_view[owner], 0, 1)
    days = np.where(rng.random(n_vis) < 0.3, rng.integers(2, 6, n_vis), 1)  # multi-day hoarders
    sess = pos * days[owner] // counts[owner]
    new_sess = (pos > 0) & (sess != np.roll(sess, 1))
    gap_s = np.where(new_sess, rng.integers(1, 4, owner.size) * 86400 + rng.normal(0, 7200, owner.size),
                     lognormal(rng, 12.0, 0.8, owner.size, 1.0, 600.0))
    gap_ms = np.where(pos == 0, 0, to_ms(np.maximum(gap_s, 3600 * new_sess)))
    rel = grouped_cumsum(gap_ms, starts[owner])
    dur = group_sum(gap_ms, starts, counts)
    t = fit_span(cycle_times(rng, n_vis), dur)[owner] + rel
    item = _few_leaf_items(rng, cat, owner, n_vis, 3, 0.35)
    return bot_part(n_vis, owner, t, item, code, "cart_stuffer")


def _price_monitors(rng: np.random.Generator, cat: Catalogue, counts: np.ndarray) -> Part:
    """Price monitors: the same 1-4 items re-viewed at a regular period for days (some irregular)."""
    n_vis = counts.size
    k = rng.choice(np.arange(1, 5), size=n_vis, p=[0.7, 0.15, 0.1, 0.05])
    visits = np.maximum(np.rint(counts / k).astype(np.int64), 2)
    counts = visits * k
    subtle = rng.random(n_vis) < 0.3
    period = np.where(subtle, lognormal(rng, 22 * 3600, 0.5, n_vis, 6 * 3600, 60 * 3600),
                      lognormal(rng, 4 * 3600, 0.7, n_vis, 1800, 24 * 3600))
    period = np.minimum(period, 0.85 * (T_END - T_START) / SEC / visits)
    jit = np.where(subtle, 0.25, 0.02)
    # Watched items: the first by global popularity, the others mostly from the same leaf.
    first_leaf = rng.choice(cat.leaf_marginal, size=n_vis, p=cat.leaf_marginal_p)
    other_leaf = rng.choice(cat.leaf_marginal, size=(n_vis, 4), p=cat.leaf_marginal_p)
    leaf = np.where(rng.random((n_vis, 4)) < 0.7, first_leaf[:, None], other_leaf)
    watched = cat.item_given_leaf.sample(leaf.ravel(), rng.random(leaf.size)).reshape(n_vis, 4)
    owner, pos, starts = group_index(counts)
    visit = pos // k[owner]
    j = pos % k[owner]
    within = rng.uniform(1.5, 4.0, n_vis)
    visit_first = np.arange(owner.size) - j  # one jitter per visit, so a visit's items stay in order
    jitter = np.clip(rng.normal(0, 1, owner.size), -1.6, 1.6)[visit_first]
    offs_s = visit * period[owner] + jitter * (jit * period)[owner] + j * within[owner]
    rel = to_ms(offs_s - offs_s[starts[owner]] + 0.001)
    dur = rel[starts + counts - 1]
    t = uniform_start(rng, dur)[owner] + rel
    return bot_part(n_vis, owner, t, watched[owner, j], None, "price_monitor")


MAKERS = {"crawler": _crawlers, "night_scraper": _night_scrapers, "burst_bot": _burst_bots,
          "cart_stuffer": _cart_stuffers, "price_monitor": _price_monitors}
