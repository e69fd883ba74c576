"""Human visitors: ordinary browsers and buyers, and the normal look-alikes of bots.

Every human visitor is made by one session engine from a per-visitor ``Profile``: how many
sessions, how far apart, at which hours, how long, which sessions end in a checkout and how big
the basket is. Browsing inside a session is hub and spoke: a visitor keeps to one leaf (the hub)
and makes short detours to other leaves, mostly siblings, coming back to the hub more often than
not; the hub itself changes at some session starts and, rarely, inside a session. So, as in real
sessions, the visitor's most-viewed and last category is usually the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.base.schema import MS_PER_DAY, MS_PER_HOUR
from core.demo.catalogue import Catalogue
from core.demo.common import (
    Part,
    cycle_times,
    fit_span,
    group_index,
    group_sum,
    grouped_cumsum,
    lognormal,
    run_ids,
    to_ms,
)

LOOKALIKE_KINDS: tuple[str, ...] = ("heavy_buyer", "b2b_reseller", "loyal_daily")
# Look-alike visitors per requested event (about 120, 12 and 90 at demo scale).
LOOKALIKE_RATE: dict[str, float] = {"heavy_buyer": 4e-4, "b2b_reseller": 4e-5, "loyal_daily": 3e-4}
P_BUYER = 0.0085  # ordinary visitors who buy once (look-alikes add the rest of the ~1 % buyers)
P_CART = 0.012  # add-to-cart of a browsing (non-checkout) view: abandoned carts
P_ALT = 0.3  # chance that a view (after the first of a session) is away from the hub
NORMAL_EVENTS_GUESS = 1.30  # lower bound of events per ordinary visitor, to over-generate then trim
# Business hours of a reseller, in UTC (the shop is in UTC+3: 09-18 local).
_BUSINESS_HOURS = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.3, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.float64)


@dataclass
class Profile:
    """Per-visitor parameters of a population of human visitors (arrays of one length)."""

    n_sess: np.ndarray  # sessions
    browse_len: np.ndarray  # median views of a browsing session (lognormal, sigma 1.35)
    checkout_len: np.ndarray  # median views of a checkout session
    p_checkout: np.ndarray  # chance that a session (other than the last) ends in a checkout
    last_checkout: np.ndarray  # bool: the last session ends in a checkout (buyers)
    basket: np.ndarray  # mean add-to-carts of a checkout session (at least one)
    p_convert: np.ndarray  # chance that each further cart line is bought
    p_later: np.ndarray  # chance that the next session is days later (else the same day)
    day_p: np.ndarray  # geometric law of the days between sessions
    hour_jitter_s: np.ndarray  # sd of the shift in start hour from one day's session to the next
    business: np.ndarray  # bool: starts in business hours


def _profile(n: int, **values: float | np.ndarray) -> Profile:
    """A Profile of n visitors, every field broadcast from a scalar or an array."""
    defaults: dict[str, float | np.ndarray] = dict(
        n_sess=1,
        browse_len=0.18,
        checkout_len=3.0,
        p_checkout=0.0,
        last_checkout=False,
        basket=1.0,
        p_convert=0.35,
        p_later=0.8,
        day_p=0.25,
        hour_jitter_s=5400.0,
        business=False,
    )
    defaults.update(values)
    return Profile(**{k: np.broadcast_to(np.asarray(v), (n,)).copy() for k, v in defaults.items()})


def ordinary_profile(rng: np.random.Generator, n_vis: int) -> Profile:
    """Ordinary visitors: mostly one short session; about 0.85 % buy once, at their last session."""
    return _profile(n_vis, n_sess=np.minimum(rng.geometric(0.85, n_vis), 40), last_checkout=rng.random(n_vis) < P_BUYER)


def lookalike_profile(rng: np.random.Generator, kind: str, n: int) -> Profile:
    """Normal visitors who look abnormal by volume alone (never labelled abnormal)."""
    if kind == "heavy_buyer":  # several purchases over many sessions
        return _profile(
            n,
            n_sess=np.minimum(3 + rng.geometric(0.15, n), 30),
            browse_len=1.2,
            p_checkout=0.4,
            last_checkout=True,
            basket=1.6,
            p_convert=0.5,
            day_p=0.15,
        )
    if kind == "b2b_reseller":  # bulk orders in business hours
        return _profile(
            n,
            n_sess=np.minimum(3 + rng.geometric(0.15, n), 25),
            browse_len=6.0,
            checkout_len=14.0,
            p_checkout=0.6,
            last_checkout=True,
            basket=rng.uniform(5, 14, n),
            p_convert=0.85,
            p_later=1.0,
            day_p=0.3,
            hour_jitter_s=900.0,
            business=True,
        )
    if kind == "loyal_daily":  # visits most days for weeks
        return _profile(n, n_sess=rng.integers(15, 46, n), browse_len=0.6, p_checkout=0.02, p_later=0.97, day_p=0.75)
    raise ValueError(f"unknown look-alike kind {kind!r}")


def _session_times(
    rng: np.random.Generator,
    prof: Profile,
    s_owner: np.ndarray,
    s_pos: np.ndarray,
    s_starts: np.ndarray,
    s_dur: np.ndarray,
) -> np.ndarray:
    """Start time (ms) of each session: a cycle-shaped first start, then same-day or days-later gaps."""
    n_vis, n_s = prof.n_sess.size, s_owner.size
    later = rng.random(n_s) < prof.p_later[s_owner]
    days = rng.geometric(prof.day_p[s_owner]) * 86400.0
    g_s = np.where(
        later, days + rng.normal(0, prof.hour_jitter_s[s_owner]), lognormal(rng, 3 * 3600, 0.8, n_s, 2100, 20 * 3600)
    )
    g_s = np.where(s_pos == 0, 0, to_ms(np.maximum(g_s, 2100.0)))
    g_s = np.minimum(g_s, 30 * MS_PER_DAY)
    # Long-lived returners: shrink the gaps between sessions so the visitor fits in 100 days.
    tot_gap = group_sum(g_s, s_starts, prof.n_sess)
    tot_in = group_sum(s_dur, s_starts, prof.n_sess)
    shrink = np.clip((100 * MS_PER_DAY - tot_in) / np.maximum(tot_gap, 1), 0.0, 1.0)
    g_s = np.where(shrink[s_owner] < 1, (g_s * shrink[s_owner]).astype(np.int64) + 1, g_s)
    # Days-later sessions keep the hour of the previous start; same-day ones follow its end.
    prev_dur = np.roll(s_dur, 1)
    inc = np.where(s_pos == 0, 0, np.where(later, np.maximum(g_s, prev_dur + 2100 * 1000), prev_dur + g_s))
    s_rel = grouped_cumsum(inc, s_starts[s_owner])
    last_s = s_starts + prof.n_sess - 1
    dur = s_rel[last_s] + s_dur[last_s]
    t0 = np.where(prof.business, cycle_times(rng, n_vis, _BUSINESS_HOURS), cycle_times(rng, n_vis))
    return fit_span(t0, dur + MS_PER_HOUR)[s_owner] + s_rel  # + room for the last cart/checkout


def _hub_leaves(rng: np.random.Generator, cat: Catalogue, first_v: np.ndarray, first_s: np.ndarray) -> np.ndarray:
    """Hub leaf of each view: changed at the first view, at 45 % of later session starts, rarely inside."""
    n = first_v.size
    r, lv = rng.random(n), rng.random(n)
    new_hub = first_v | (first_s & (r >= 0.55)) | (~first_v & ~first_s & (r < 0.02))
    # The level of a change decides whether the new hub is a sibling, in another branch of the
    # same root, or under a new root.
    root_sw = first_v | (new_hub & np.where(first_s, lv < 0.3, lv < 0.1))
    par_sw = root_sw | (new_hub & np.where(first_s, lv < 0.55, lv < 0.3))
    root_run, root_first = run_ids(root_sw)
    roots = rng.choice(cat.root_nodes, size=root_first.size, p=cat.root_p)
    par_run, par_first = run_ids(par_sw)
    pars = cat.parent_given_root.sample(roots[root_run[par_first]], rng.random(par_first.size))
    seg, seg_first = run_ids(new_hub)
    # Within a parent run the first hub is drawn by popularity; each later one moves to a nearby
    # sibling in popularity order (a walk the Markov model can learn).
    seg_par = pars[par_run[seg_first]]
    base = cat.leaf_given_parent.sample(seg_par, rng.random(seg_first.size))
    run_first = par_sw[seg_first]
    n_sib = cat.sib_cnt[seg_par]
    step = np.where(run_first, 0, 1 + np.minimum(rng.geometric(0.55, seg_first.size) - 1, np.maximum(n_sib - 2, 0)))
    run_start = np.maximum.accumulate(np.where(run_first, np.arange(seg_first.size), 0))
    sib = (cat.sib_pos[base[run_start]] + grouped_cumsum(step, run_start)) % np.maximum(n_sib, 1)
    return cat.sib_list[cat.sib_ptr[seg_par] + sib][seg]


def _with_detours(rng: np.random.Generator, cat: Catalogue, hub: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Leaf of each view: the hub, or a short detour that usually returns to it.

    Each hub has one alternative (a sibling: the product type being compared), which most detours
    visit, so the visitor switches back and forth between two categories as in real sessions.
    """
    n = hub.size
    start = ~first & (rng.random(n) < P_ALT)
    stay = rng.random(n) < P_ALT  # as likely as a start: no order to learn beyond the counts
    changed = np.ones(n, bool)
    changed[1:] = (hub[1:] != hub[:-1]) | first[1:]
    hub_run, hub_first = run_ids(changed)
    alt = cat.leaf_given_parent.sample(cat.parent[hub[hub_first]], rng.random(hub_first.size))
    # A view is in a detour when its block (cut at detour starts, hub views and session starts)
    # began with a detour start.
    block, block_first = run_ids(start | ~stay | first)
    in_detour = start[block_first][block]
    h = hub_run[block_first]
    anywhere = rng.choice(cat.leaf_marginal, size=block_first.size, p=cat.leaf_marginal_p)
    away = np.where((rng.random(block_first.size) < 0.96) & (alt[h] != hub[block_first]), alt[h], anywhere)
    return np.where(in_detour, away[block], hub)


def _carts(
    rng: np.random.Generator,
    prof: Profile,
    v_owner: np.ndarray,
    v_sess: np.ndarray,
    v_pos: np.ndarray,
    basket: np.ndarray,
    checkout: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Add-to-cart and purchase flags of each view: baskets in checkout sessions, rare abandoned carts."""
    n = v_owner.size
    order = np.lexsort((rng.random(n), v_sess))  # a random rank of each view within its session
    rank = np.empty(n, np.int64)
    rank[order] = v_pos
    in_co = checkout[v_sess]
    atc = np.where(in_co, rank < basket[v_sess], rng.random(n) < P_CART)
    # The first cart line of a checkout is always bought, the others with the profile's chance.
    buy = in_co & atc & ((rank == 0) | (rng.random(n) < prof.p_convert[v_owner]))
    return atc, buy


def human_visitors(rng: np.random.Generator, cat: Catalogue, prof: Profile, kind: str, abnormal: bool = False) -> Part:
    """Sessions of hub-and-spoke browsing with carts and checkouts for visitors of one Profile."""
    n_vis = prof.n_sess.size
    s_owner, s_pos, s_starts = group_index(prof.n_sess)
    n_s = s_owner.size
    last = s_pos == prof.n_sess[s_owner] - 1
    checkout = (last & prof.last_checkout[s_owner]) | (~last & (rng.random(n_s) < prof.p_checkout[s_owner]))
    basket = np.where(checkout, 1 + rng.poisson(np.maximum(prof.basket[s_owner] - 1, 0)), 0)
    # Mostly one view per browsing session (landing pages), with a lognormal tail; checkout
    # sessions are longer and hold at least the basket plus one view.
    browse = np.ceil(rng.lognormal(np.log(prof.browse_len[s_owner]), 1.35))
    buying = np.ceil(rng.lognormal(np.log(prof.checkout_len[s_owner]), 0.7))
    length = np.where(checkout, np.maximum(buying, basket + 1), browse)
    length = np.clip(length, 1, 150).astype(np.int64)
    v_sess, v_pos, v_starts = group_index(length)
    v_owner = s_owner[v_sess]
    n = v_owner.size

    g_in = np.where(v_pos == 0, 0, to_ms(lognormal(rng, 180.0, 1.1, n, 3.0, 1790.0)))
    rel_in = grouped_cumsum(g_in, v_starts[v_sess])
    s_t = _session_times(rng, prof, s_owner, s_pos, s_starts, group_sum(g_in, v_starts, length))
    t = s_t[v_sess] + rel_in

    first_v = (v_pos == 0) & (s_pos[v_sess] == 0)
    first_s = (v_pos == 0) & ~first_v
    leaves = _with_detours(rng, cat, _hub_leaves(rng, cat, first_v, first_s), v_pos == 0)
    new_leaf = np.ones(n, bool)
    new_leaf[1:] = (leaves[1:] != leaves[:-1]) | (v_sess[1:] != v_sess[:-1])
    new_item = new_leaf | (rng.random(n) >= 0.52)
    item_run, item_first = run_ids(new_item)
    v_item = cat.item_given_leaf.sample(leaves[item_first], rng.random(item_first.size))[item_run]

    atc, conv = _carts(rng, prof, v_owner, v_sess, v_pos, basket, checkout)
    # Add-to-cart between a view and the next one (same item); checkout at the session's end.
    nxt = np.roll(t, -1) - t
    last_in_sess = np.ones(n, bool)
    last_in_sess[:-1] = v_sess[1:] != v_sess[:-1]
    atc_gap = np.where(
        last_in_sess,
        to_ms(lognormal(rng, 30.0, 0.7, n, 2.0, 600.0)),
        np.maximum((nxt * rng.uniform(0.15, 0.85, n)).astype(np.int64), 1),
    )
    t_atc = t + atc_gap
    s_end = np.where(atc, t_atc, t)[v_starts + length - 1]
    has_co = np.bincount(v_sess[conv], minlength=n_s) > 0
    co_id = np.cumsum(has_co) - 1
    co_t = s_end + to_ms(lognormal(rng, 70.0, 0.8, n_s, 5.0, 1500.0))
    conv_idx = np.flatnonzero(conv)
    c_sess = v_sess[conv_idx]
    c_rank = np.arange(conv_idx.size) - np.searchsorted(c_sess, c_sess, side="left")
    atc_idx = np.flatnonzero(atc)
    owner = np.concatenate([v_owner, v_owner[atc_idx], v_owner[conv_idx]])
    t_all = np.concatenate([t, t_atc[atc_idx], co_t[c_sess] + c_rank])
    item_all = np.concatenate([v_item, v_item[atc_idx], v_item[conv_idx]])
    code = np.concatenate([np.zeros(n, np.int8), np.ones(atc_idx.size, np.int8), np.full(conv_idx.size, 2, np.int8)])
    co = np.concatenate([np.full(n + atc_idx.size, -1, np.int64), co_id[c_sess]])
    return Part(n_vis, owner, t_all.astype(np.int64), item_all, code, co, kind, abnormal)


def trim_visitors(part: Part, n_target: int) -> Part:
    """Keep the first visitors whose events add up to at most n_target (whole visitors only)."""
    per = np.bincount(part.owner, minlength=part.n_visitors)
    keep_vis = int(np.searchsorted(np.cumsum(per), n_target, side="right"))
    m = part.owner < keep_vis
    # Checkouts are numbered in visitor order, so a prefix of visitors keeps ids 0..k-1.
    return Part(
        keep_vis, part.owner[m], part.t[m], part.item[m], part.code[m], part.checkout[m], part.kind, part.abnormal
    )
