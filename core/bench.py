"""The one stage timer of the build, ``python -m core bench`` and ``benchmarks/``, and the bench."""

from __future__ import annotations

import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.schema import DEFAULT_SEED

log = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class StageTimer:
    """Logs each stage with its number, duration and peak RSS, and keeps one row per stage."""

    total: int | None = None
    timings: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage: its row holds the stage name, seconds and peak RSS so far."""
        number = len(self.timings) + 1
        of = f"[{number}/{self.total}]" if self.total else f"[{number}]"
        log.info("%s %s ...", of, name)
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.timings.append({"stage": name, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_rss_mb())})
        log.info("%s %s done in %.1f s (peak RSS %.0f MB)", of, name, seconds, peak_rss_mb())

    def note(self, row: dict[str, Any]) -> None:
        """Keep a row that is not a timed stage (a count, a total) among the timings."""
        self.timings.append({"seconds": None, "peak_rss_mb": None, **row})


def _timed_build(tmp: Path, seed: int) -> dict[str, Any]:
    """The whole build from the raw CSVs in its own process, so its peak RSS is its own."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "core", "build", "--raw-dir", str(tmp / "raw"), "--seed", str(seed),
         "--scale", "retailrocket", "--out", str(tmp / "artifacts")],
        check=True, capture_output=True, text=True,
    )
    seconds = round(time.perf_counter() - start, 2)
    rss = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    log.info("whole build (own process) %.2f s, peak RSS %.0f MB", seconds, rss)
    return {"stage": "whole build: python -m core build --raw-dir (own process)", "seconds": seconds, "peak_rss_mb": rss}


def bench(seed: int = DEFAULT_SEED, n_events: int | None = None) -> list[dict[str, Any]]:
    """Time each stage at RetailRocket scale, with peak RSS; returns the rows it prints."""
    from core import anomaly, data, demo, ranking  # heavy imports only when benchmarking

    n_events = n_events or demo.SCALES["retailrocket"]
    timer = StageTimer()
    with timer.stage("generate (not part of build)"):
        ds = demo.generate(n_events=n_events, seed=seed)
    tmp = Path(tempfile.mkdtemp(prefix="core-bench-"))
    try:
        with timer.stage("write raw CSVs (not part of build)"):
            demo.write_raw(ds, tmp / "raw")
        del ds
        build_start = time.perf_counter()
        with timer.stage("load (load_raw)"):
            events = data.load_raw(tmp / "raw")
        with timer.stage("user features"):
            features = anomaly.user_features(events)
        with timer.stage("IsolationForest fit"):
            detector = anomaly.fit_detector(features, seed=seed)
        with timer.stage(f"scoring {len(features):,} users"):
            scores = detector.score_samples(features)
        flagged = features.loc[scores >= detector.threshold_, "visitorid"].to_numpy()
        clean = anomaly.clean_events(events, flagged)
        with timer.stage("candidates"):
            cands = ranking.build_candidates(events)
        timer.note({"stage": "candidate rows", "value": int(len(cands))})
        del cands
        with timer.stage("task 1 rankers on raw (train_and_evaluate)"):
            ranking.train_and_evaluate(events, seed=seed)
        with timer.stage("task 1 rankers on cleaned (before/after)"):
            ranking.train_and_evaluate(clean, seed=seed)
        del events, features, clean
        timer.note({"stage": "stages above, total", "seconds": round(time.perf_counter() - build_start, 2),
                    "peak_rss_mb": round(peak_rss_mb())})
        timer.note(_timed_build(tmp, seed))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return timer.timings
