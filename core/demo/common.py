"""Shared pieces of the demo generator: the time span, grouped-array helpers, time laws, Part."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.base.schema import MS_PER_DAY, MS_PER_HOUR, MS_PER_SECOND

T_START = 1_430_622_000_000  # 2015-05-03 03:00:00 UTC, the start of the real data
T_END = 1_442_545_200_000  # 2015-09-18 03:00:00 UTC, the end of the real data
DAY0 = T_START - T_START % MS_PER_DAY  # midnight UTC of the first day
N_DAYS = int((T_END - DAY0) // MS_PER_DAY) + 1
FIRST_SNAPSHOT = 1_431_226_800_000  # Sunday 2015-05-10 03:00 UTC; the real snapshots are weekly
N_WEEKS = 19  # 2015-05-10 .. 2015-09-13

# UTC hour-of-day weights: the shop is in UTC+3, so the trough is 0-4 UTC and the peak 15-19 UTC.
HOUR_WEIGHTS = np.array(
    [
        0.42,
        0.3,
        0.24,
        0.24,
        0.32,
        0.5,
        0.72,
        0.9,
        1.0,
        1.05,
        1.08,
        1.1,
        1.1,
        1.15,
        1.22,
        1.3,
        1.4,
        1.48,
        1.5,
        1.42,
        1.25,
        1.0,
        0.78,
        0.58,
    ]
)
WEEKDAY_WEIGHTS = np.array([1.05, 1.05, 1.02, 1.0, 0.95, 0.9, 1.0])  # Mon..Sun (1970-01-01 = Thu)

# --------------------------------------------------------------------------- small vector helpers


def group_index(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Owner, position in group and group start for elements of contiguous groups of given sizes."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    pos = np.arange(owner.size, dtype=np.int64) - starts[owner]
    return owner, pos, starts


def grouped_cumsum(values: np.ndarray, group_start_of_elem: np.ndarray) -> np.ndarray:
    """Cumulative sum restarted at each group (groups contiguous; integer values stay exact)."""
    cs = np.cumsum(values)
    return cs - (cs[group_start_of_elem] - values[group_start_of_elem])


def group_sum(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sum of each contiguous group (empty groups give 0)."""
    cs = np.concatenate([np.zeros(1, dtype=values.dtype), np.cumsum(values)])
    return cs[starts + counts] - cs[starts]


def lognormal(
    rng: np.random.Generator, median: float | np.ndarray, sigma: float | np.ndarray, size: int, lo: float, hi: float
) -> np.ndarray:
    """Clipped lognormal draws given the median."""
    return np.clip(rng.lognormal(np.log(median), sigma, size), lo, hi)


def run_ids(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run id of each element (a run starts where flags is True) and the index of each run start."""
    return np.cumsum(flags) - 1, np.flatnonzero(flags)


# --------------------------------------------------------------------------- time helpers


def cycle_times(rng: np.random.Generator, n: int, hour_weights: np.ndarray = HOUR_WEIGHTS) -> np.ndarray:
    """Start times (ms) with the weekly cycle of the shop and the given (default: the shop's) daily cycle."""
    days = np.arange(N_DAYS)
    wd = WEEKDAY_WEIGHTS[((DAY0 // MS_PER_DAY + days + 3) % 7)]
    day = rng.choice(N_DAYS, size=n, p=wd / wd.sum())
    hour = rng.choice(24, size=n, p=hour_weights / hour_weights.sum())
    t = DAY0 + day * MS_PER_DAY + hour * MS_PER_HOUR + rng.integers(0, MS_PER_HOUR, n)
    return np.where(t < T_START, t + MS_PER_DAY, t)  # the first day starts at 03:00


def fit_span(t0: np.ndarray, dur: np.ndarray) -> np.ndarray:
    """Shift start times back by whole days (keeping the hour) so [t0, t0+dur] fits the span."""
    over = t0 + dur - (T_END - 1)
    t0 = t0 - np.where(over > 0, -(-over // MS_PER_DAY), 0) * MS_PER_DAY
    return np.maximum(t0, T_START)


def uniform_start(rng: np.random.Generator, dur: np.ndarray) -> np.ndarray:
    """Start time uniform over the span for an activity lasting dur ms (no daily cycle: bots)."""
    room = np.maximum(T_END - 1 - T_START - dur, 1)
    return T_START + (rng.random(dur.size) * room).astype(np.int64)


def to_ms(seconds: np.ndarray) -> np.ndarray:
    """Seconds to integer milliseconds (at least 1 ms)."""
    return np.maximum(np.rint(seconds * MS_PER_SECOND), 1).astype(np.int64)


# --------------------------------------------------------------------------- visitor kinds


@dataclass
class Part:
    """Events of one visitor kind: local visitor index, time, item index, event code, checkout."""

    n_visitors: int
    owner: np.ndarray
    t: np.ndarray
    item: np.ndarray
    code: np.ndarray  # 0 view, 1 addtocart, 2 transaction
    checkout: np.ndarray  # local checkout index of transaction rows, -1 elsewhere
    kind: str  # "normal", a look-alike kind or an abnormal kind
    abnormal: bool  # listed in the abnormal labels


def bot_part(
    n_vis: int, owner: np.ndarray, t: np.ndarray, item: np.ndarray, code: np.ndarray | None, kind: str
) -> Part:
    """A Part of an abnormal kind, without transactions."""
    code = np.zeros(owner.size, np.int8) if code is None else code.astype(np.int8)
    return Part(n_vis, owner, t.astype(np.int64), item, code, np.full(owner.size, -1, np.int64), kind, True)


def kind_counts(rng: np.random.Generator, budget: float, median: float, sigma: float, lo: int, hi: int) -> np.ndarray:
    """Heavy-tailed per-visitor event counts of one kind, rescaled so they sum to about the budget."""
    mean = median * np.exp(sigma**2 / 2)
    n = int(round(budget / mean))
    if n == 0 and budget >= lo:  # small datasets still get one visitor of the kind
        n = 1
    if n == 0:
        return np.zeros(0, np.int64)
    raw = lognormal(rng, median, sigma, n, lo, hi)
    scaled = raw * budget / raw.sum()
    return np.clip(np.rint(scaled), lo, hi * 2).astype(np.int64)
