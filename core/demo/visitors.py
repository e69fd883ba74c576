"""Normal visitors: sessions of hierarchical category browsing, carts and checkouts."""

from __future__ import annotations

import numpy as np

from core.demo.catalogue import Catalogue
from core.demo.common import (DAY, HOUR, Part, cycle_times, fit_span, group_index, group_sum,
                              grouped_cumsum, lognormal, run_ids, to_ms)


POWER_SHARE = 0.002  # normal heavy shoppers, deliberately NOT labelled
NORMAL_EVENTS_GUESS = 1.30  # lower bound of events per normal visitor, to over-generate then trim

def normal_visitors(rng: np.random.Generator, cat: Catalogue, n_vis: int) -> Part:
    """Normal visitors (incl. unlabelled power shoppers): sessions of hierarchical category browsing."""
    power = rng.random(n_vis) < POWER_SHARE
    n_sess = np.where(power, 3 + rng.geometric(0.2, n_vis), rng.geometric(0.85, n_vis))
    n_sess = np.minimum(n_sess, 40)
    s_owner, s_pos, s_starts = group_index(n_sess)
    # Mostly one view per session (landing pages), with a lognormal tail of longer sessions.
    length = np.ceil(rng.lognormal(np.log(np.where(power[s_owner], 1.5, 0.18)), 1.35))
    length = np.clip(length, 1, 150).astype(np.int64)
    v_sess, v_pos, v_starts = group_index(length)
    v_owner = s_owner[v_sess]
    n = v_owner.size

    # Time: in-session gaps, then gaps between sessions (same day, or days later at a similar hour).
    g_in = np.where(v_pos == 0, 0, to_ms(lognormal(rng, 160.0, 1.1, n, 3.0, 1790.0)))
    rel_in = grouped_cumsum(g_in, v_starts[v_sess])
    s_dur = group_sum(g_in, v_starts, length)
    later = rng.random(s_owner.size) < 0.8
    g_s = np.where(later, rng.geometric(0.25, s_owner.size) * 86400.0 + rng.normal(0, 5400, s_owner.size),
                   lognormal(rng, 3 * 3600, 0.8, s_owner.size, 2100, 20 * 3600))
    g_s = np.where(s_pos == 0, 0, to_ms(np.maximum(g_s, 2100.0)))
    g_s = np.minimum(g_s, 30 * DAY)
    # Long-lived returners: shrink the gaps between sessions so the visitor fits in 100 days.
    tot_gap = group_sum(g_s, s_starts, n_sess)
    tot_in = group_sum(s_dur, s_starts, n_sess)
    shrink = np.clip((100 * DAY - tot_in) / np.maximum(tot_gap, 1), 0.0, 1.0)
    g_s = np.where(shrink[s_owner] < 1, (g_s * shrink[s_owner]).astype(np.int64) + 1, g_s)
    inc = np.where(s_pos == 0, 0, np.roll(s_dur, 1) + g_s)
    s_rel = grouped_cumsum(inc, s_starts[s_owner])
    last_s = s_starts + n_sess - 1
    dur = s_rel[last_s] + s_dur[last_s]
    t0 = fit_span(cycle_times(rng, n_vis), dur + HOUR)  # + room for the last cart/checkout
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
    root_run, root_first = run_ids(root_sw)
    roots = rng.choice(cat.root_nodes, size=root_first.size, p=cat.root_p)
    par_run, par_first = run_ids(par_sw)
    pars = cat.parent_given_root.sample(roots[root_run[par_first]], rng.random(par_first.size))
    seg, seg_first = run_ids(new_seg)
    # Within a parent run the first leaf is drawn by popularity; each later segment moves to a
    # different sibling, mostly a neighbour in popularity order (a walk the Markov model can learn).
    seg_par = pars[par_run[seg_first]]
    base = cat.leaf_given_parent.sample(seg_par, rng.random(seg_first.size))
    run_first = par_sw[seg_first]
    n_sib = cat.sib_cnt[seg_par]
    step = np.where(run_first, 0, 1 + np.minimum(rng.geometric(0.55, seg_first.size) - 1,
                                                 np.maximum(n_sib - 2, 0)))
    run_start = np.maximum.accumulate(np.where(run_first, np.arange(seg_first.size), 0))
    sib = (cat.sib_pos[base[run_start]] + grouped_cumsum(step, run_start)) % np.maximum(n_sib, 1)
    leaves = cat.sib_list[cat.sib_ptr[seg_par] + sib]
    new_item = new_seg | (rng.random(n) >= 0.38)
    item_run, item_first = run_ids(new_item)
    items = cat.item_given_leaf.sample(leaves[seg[item_first]], rng.random(item_first.size))
    v_item = items[item_run]

    # Add-to-cart between a view and the next one (same item); checkout at the session's end.
    p_atc = np.where(power, 0.06, 0.024)[v_owner]
    atc = rng.random(n) < p_atc
    nxt = np.roll(t, -1) - t
    last_in_sess = np.ones(n, bool)
    last_in_sess[:-1] = v_sess[1:] != v_sess[:-1]
    atc_gap = np.where(last_in_sess, to_ms(lognormal(rng, 30.0, 0.7, n, 2.0, 600.0)),
                       np.maximum((nxt * rng.uniform(0.15, 0.85, n)).astype(np.int64), 1))
    t_atc = t + atc_gap
    conv = atc & (rng.random(n) < np.where(power, 0.5, 0.45)[v_owner])
    s_end = np.where(atc, t_atc, t)[v_starts + length - 1]
    has_co = np.bincount(v_sess[conv], minlength=s_owner.size) > 0
    co_id = np.cumsum(has_co) - 1
    co_t = s_end + to_ms(lognormal(rng, 70.0, 0.8, s_owner.size, 5.0, 1500.0))
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
    return Part(n_vis, owner, t_all.astype(np.int64), item_all, code, checkout, None)


def trim_visitors(part: Part, n_target: int) -> Part:
    """Keep the first visitors whose events add up to at most n_target (whole visitors only)."""
    per = np.bincount(part.owner, minlength=part.n_visitors)
    keep_vis = int(np.searchsorted(np.cumsum(per), n_target, side="right"))
    m = part.owner < keep_vis
    # Checkouts are numbered in visitor order, so a prefix of visitors keeps ids 0..k-1.
    return Part(keep_vis, part.owner[m], part.t[m], part.item[m], part.code[m], part.checkout[m], part.kind)

