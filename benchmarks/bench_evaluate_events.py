"""Memory and time of "Evaluate on your events" (the ranking page's upload, `python -m core evaluate`).

    python benchmarks/bench_evaluate_events.py [--events 1000000] [--format parquet|csv]

Generates --events demo events (seed 7, a mix the build never saw), writes them in the prepared
layout, then in a fresh process runs exactly what the page runs on an upload: core.userfiles.uploads.
read_table on the file's bytes, prepared_events, evaluate_events with the served ranker (every
case, the baselines, 300 bootstrap resamples) and the per-case CSV download's bytes. Prints the
cases, each step's seconds, the process RSS before the upload and the peak RSS of the whole
run (ru_maxrss). Budget: the dashboard's 1 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MB = 2**20


def child(path: str) -> dict:
    """The page's steps on one file, timed; RSS in MiB."""
    import psutil

    from core.evaluation.on_events import evaluate_events, prepared_events
    from core.store import artifacts
    from core.userfiles.export import csv_bytes
    from core.userfiles.uploads import read_table

    arts = artifacts.load_artifacts()
    before = psutil.Process().memory_info().rss / MB
    out: dict = {"served": arts.ranking_model_name, "rss_before_upload_mib": round(before)}
    t = time.perf_counter()
    data = Path(path).read_bytes()
    frame, kind, _ = read_table(Path(path).name, data)
    del data
    events = prepared_events(frame, Path(path).name)
    del frame
    out["read_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    result = evaluate_events(events, arts.ranking_model, arts.ranking_model_name)
    out["evaluate_s"] = round(time.perf_counter() - t, 2)
    out["events"], out["cases"] = len(events), result.report["cases"]
    del events
    t = time.perf_counter()
    out["cases_csv_mib"] = round(len(csv_bytes(result.cases)) / MB, 1)
    out["csv_s"] = round(time.perf_counter() - t, 2)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> int:
    """Make the file, run the child, print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    from core.demo.generate import generate

    ds = generate(n_events=args.events, seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"events_{args.events}.{args.format}"
        events = ds.events.assign(event=ds.events["event"].astype(str))
        events.to_parquet(path, index=False) if args.format == "parquet" else events.to_csv(path, index=False)
        size = path.stat().st_size / MB
        del ds, events
        run = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True)
        if run.returncode:
            print(run.stderr[-3000:], file=sys.stderr)
            return run.returncode
        figures = json.loads(run.stdout.strip().splitlines()[-1])
    figures["file_mib"] = round(size, 1)
    figures["format"] = args.format
    for key, value in figures.items():
        print(f"{key:<24}{value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
