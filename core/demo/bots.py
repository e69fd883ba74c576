"""Abnormal visitor kinds (labelled): crawlers, night scrapers, burst bots, cart stuffers, monitors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from core.base.schema import MS_PER_DAY, MS_PER_HOUR, MS_PER_SECOND
from core.demo.catalogue import Catalogue
from core.demo.common import (
    DAY0,
    N_DAYS,
    T_END,
    T_START,
    Part,
    bot_part,
    cycle_times,
    fit_span,
    group_index,
    group_sum,
    grouped_cumsum,
    lognormal,
    run_ids,
    to_ms,
    uniform_start,
)

ABNORMAL_KINDS: tuple[str, ...] = (
    "crawler",
    "night_scraper",
    "burst_bot",
    "cart_stuffer",
    "price_monitor",
    "headless_probe",
)


@dataclass(frozen=True)
class BotMix:
    """How much of each abnormal kind there is and how it behaves (a named generator configuration)."""

    name: str
    # kind -> (share of the requested events, per-visitor count law: lognormal median, sigma, min, max)
    budget: dict[str, tuple[float, float, float, int, int]]
    crawler_run: tuple[int, int]  # views per leaf before a crawler moves on (several listing passes)
    crawler_slow: float  # share of crawlers at ~4.5 s instead of ~1.3 s per page
    night_gap_s: tuple[float, float]  # a night scraper's regular gap is drawn from this range
    subtle: float  # share of the subtle variant of night scrapers, cart stuffers, price monitors
    monitor_items: tuple[float, float, float, float]  # P(1..4 watched items) of a price monitor
    probe_gap_s: float  # median machine gap of a headless probe


BOT_MIXES: dict[str, BotMix] = {
    "default": BotMix(
        name="default",
        budget={
            "crawler": (0.06, 450.0, 0.9, 120, 20_000),
            "night_scraper": (0.035, 150.0, 0.8, 30, 6_000),
            "burst_bot": (0.06, 220.0, 0.5, 60, 1_200),
            "cart_stuffer": (0.008, 16.0, 0.6, 3, 150),
            "price_monitor": (0.10, 6.5, 0.6, 4, 400),
            "headless_probe": (0.006, 3.0, 0.4, 2, 8),
        },
        crawler_run=(200, 800),
        crawler_slow=0.15,
        night_gap_s=(20.0, 60.0),
        subtle=0.25,
        monitor_items=(0.7, 0.15, 0.1, 0.05),
        probe_gap_s=0.35,
    ),
    # Held out for detector evaluation: other shares, more subtle variants, slower crawlers, more
    # low-volume probes, so a detector chosen on the default mix meets bots it never saw.
    "alt": BotMix(
        name="alt",
        budget={
            "crawler": (0.04, 300.0, 1.0, 80, 12_000),
            "night_scraper": (0.07, 120.0, 0.9, 25, 5_000),
            "burst_bot": (0.04, 160.0, 0.6, 40, 1_000),
            "cart_stuffer": (0.012, 12.0, 0.7, 3, 120),
            "price_monitor": (0.09, 8.0, 0.7, 4, 500),
            "headless_probe": (0.012, 4.0, 0.5, 2, 12),
        },
        crawler_run=(80, 400),
        crawler_slow=0.4,
        night_gap_s=(35.0, 110.0),
        subtle=0.45,
        monitor_items=(0.5, 0.25, 0.15, 0.1),
        probe_gap_s=0.6,
    ),
}
# Sized for `python -m core bench`, not for realism: crawlers hop to another leaf every 4-10 pages,
# as the heavy visitors of the real log do, whose many-category histories give RetailRocket 1.6
# candidate rows per event. 2.96M events then make 1.41M visitors and 4.7M candidate rows, at
# least the real set's 2.76M / 1.41M / 4.44M on every count.
BOT_MIXES["bench"] = dataclasses.replace(BOT_MIXES["default"], name="bench", crawler_run=(4, 10))


def resolve_bot_mix(mix: str | BotMix) -> BotMix:
    """The BotMix of a name (or the BotMix itself)."""
    if isinstance(mix, BotMix):
        return mix
    if mix not in BOT_MIXES:
        raise ValueError(f"unknown bot_mix {mix!r}; expected one of {sorted(BOT_MIXES)} or a BotMix")
    return BOT_MIXES[mix]


def _runs(
    counts: np.ndarray, r_len: np.ndarray, r_owner: np.ndarray, r_starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each visitor's events into consecutive runs of the given (over-generated) lengths.

    Returns the kept runs' index into r_len, and for each event its run (index into the kept runs)
    and its position within the run.
    """
    r_begin = grouped_cumsum(r_len, r_starts[r_owner]) - r_len  # start position within the visitor
    kept = np.flatnonzero(r_begin < counts[r_owner])
    r_global = (np.cumsum(counts) - counts)[r_owner[kept]] + r_begin[kept]
    idx = np.arange(int(counts.sum()))
    run = np.searchsorted(r_global, idx, side="right") - 1
    return kept, run, idx - r_global[run]


def _listing_items(
    rng: np.random.Generator, cat: Catalogue, leaf: np.ndarray, run: np.ndarray, k: np.ndarray
) -> np.ndarray:
    """The k-th item of each run's leaf listing, from a random page offset, wrapping round."""
    off = rng.integers(0, 1 << 30, leaf.size)
    lf = leaf[run]
    return cat.leaf_items[cat.leaf_ptr[lf] + (off[run] + k) % cat.leaf_cnt[lf]]


def _catalogue_walk(
    rng: np.random.Generator, cat: Catalogue, counts: np.ndarray, run_lo: int, run_hi: int
) -> np.ndarray:
    """Items of visitors walking the catalogue leaf by leaf (depth-first), runs of run_lo..run_hi views."""
    r_owner, _, r_starts = group_index(-(-counts // run_lo) + 1)
    r_len = rng.integers(run_lo, run_hi + 1, r_owner.size)
    kept, run, k = _runs(counts, r_len, r_owner, r_starts)
    r_owner = r_owner[kept]
    r_rank = np.arange(r_owner.size) - np.searchsorted(r_owner, r_owner, side="left")
    start = rng.integers(0, cat.dfs_leaves.size, counts.size)
    r_leaf = cat.dfs_leaves[(start[r_owner] + r_rank) % cat.dfs_leaves.size]
    return _listing_items(rng, cat, r_leaf, run, k)


def _few_leaf_items(
    rng: np.random.Generator, cat: Catalogue, owner: np.ndarray, n_vis: int, max_leaves: int, p_repeat: float
) -> np.ndarray:
    """Items from 1..max_leaves popular leaves per visitor, in no order, sometimes repeated."""
    leaves = rng.choice(cat.leaf_marginal, size=(n_vis, max_leaves), p=cat.leaf_marginal_p)
    k = rng.integers(1, max_leaves + 1, n_vis)
    pick = (rng.random(owner.size) * k[owner]).astype(np.int64)
    leaf = leaves[owner, pick]
    first = np.ones(owner.size, bool)
    first[1:] = owner[1:] != owner[:-1]
    new = first | (rng.random(owner.size) >= p_repeat)
    run, starts = run_ids(new)
    return cat.item_given_leaf.sample(leaf[starts], rng.random(starts.size))[run]


def _crawlers(rng: np.random.Generator, cat: Catalogue, counts: np.ndarray, mix: BotMix) -> Part:
    """Catalogue crawlers: hundreds-thousands of views <5 s apart, leaf by leaf, with rare pauses.

    A crawler pages through one leaf's listing several times (sort orders, pages, variants) before
    moving to the next leaf, so its most-viewed category is usually the one it views next.
    """
    n_vis = counts.size
    owner, pos, starts = group_index(counts)
    slow = rng.random(n_vis) < mix.crawler_slow  # subtle: slower crawlers overlap heavy humans a bit
    gap = np.where(
        slow[owner], lognormal(rng, 4.5, 0.5, owner.size, 1.0, 15.0), lognormal(rng, 1.3, 0.45, owner.size, 0.15, 4.9)
    )
    pause = rng.random(owner.size) < 1 / 350
    gap = np.where(pause, lognormal(rng, 3 * 3600, 1.0, owner.size, 600, 20 * 3600), gap)
    gap_ms = np.where(pos == 0, 0, to_ms(gap))
    rel = grouped_cumsum(gap_ms, starts[owner])
    dur = group_sum(gap_ms, starts, counts)
    t = uniform_start(rng, dur)[owner] + rel
    item = _catalogue_walk(rng, cat, counts, *mix.crawler_run)
    return bot_part(n_vis, owner, t, item, None, "crawler")


def _night_scrapers(rng: np.random.Generator, cat: Catalogue, counts: np.ndarray, mix: BotMix) -> Part:
    """Night scrapers: regular gaps in UTC 0-6 h, one category listing per night, every 2-3 nights.

    Each night is one pass over a large leaf's listing (mostly new items); nights more than 24 h
    apart, so a night's history never holds the previous night's category.
    """
    n_vis = counts.size
    subtle = rng.random(n_vis) < mix.subtle
    lo, hi = mix.night_gap_s
    g = np.where(subtle, rng.uniform(hi, 2 * hi, n_vis), rng.uniform(lo, hi, n_vis))
    cap = np.maximum((rng.uniform(4.3, 5.6, n_vis) * 3600 / g).astype(np.int64), 1)
    n_owner, _, n_starts = group_index(np.full(n_vis, N_DAYS // 2))
    big = np.flatnonzero(cat.leaf_cnt > 0)
    n_leaf = rng.choice(big, size=n_owner.size, p=cat.leaf_cnt[big] / cat.leaf_cnt[big].sum())
    n_len = np.minimum(np.maximum(cat.leaf_cnt[n_leaf], 20), cap[n_owner])
    counts = np.minimum(counts, group_sum(n_len, n_starts, np.full(n_vis, N_DAYS // 2)))
    kept, night_run, j = _runs(counts, n_len, n_owner, n_starts)
    owner, pos, starts = group_index(counts)
    night = night_run - night_run[starts][owner]  # night number within the visitor
    nights = night[starts + counts - 1] + 1
    step = np.where(rng.random(n_vis) < 0.7, 2, 3)
    step = np.maximum(np.minimum(step, (N_DAYS - 4) // nights), 1)
    first_day = 1 + (rng.random(n_vis) * np.maximum(N_DAYS - 3 - (nights - 1) * step, 1)).astype(np.int64)
    jitter = rng.normal(1.0, 0.12, owner.size).clip(0.5, 1.6)
    gap_ms = np.where(j == 0, 0, to_ms(g[owner] * jitter))
    night_start_idx = np.arange(owner.size) - j
    rel = grouped_cumsum(gap_ms, night_start_idx)
    offset = (
        rng.integers(0, int(1.3 * MS_PER_HOUR), n_vis)[owner]
        + rng.integers(0, 20 * 60 * MS_PER_SECOND, owner.size)[night_start_idx]
    )
    t = DAY0 + (first_day[owner] + night * step[owner]) * MS_PER_DAY + offset + rel
    item = _listing_items(rng, cat, n_leaf[kept], night_run, j)
    return bot_part(n_vis, owner, t, item, None, "night_scraper")


def _burst_bots(rng: np.random.Generator, cat: Catalogue, counts: np.ndarray, mix: BotMix) -> Part:
    """Burst bots: hundreds of views within minutes on a few leaves."""
    n_vis = counts.size
    owner, pos, starts = group_index(counts)
    gap_ms = np.where(pos == 0, 0, to_ms(lognormal(rng, 0.6, 0.6, owner.size, 0.05, 4.0)))
    rel = grouped_cumsum(gap_ms, starts[owner])
    t = uniform_start(rng, group_sum(gap_ms, starts, counts))[owner] + rel
    item = _few_leaf_items(rng, cat, owner, n_vis, 3, 0.2)
    return bot_part(n_vis, owner, t, item, None, "burst_bot")


def _cart_stuffers(rng: np.random.Generator, cat: Catalogue, n_atc: np.ndarray, mix: BotMix) -> Part:
    """Cart stuffers: many add-to-carts, few views, no purchase; some spread over several days."""
    n_vis = n_atc.size
    subtle = rng.random(n_vis) < mix.subtle
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
    gap_s = np.where(
        new_sess,
        rng.integers(1, 4, owner.size) * 86400 + rng.normal(0, 7200, owner.size),
        lognormal(rng, 12.0, 0.8, owner.size, 1.0, 600.0),
    )
    gap_ms = np.where(pos == 0, 0, to_ms(np.maximum(gap_s, 3600 * new_sess)))
    rel = grouped_cumsum(gap_ms, starts[owner])
    dur = group_sum(gap_ms, starts, counts)
    t = fit_span(cycle_times(rng, n_vis), dur)[owner] + rel
    item = _few_leaf_items(rng, cat, owner, n_vis, 3, 0.35)
    return bot_part(n_vis, owner, t, item, code, "cart_stuffer")


def _price_monitors(rng: np.random.Generator, cat: Catalogue, counts: np.ndarray, mix: BotMix) -> Part:
    """Price monitors: the same 1-4 items re-viewed at a regular period for days (some irregular)."""
    n_vis = counts.size
    k = rng.choice(np.arange(1, 5), size=n_vis, p=list(mix.monitor_items))
    visits = np.maximum(np.rint(counts / k).astype(np.int64), 2)
    counts = visits * k
    subtle = rng.random(n_vis) < mix.subtle
    period = np.where(
        subtle,
        lognormal(rng, 22 * 3600, 0.5, n_vis, 6 * 3600, 60 * 3600),
        lognormal(rng, 4 * 3600, 0.7, n_vis, 1800, 24 * 3600),
    )
    period = np.minimum(period, 0.85 * (T_END - T_START) / MS_PER_SECOND / visits)
    jit = np.where(subtle, 0.25, 0.02)
    # Watched items: the first by global popularity, the others nearly always from the same leaf
    # (competing offers of one product type), so the watched category is the one viewed next.
    first_leaf = rng.choice(cat.leaf_marginal, size=n_vis, p=cat.leaf_marginal_p)
    other_leaf = rng.choice(cat.leaf_marginal, size=(n_vis, 4), p=cat.leaf_marginal_p)
    leaf = np.where(rng.random((n_vis, 4)) < 0.92, first_leaf[:, None], other_leaf)
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


def _headless_probes(rng: np.random.Generator, cat: Catalogue, counts: np.ndarray, mix: BotMix) -> Part:
    """Headless probes: a few views (sometimes an add-to-cart) at machine-regular sub-second gaps.

    Low volume on purpose: only their rhythm (every gap well under a second, at any hour) and
    their sub-second pace through one listing give them away, never the number of events.
    """
    n_vis = counts.size
    owner, pos, starts = group_index(counts)
    g = lognormal(rng, mix.probe_gap_s, 0.3, n_vis, 0.08, 0.95)
    gap_ms = np.where(pos == 0, 0, to_ms(g[owner] * rng.normal(1.0, 0.03, owner.size).clip(0.9, 1.1)))
    rel = grouped_cumsum(gap_ms, starts[owner])
    t = uniform_start(rng, group_sum(gap_ms, starts, counts))[owner] + rel
    leaf = rng.choice(cat.leaf_marginal, size=n_vis, p=cat.leaf_marginal_p)  # one listing page
    item = cat.item_given_leaf.sample(leaf[owner], rng.random(owner.size))
    last = pos == counts[owner] - 1
    code = np.where(last & (pos > 0) & (rng.random(n_vis) < 0.3)[owner], 1, 0)  # probes the cart API
    return bot_part(n_vis, owner, t, item, code, "headless_probe")


MAKERS = {
    "crawler": _crawlers,
    "night_scraper": _night_scrapers,
    "burst_bot": _burst_bots,
    "cart_stuffer": _cart_stuffers,
    "price_monitor": _price_monitors,
    "headless_probe": _headless_probes,
}
