"""Choose the bot detector on one generator configuration, report it on a held-back one.

    python benchmarks/detector_selection.py [--out DIR] [--lookalikes FILE]

Selection config: ``core.demo.generate(300_000, seed=42)`` with its default bot mix. Held-back
configs (never seen by the choice): seed 7 with the default mix, and seed 7 with an "alt" mix.
When the generator offers ``generate(..., bot_mix="alt")`` that is used; until then the alt mix is a
stand-in: the seed-7 bots resampled by kind (``ALT_KEEP``), which changes the mix of kinds.

Look-alikes (normal visitors that resemble bots; must stay unflagged): taken from the generator
when its dataset carries them (``ds.lookalikes``: visitorid + kind, or labels rows whose kind is
in ``LOOKALIKE_KINDS``), else from ``--lookalikes`` (feature rows + kind), else a STAND-IN made
here: events of heavy buyers, B2B resellers and loyal daily visitors, turned into the 16 features
with the product's own feature code. The stand-in is marked as such in every output.

Rule: among detectors meeting the targets on the selection config (transactions held by flagged
users <= 5%, normal buyers flagged <= 2%, PR-AUC above the volume rule), the product default is
IsolationForest if it qualifies; the table shows every detector so the choice can be checked.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.anomaly.detector import DETECTORS, Detector, make_detector
from core.anomaly.features import user_features
from core.anomaly.policy import cleaning_cost
from core.anomaly.quality import detector_report
from core.base.schema import MS_PER_DAY, MS_PER_HOUR, USER_FEATURES
from core.demo.generate import generate

N_EVENTS = 300_000
SELECTION_SEED = 42
HELD_BACK_SEED = 7
SHARE = 0.04
# Stand-in alt mix: share of each bot kind kept from the held-back data.
ALT_KEEP = {"price_monitor": 0.3, "cart_stuffer": 1.0, "night_scraper": 0.5, "crawler": 1.0, "burst_bot": 1.0}
LOOKALIKE_KINDS = ("heavy_buyer", "b2b_reseller", "loyal_daily")
TARGETS = {"txn_held_by_flagged": 0.05, "normal_buyers_flagged": 0.02}
POOL = 256
T0 = 1_430_784_000_000  # 2015-05-05 00:00 UTC, inside the demo's window


def _sessions(
    rng: np.random.Generator,
    n_vis: int,
    days: np.ndarray,
    spread: np.ndarray,
    hours: tuple[int, int],
    views: np.ndarray,
    view_gap_s: float,
    carts: np.ndarray,
    buy_p: float,
    kind: str,
    id0: int,
) -> pd.DataFrame:
    """Events of n_vis visitors, one session per active day (vectorised over sessions)."""
    s_owner = np.repeat(np.arange(n_vis), days)
    s_pos = np.arange(s_owner.size) - np.repeat(np.cumsum(days) - days, days)
    day = (s_pos * spread[s_owner]).astype(np.int64)  # e.g. spread 1 = every day
    start = T0 + day * MS_PER_DAY + rng.integers(hours[0], hours[1], s_owner.size) * MS_PER_HOUR
    nv = views[s_owner]
    nc = np.minimum(carts[s_owner], nv)
    buy = rng.random(s_owner.size) < buy_p
    nt = np.where(buy, nc, 0)
    per = nv + nc + nt
    e_sess = np.repeat(np.arange(s_owner.size), per)
    e_pos = np.arange(e_sess.size) - np.repeat(np.cumsum(per) - per, per)
    is_view = e_pos < nv[e_sess]
    is_cart = ~is_view & (e_pos < (nv + nc)[e_sess])
    gap = np.where(
        is_view,
        rng.lognormal(np.log(view_gap_s), 0.8, e_sess.size).clip(6, 1700),
        np.where(is_cart, rng.uniform(10, 40, e_sess.size), 1.0),
    )  # checkout: 1 s
    gap[e_pos == 0] = 0
    rel = np.cumsum(gap) - np.repeat((np.cumsum(gap) - gap)[np.cumsum(per) - per], per)
    ts = start[e_sess] + (rel * 1000).astype(np.int64)
    owner = s_owner[e_sess]
    # Each visitor browses a personal pool of items in 3-8 favourite categories.
    cats = rng.integers(0, 200, (n_vis, 8))
    n_cats = rng.integers(3, 9, n_vis)
    slot = np.arange(POOL)[None, :] % n_cats[:, None]
    pool = np.take_along_axis(cats, slot, axis=1) * 200 + rng.integers(0, 200, (n_vis, POOL))
    k_view = e_pos.copy()
    k_view[~is_view] = (e_pos - nv[e_sess])[~is_view] % np.maximum(nc[e_sess], 1)[~is_view]
    item = pool[owner, (k_view + 7 * s_pos[e_sess]) % POOL]
    event = np.where(is_view, "view", np.where(is_cart, "addtocart", "transaction"))
    return pd.DataFrame(
        {
            "timestamp": ts,
            "visitorid": id0 + owner,
            "event": event,
            "itemid": item,
            "categoryid": item // 200,
            "kind": kind,
        }
    )


def stand_in_lookalikes(seed: int = 0, n: int = 300) -> pd.DataFrame:
    """STAND-IN normal look-alikes as feature rows + kind (until the generator provides them)."""
    rng = np.random.default_rng(seed)
    heavy_days = rng.integers(5, 25, n)
    b2b_days = rng.integers(10, 40, n)
    loyal_days = rng.integers(20, 60, n)
    parts = [
        # Heavy buyers: several purchases over many sessions on scattered days, normal gaps.
        _sessions(
            rng,
            n,
            heavy_days,
            rng.uniform(2, 4, n),
            (6, 22),
            rng.integers(3, 15, n),
            120.0,
            rng.integers(1, 4, n),
            0.4,
            "heavy_buyer",
            10_000_000,
        ),
        # B2B resellers: bulk add-to-carts and transactions, business hours, working days.
        _sessions(
            rng,
            n,
            b2b_days,
            rng.uniform(1.3, 2, n),
            (7, 16),
            rng.integers(5, 25, n),
            40.0,
            rng.integers(5, 25, n),
            0.7,
            "b2b_reseller",
            20_000_000,
        ),
        # Loyal daily visitors: most days for weeks, a few views with normal gaps, rarely a cart.
        _sessions(
            rng,
            n,
            loyal_days,
            rng.uniform(1.0, 1.3, n),
            (5, 23),
            rng.integers(2, 8, n),
            150.0,
            (rng.random(n) < 0.1).astype(np.int64),
            0.3,
            "loyal_daily",
            30_000_000,
        ),
    ]
    ev = pd.concat(parts, ignore_index=True)
    kind = ev.drop_duplicates("visitorid").set_index("visitorid")["kind"]
    feats = user_features(ev.drop(columns="kind"))
    feats["kind"] = feats["visitorid"].map(kind).to_numpy()
    return feats


def _generate(seed: int, mix: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(features, bot labels, how the mix was made) of one generator configuration."""
    takes_mix = "bot_mix" in inspect.signature(generate).parameters
    ds = generate(N_EVENTS, seed, bot_mix=mix) if (mix and takes_mix) else generate(N_EVENTS, seed)
    feats = user_features(ds.events)
    labels = ds.labels
    note = f"seed {seed}, {'generator ' + mix if mix and takes_mix else 'default'} mix"
    if mix and not takes_mix:  # stand-in alt mix: resample bots by kind, drop the rest entirely
        rng = np.random.default_rng(seed)
        keep = rng.random(len(labels)) < labels["kind"].map(ALT_KEEP).fillna(1.0).to_numpy()
        dropped = labels.loc[~keep, "visitorid"].to_numpy()
        feats = feats.loc[~feats["visitorid"].isin(dropped)].reset_index(drop=True)
        labels = labels.loc[keep].reset_index(drop=True)
        note = f"seed {seed}, STAND-IN alt mix (bots resampled by kind: {ALT_KEEP})"
    gen_la = getattr(ds, "lookalikes", None)
    if gen_la is None and "kind" in labels.columns:
        is_la = labels["kind"].isin(LOOKALIKE_KINDS)
        gen_la, labels = labels.loc[is_la], labels.loc[~is_la]
    if gen_la is not None and len(gen_la):
        feats.attrs["lookalikes"] = feats.merge(gen_la[["visitorid", "kind"]], on="visitorid")
    return feats, labels, note


def main() -> None:
    """Run the selection and the held-back report; print and write the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/detector_selection")
    ap.add_argument("--lookalikes", default=None, help="feature rows + kind (csv or parquet)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)

    if args.lookalikes:
        p = Path(args.lookalikes)
        file_la = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    else:
        file_la = None
    # a detector, or the name of the feature a volume rule ranks by
    detectors: dict[str, Detector | str] = {name: make_detector(name) for name in DETECTORS}
    detectors["robust_z_sum"] = make_detector("robust_z", combine="sum")
    detectors["volume_rule_events"] = "events"
    detectors["volume_rule_events_per_day"] = "events_per_active_day"

    configs = {
        "selection": (SELECTION_SEED, None),
        "held_back": (HELD_BACK_SEED, None),
        "held_back_alt": (HELD_BACK_SEED, "alt"),
    }
    reports = []
    for cfg, (seed, mix) in configs.items():  # three configurations
        t = time.time()
        feats, labels, note = _generate(seed, mix)
        la = feats.attrs.get("lookalikes")
        la_note = "generator"
        if la is None:
            la = file_la if file_la is not None else stand_in_lookalikes()
            la_note = "file" if file_la is not None else "STAND-IN synthesised here"
        rep = detector_report(feats, labels, la, detectors, (SHARE,))
        rep.insert(0, "config", cfg)
        rep.insert(1, "data", note)
        rep["lookalikes"] = la_note
        reports.append(rep)
        print(f"\n== {cfg}: {note}; look-alikes: {la_note} ({time.time() - t:.0f} s)")
        print(rep.drop(columns=["config", "data", "lookalikes", "share"]).round(3).T.to_string())
        if cfg == "selection":
            default = make_detector("isolation_forest").fit(feats.loc[:, list(USER_FEATURES)])
            cost = cleaning_cost(feats, default.score_samples(feats), frozen_threshold=default.threshold_)
            cost.to_csv(out / "cleaning_cost_selection.csv", index=False)
            print("\ncleaning cost of the default (selection config, policy off):")
            print(cost.round(4).to_string(index=False))
    table = pd.concat(reports, ignore_index=True)
    table.to_csv(out / "detector_report.csv", index=False)

    sel = table[table["config"] == "selection"]
    volume = sel.loc[sel["detector"] == "volume_rule_events", "pr_auc"].max()
    ok = sel[
        (sel["txn_held_by_flagged"] <= TARGETS["txn_held_by_flagged"])
        & (sel["normal_buyers_flagged"] <= TARGETS["normal_buyers_flagged"])
        & (sel["pr_auc"] > volume)
        & sel["detector"].isin(list(DETECTORS))
    ]
    print("\nmeeting the targets on the selection config:", list(ok["detector"]))
    choice = (
        "isolation_forest"
        if "isolation_forest" in set(ok["detector"])
        else (ok.sort_values("pr_auc", ascending=False)["detector"].iloc[0] if len(ok) else None)
    )
    print("chosen default:", choice)


if __name__ == "__main__":
    main()
