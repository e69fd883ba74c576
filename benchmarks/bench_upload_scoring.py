"""Benchmark of the anomaly page's upload path on a RetailRocket-sized features file.

    python benchmarks/bench_upload_scoring.py [--rows 1400000] [--artifacts DIR] [--file PATH]

Makes a features parquet of --rows users (core.demo at RetailRocket scale + user_features,
topped up by resampling; in a child process so its memory is not counted), then measures, in
this process, what the dashboard does with an upload: read the bytes, validate, score with
core.anomaly.scoring.score (the distinct feature rows, in chunks with progress), threshold at a share,
explain the shown flagged users, and build the CSV and parquet downloads.
Prints seconds per stage and the peak RSS (resource.getrusage). Targets: <= 15 s, <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.anomaly.features import user_features  # noqa: E402
from core.anomaly.scoring import SCORE_CHUNK_ROWS, explain, flag_scores, score  # noqa: E402
from core.anomaly.validation import validate_features  # noqa: E402
from core.base.distinct import distinct_rows  # noqa: E402
from core.base.schema import USER_FEATURES  # noqa: E402
from core.build.bench import StageTimer, peak_rss_mb  # noqa: E402
from core.store import artifacts as A  # noqa: E402
from core.userfiles import export  # noqa: E402
from core.userfiles.uploads import read_upload  # noqa: E402


def make_file(rows: int, path: Path, seed: int = 42) -> None:
    """User features of the demo generator at RetailRocket scale (2.76M events, ~1.34M
    visitors), topped up to `rows` users by resampling them with fresh visitorids."""
    from core.demo.generate import SCALES, generate

    events = generate(SCALES["retailrocket"], seed=seed).events
    features = user_features(events)
    del events
    if len(features) < rows:
        extra = features.sample(rows - len(features), replace=True, random_state=seed)
        extra["visitorid"] = features["visitorid"].max() + 1 + np.arange(len(extra))
        features = pd.concat([features, extra], ignore_index=True)
    features.head(rows).to_parquet(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_400_000)
    parser.add_argument(
        "--artifacts", type=Path, default=None, help="default: $RECSYS_ARTIFACT_DIR or recsys_artifacts/"
    )
    parser.add_argument("--file", type=Path, default=ROOT / "build-output" / "bench_features_1.4M.parquet")
    parser.add_argument("--every-row", action="store_true", help="score every row (no de-duplication), for comparison")
    parser.add_argument("--make-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.make_only:
        make_file(args.rows, args.file)
        return
    if not args.file.exists() or len(pd.read_parquet(args.file, columns=["visitorid"])) != args.rows:
        args.file.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, __file__, "--make-only", "--rows", str(args.rows), "--file", str(args.file)], check=True
        )

    arts = A.load_artifacts(args.artifacts)
    detector = A.require(arts.detector, "anomaly detector")
    timer = StageTimer()
    print(f"after imports and loading the artifacts: peak RSS {peak_rss_mb():.0f} MB")

    with timer.stage("read upload"):
        data = args.file.read_bytes()  # what st.file_uploader hands the page
        df = read_upload(args.file.name, data).features
    with timer.stage("validate"):
        validation = validate_features(df)
    score_stage = "score every row" if args.every_row else f"score distinct rows (chunks of {SCORE_CHUNK_ROWS:,})"
    with timer.stage(score_stage):
        if args.every_row:  # the reference: the detector on every scorable row, no de-duplication
            scores = np.full(len(df), np.nan)
            scores[validation.scorable] = detector.score_samples(df.loc[validation.scorable, list(USER_FEATURES)])
        else:  # the page's call: core.anomaly.scoring.score, progress after each chunk of distinct rows
            scores = score(df, detector=detector, on_progress=lambda done: None)["anomaly_score"].to_numpy()
        flags = flag_scores(scores, 0.04, detector, df)
    with timer.stage("explain 1,000 shown users"):
        flagged = np.flatnonzero(flags["is_anomaly"].to_numpy())
        top = flagged[np.argsort(-scores[flagged], kind="stable")][:1_000]
        explain(df.iloc[top], detector)
    with timer.stage("CSV download"):
        out = export.with_scores(df, flags)
        csv_data = export.csv_bytes(out)
    with timer.stage("parquet download"):
        parquet_data = export.parquet_bytes(out)

    total = sum(row["seconds"] for row in timer.timings)
    peak = peak_rss_mb()  # before the report-only count of distinct rows below
    n_distinct = len(distinct_rows(df.loc[validation.scorable, list(USER_FEATURES)].to_numpy(np.float64))[0])
    print(
        f"{len(df):,} rows ({len(data) / 1e6:.0f} MB parquet, {n_distinct:,} distinct feature rows), "
        f"{validation.n_scorable:,} scorable, "
        f"{int(flags['is_anomaly'].sum()):,} flagged at share 4%"
    )
    for row in timer.timings:
        print(f"  {row['stage']:<40} {row['seconds']:6.2f} s   peak RSS so far {row['peak_rss_mb']:5.0f} MB")
    print(f"  {'total':<40} {total:6.2f} s")
    print(f"downloads: CSV {len(csv_data) / 1e6:.0f} MB, parquet {len(parquet_data) / 1e6:.0f} MB")
    print(f"peak RSS {peak:.0f} MB on {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f})")
    ok = total <= 15 and peak <= 1536
    print("within targets (<= 15 s, <= 1.5 GB)" if ok else "OVER TARGET (15 s, 1.5 GB)")


if __name__ == "__main__":
    main()
