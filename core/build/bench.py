"""The one stage timer of the build, ``python -m core bench`` and ``benchmarks/``, and the bench:
the whole build in its own process on a generated set at least RetailRocket's size."""

from __future__ import annotations

import json
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

from core.base.schema import DEFAULT_SEED

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
        start, cpu = time.perf_counter(), time.process_time()
        yield
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        # CPU seconds of this process (all its threads): on a shared machine they vary far less
        # than wall time, which grows with other people's load.
        self.timings.append(
            {"stage": name, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak_rss_mb())}
        )
        log.info("%s %s done in %.1f s (CPU %.1f s, peak RSS %.0f MB)", of, name, seconds, cpu, peak_rss_mb())

    def note(self, row: dict[str, Any]) -> None:
        """Keep a row that is not a timed stage (a count, a total) among the timings."""
        self.timings.append({"seconds": None, "peak_rss_mb": None, **row})


# The bench set is at least the real RetailRocket set's size on every count (2.76M events, 1.41M
# visitors, 4.44M candidate rows): 2.96M events of the generator's "bench" mix make 1.41M
# visitors and 4.7M candidate rows (the default mix gives fewer candidate rows per event).
BENCH_EVENTS = 2_960_000
BENCH_MIX = "bench"


def _timed_build(tmp: Path, seed: int, engine: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The whole build from the raw CSVs in its own process: its stage rows and its own total row."""
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "build",
            "--raw-dir",
            str(tmp / "raw"),
            "--seed",
            str(seed),
            "--scale",
            "retailrocket",
            "--out",
            str(tmp / "artifacts"),
            "--engine",
            engine,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = round(time.perf_counter() - start, 2)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
    rss = round(after.ru_maxrss / 1024)
    log.info("whole build (own process) %.2f s, CPU %.2f s, peak RSS %.0f MB", seconds, cpu, rss)
    result, _ = json.JSONDecoder().raw_decode(run.stdout)  # the JSON, then the realism report's lines
    stages = [{**row, "stage": f"  build: {row['stage']}"} for row in result["timings"]]
    total = {
        "stage": f"whole build, --engine {engine} (own process)",
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_mb": rss,
    }
    return stages, total


def _sizes(out: Path) -> list[dict[str, Any]]:
    """Events, visitors and candidate rows of the benchmarked data, from the build's artifacts."""
    summary = json.loads((out / "dataset_summary.json").read_text())
    metrics = json.loads((out / "task1_metrics.json").read_text())
    return [
        {"stage": "events", "value": summary["events"]},
        {"stage": "visitors", "value": summary["visitors"]},
        {"stage": "candidate rows", "value": metrics["dataset_file"]["candidate_rows_in_run"]},
    ]


def bench(
    seed: int = DEFAULT_SEED, n_events: int | None = None, engine: str = "pandas", full_properties: bool = False
) -> list[dict[str, Any]]:
    """Generate a RetailRocket-size set, then time every stage of the build, with peak RSS.

    ``full_properties`` writes item properties files of the real size (20.3M rows, ~0.75 GB),
    so the load stage pays the real scanning cost.
    """
    from core.demo.generate import generate  # heavy imports only when benchmarking
    from core.demo.raw_files import write_raw

    n_events = n_events or BENCH_EVENTS
    timer = StageTimer()
    with timer.stage(f"generate {n_events:,} events (not part of build)"):
        ds = generate(n_events=n_events, seed=seed, bot_mix=BENCH_MIX)
    tmp = Path(tempfile.mkdtemp(prefix="core-bench-"))
    try:
        what = "full-size item properties" if full_properties else "generated item properties only"
        with timer.stage(f"write raw CSVs, {what} (not part of build)"):
            info = write_raw(ds, tmp / "raw", full_properties=full_properties)
        timer.note({"stage": "item properties rows", "value": info["item_property_rows"]})
        del ds
        stages, total = _timed_build(tmp, seed, engine)
        for row in _sizes(tmp / "artifacts") + stages + [total]:
            timer.note(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return timer.timings
