"""Assembly: every visitor kind on one catalogue, dense visitor ids, categories by the as-of join."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.base.schema import EVENT_COLUMNS, EVENT_TYPES, MS_PER_DAY
from core.demo.bots import ABNORMAL_KINDS, MAKERS, BotMix, resolve_bot_mix
from core.demo.catalogue import ITEMS_PER_EVENT, Catalogue, build_catalogue, category_tree_frame
from core.demo.common import T_END, T_START, Part, kind_counts
from core.demo.properties import (
    category_snapshots,
    ints_to_str,
    item_properties_frame,
    other_properties,
)
from core.demo.visitors import (
    LOOKALIKE_KINDS,
    LOOKALIKE_RATE,
    NORMAL_EVENTS_GUESS,
    human_visitors,
    lookalike_profile,
    ordinary_profile,
    trim_visitors,
)
from core.reading.categories import asof_categories

logger = logging.getLogger(__name__)

DUPLICATE_RATE = 460 / 2_756_101  # exact duplicate rows in the real events.csv


SCALES: dict[str, int] = {"demo": 300_000, "retailrocket": 2_756_101}


@dataclass
class DemoDataset:
    """A generated RetailRocket-like dataset: prepared events, raw item properties, tree, labels.

    ``labels`` lists the abnormal visitors only (every listed visitor is a bot, whatever its kind);
    ``lookalikes`` lists normal visitors that look abnormal by volume alone (never in ``labels``).
    """

    events: pd.DataFrame
    item_properties: pd.DataFrame
    category_tree: pd.DataFrame
    labels: pd.DataFrame
    seed: int
    n_events_requested: int
    n_duplicates: int  # exact duplicate rows write_raw injects into events.csv
    info: dict = field(default_factory=dict)
    lookalikes: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"visitorid": np.zeros(0, np.int64), "kind": np.zeros(0, object)})
    )
    bot_mix: str = "default"


def _strictly_increasing(vis: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per visitor (rows sorted by visitor, time), bump equal timestamps so they strictly increase."""
    i = np.arange(t.size, dtype=np.int64)
    key = t - i
    k_min = int(key.min()) if key.size else 0
    big = int(key.max()) - k_min + 1 if key.size else 1
    off = vis.astype(np.int64) * big
    return np.maximum.accumulate(off + key - k_min) - off + k_min + i


def _visitor_parts(rng: np.random.Generator, cat: Catalogue, n_events: int, mix: BotMix) -> list[Part]:
    """Abnormal kinds on their budgets, normal look-alikes, then ordinary visitors filling the rest."""
    parts: list[Part] = []
    for kind in ABNORMAL_KINDS:  # loop over the handful of abnormal kinds
        share, median, sigma, lo, hi = mix.budget[kind]
        counts = kind_counts(rng, share * n_events, median, sigma, lo, hi)
        parts.append(MAKERS[kind](rng, cat, counts, mix))
    for kind in LOOKALIKE_KINDS:  # and of look-alike kinds
        n = int(round(LOOKALIKE_RATE[kind] * n_events))
        parts.append(human_visitors(rng, cat, lookalike_profile(rng, kind, n), kind))
    remaining = max(n_events - sum(p.owner.size for p in parts), 0)
    n_guess = int(remaining / NORMAL_EVENTS_GUESS) + 50
    ordinary = human_visitors(rng, cat, ordinary_profile(rng, n_guess), "normal")
    return parts + [trim_visitors(ordinary, remaining)]


def _kind_frame(parts: list[Part], vid_of: np.ndarray, vis_off: np.ndarray, abnormal: bool) -> pd.DataFrame:
    """visitorid, kind of the visitors of the parts that are (not) abnormal, by visitorid."""
    chosen = [i for i, p in enumerate(parts) if p.abnormal == abnormal and p.kind != "normal"]
    ids = [vid_of[vis_off[i] : vis_off[i + 1]] for i in chosen]
    kinds = [np.full(parts[i].n_visitors, parts[i].kind, dtype=object) for i in chosen]
    return (
        pd.DataFrame(
            {
                "visitorid": np.concatenate(ids) if ids else np.zeros(0, np.int64),
                "kind": np.concatenate(kinds) if kinds else np.zeros(0, object),
            }
        )
        .sort_values("visitorid", kind="stable")
        .reset_index(drop=True)
    )


def generate(n_events: int = 300_000, seed: int = 42, bot_mix: str | BotMix = "default") -> DemoDataset:
    """A deterministic RetailRocket-like dataset of about n_events events (see the package doc).

    bot_mix names the mix of abnormal kinds ("default", or "alt" for held-out detector evaluation).
    """
    if n_events < 1000:
        raise ValueError(f"n_events must be >= 1000, got {n_events}")
    mix = resolve_bot_mix(bot_mix)
    rng = np.random.default_rng(seed)
    cat = build_catalogue(rng, int(round(ITEMS_PER_EVENT * n_events)))
    snap_ts, snap_item, snap_leaf, n_no_cat, n_recat = category_snapshots(rng, cat)
    parts = _visitor_parts(rng, cat, n_events, mix)

    # Global visitor index, then dense visitor ids in random order (like the real 0..1.4M ids).
    vis_off = np.cumsum([0] + [p.n_visitors for p in parts])
    n_vis = int(vis_off[-1])
    vid_of = rng.permutation(n_vis).astype(np.int64)
    vis = np.concatenate([p.owner + o for p, o in zip(parts, vis_off[:-1])])
    t = np.concatenate([p.t for p in parts])
    item = np.concatenate([p.item for p in parts])
    code = np.concatenate([p.code for p in parts])
    # Checkouts are numbered within each part: shift them into one global numbering.
    co_off = np.cumsum([0] + [int(p.checkout.max()) + 1 if p.checkout.size else 0 for p in parts])
    co = np.concatenate([np.where(p.checkout >= 0, p.checkout + o, -1) for p, o in zip(parts, co_off[:-1])])
    n_co = int(co_off[-1])
    txn_ids = rng.permutation(n_co).astype(np.float64)
    # By visitor then time: one int64 key (a visitor's generated times are already distinct, so
    # the unstable but fast argsort is deterministic), then times made strictly increasing.
    t_min = T_START - MS_PER_DAY
    width = np.int64(T_END + MS_PER_DAY - t_min)
    order = np.argsort(vis * width + (t - t_min))
    vis, t, item, code, co = vis[order], t[order], item[order], code[order], co[order]
    t = _strictly_increasing(vis, t)
    order = np.argsort((t - t_min) * np.int64(n_vis) + vis)  # chronological, like a log
    vis, t, item, code, co = vis[order], t[order], item[order], code[order], co[order]

    itemid = cat.item_ids[item]
    categoryid = asof_categories(t, itemid, snap_ts, cat.item_ids[snap_item], cat.cat_id[snap_leaf])
    events = pd.DataFrame(
        {
            "timestamp": t,
            "visitorid": vid_of[vis],
            "event": pd.Categorical.from_codes(code, categories=list(EVENT_TYPES)),
            "itemid": itemid,
            "transactionid": np.where(co >= 0, txn_ids[np.maximum(co, 0)], np.nan),
            "categoryid": categoryid,
        }
    )[list(EVENT_COLUMNS)]

    labels = _kind_frame(parts, vid_of, vis_off, abnormal=True)
    lookalikes = _kind_frame(parts, vid_of, vis_off, abnormal=False)

    props = [(snap_ts, snap_item, "categoryid", ints_to_str(cat.cat_id[snap_leaf]))]
    props += other_properties(rng, cat)
    item_properties = item_properties_frame(props, cat)

    per_kind = {p.kind: {"visitors": p.n_visitors, "events": int(p.owner.size)} for p in parts}
    info = {
        "n_events": len(events),
        "n_visitors": n_vis,
        "n_items": int(cat.item_ids.size),
        "n_categories": int(cat.cat_id.size),
        "n_leaves": int(cat.is_leaf.sum()),
        "items_without_category": n_no_cat,
        "items_recategorised": n_recat,
        "category_snapshots": int(snap_ts.size),
        "item_property_rows": len(item_properties),
        "transactions": n_co,
        "per_kind": per_kind,
        "bot_mix": mix.name,
    }
    n_dup = max(1, int(round(len(events) * DUPLICATE_RATE)))
    info["n_duplicates"] = n_dup
    logger.info("generated demo data n_events=%d seed=%d: %s", n_events, seed, info)
    return DemoDataset(
        events=events,
        item_properties=item_properties,
        category_tree=category_tree_frame(cat),
        labels=labels,
        seed=seed,
        n_events_requested=n_events,
        n_duplicates=n_dup,
        info=info,
        lookalikes=lookalikes,
        bot_mix=mix.name,
    )
