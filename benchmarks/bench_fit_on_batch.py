"""Time and memory of "fit on this batch" at RetailRocket scale, outside the browser.

    python benchmarks/bench_fit_on_batch.py [--rows 1400000] [--detector isolation_forest ...]

Resamples the build's user features to --rows users, then for each detector runs what the anomaly
page runs in that mode: ``core.anomaly.batch.fit_on_batch`` (a fixed sample of at most
DETECTOR_FIT_CAP users, seed 42) and ``score_rows`` of every user. Prints, per detector, the fit
and scoring seconds and the process's peak RSS above the RSS with the table loaded (psutil,
sampled every 20 ms), and the absolute peak.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.anomaly import batch  # noqa: E402
from core.anomaly.detector import DETECTORS  # noqa: E402
from core.anomaly.scoring import score_rows  # noqa: E402
from core.anomaly.validation import validate_features  # noqa: E402
from core.base import schema  # noqa: E402
from core.store import artifacts as A  # noqa: E402

MB = 2**20


class Peak(threading.Thread):
    """The peak RSS of this process while running, sampled in the background."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.stop = psutil.Process(os.getpid()), 0, False

    def run(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_400_000)
    ap.add_argument("--detector", nargs="*", default=sorted(DETECTORS))
    args = ap.parse_args()
    feats = pd.read_parquet(A.default_dir() / schema.USER_FEATURES_FILE)
    idx = np.random.default_rng(1).integers(0, len(feats), args.rows)
    table = feats.iloc[idx].reset_index(drop=True)
    table["visitorid"] = np.arange(args.rows)
    del feats
    scorable = validate_features(table).scorable
    print(f"users: {args.rows:,}, scorable {int(scorable.sum()):,}, load average {os.getloadavg()[0]:.2f}")
    for name in args.detector:
        base = psutil.Process(os.getpid()).memory_info().rss
        sampler = Peak()
        sampler.start()
        t0 = time.perf_counter()
        fit = batch.fit_on_batch(table, scorable, name)
        t1 = time.perf_counter()
        scores = score_rows(table, scorable, fit.detector)
        t2 = time.perf_counter()
        sampler.stop = True
        sampler.join()
        print(
            f"{name:<18} fit on {fit.fit_rows:,} rows {t1 - t0:6.1f} s, score {len(scores):,} rows {t2 - t1:6.1f} s, "
            f"peak RSS {sampler.peak / MB:6.0f} MB (+{(sampler.peak - base) / MB:.0f} MB over the loaded table)"
        )
        del fit, scores


if __name__ == "__main__":
    main()
