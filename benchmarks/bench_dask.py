"""Benchmark of the Dask engine at 10x RetailRocket: 27.6M events as a folder of parquet files.

    python benchmarks/bench_dask.py [--copies 10] [--memory-limit 4GB] [--workers 2] [--dir DIR]
                                    [--skip-pandas]

Makes the folder by generating RetailRocket's 2.76M events once (core.demo) and writing --copies
files, each with the visitor ids offset so every copy is a new set of visitors (one copy in
memory at a time). Then runs ``user features`` and ``candidates`` through the Dask engine on a
LocalCluster (--workers workers of --memory-limit each): wall time, output rows, peak RSS of
each worker process and of the driver. Then the pandas engine on the same folder, each stage in
its own process (`python -m core features|candidates`), for its time and peak RSS. Every line
carries the machine's load averages (1, 5, 15 min) when the run ended: on a shared machine wall
times grow with other people's load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import engine  # noqa: E402
from core.build.bench import peak_rss_mb  # noqa: E402
from core.demo.generate import SCALES, generate  # noqa: E402
from core.engine import dask_engine  # noqa: E402
from core.reading import data  # noqa: E402


def make_folder(folder: Path, copies: int, seed: int = 42) -> int:
    """``copies`` parquet files of the RetailRocket-scale demo events, visitor ids offset per copy."""
    folder.mkdir(parents=True, exist_ok=True)
    events = generate(SCALES["retailrocket"], seed=seed).events
    span = int(events["visitorid"].max()) + 1
    for k in range(copies):  # one copy in memory at a time
        data.write_events(events.assign(visitorid=events["visitorid"] + k * span), folder / f"part-{k:05d}.parquet")
    return len(events) * copies


def _worker_peak_mb() -> float:
    """Peak RSS of this (worker) process, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (as `uptime` prints them)."""
    return [round(v, 2) for v in os.getloadavg()]


def run_dask(folder: Path, out: Path, workers: int, memory_limit: str) -> list[dict]:
    """Both stages on a fresh LocalCluster each, with the peak RSS of every worker."""
    rows = []
    for stage in engine.STAGES:
        with dask_engine.cluster(None, workers, memory_limit) as client:
            start = time.perf_counter()
            n = dask_engine.run_files(stage, engine.parquet_files(folder), out / f"{stage}_dask")
            seconds = time.perf_counter() - start
            peaks = client.run(_worker_peak_mb)
        rows.append(
            {
                "engine": "dask",
                "stage": stage,
                "seconds": round(seconds, 1),
                "rows": n,
                "worker_peak_rss_mb": [round(v) for v in peaks.values()],
                "driver_peak_rss_mb": round(peak_rss_mb()),
                "load_average": load_average(),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def run_pandas(folder: Path, out: Path) -> list[dict]:
    """Both stages on the pandas engine, each in its own process (its peak RSS is its own)."""
    rows: list[dict] = []
    for stage in engine.STAGES:
        start = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "core", stage, str(folder), str(out / f"{stage}_pandas.parquet")],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if run.returncode != 0:
            rows.append({"engine": "pandas", "stage": stage, "failed": run.stderr[-500:]})
        else:
            result = json.loads(run.stdout.strip().splitlines()[-1])
            rows.append(
                {
                    "engine": "pandas",
                    "stage": stage,
                    "seconds": round(seconds, 1),
                    "rows": result["rows"],
                    "peak_rss_mb": result["peak_rss_mb"],
                    "load_average": load_average(),
                }
            )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    """Make the folder, run both engines, print one JSON line per run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--dir", default="/tmp/bench_dask")
    parser.add_argument("--skip-pandas", action="store_true")
    args = parser.parse_args()
    base = Path(args.dir)
    folder, out = base / "events", base / "out"
    if not folder.exists():
        start = time.perf_counter()
        n = make_folder(folder, args.copies)
        print(
            json.dumps(
                {
                    "made": str(folder),
                    "events": n,
                    "seconds": round(time.perf_counter() - start, 1),
                    "load_average": load_average(),
                }
            ),
            flush=True,
        )
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"start": True, "load_average": load_average()}), flush=True)
    run_dask(folder, out, args.workers, args.memory_limit)
    if not args.skip_pandas:
        run_pandas(folder, out)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
