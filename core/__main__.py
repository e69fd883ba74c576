"""Command line: ``python -m core build`` writes every artifact; ``python -m core bench`` times it."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from core import artifacts, demo
from core.errors import ProjectError
from core.schema import DEFAULT_DETECTOR, DEFAULT_SEED, DEFAULT_SHARE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="turn events into every artifact (demo data by default)")
    source = build.add_mutually_exclusive_group()
    source.add_argument("--raw-dir", help="directory with the real RetailRocket CSV files")
    source.add_argument("--events", dest="events_file", help="a prepared events parquet")
    build.add_argument("--scale", choices=sorted(demo.SCALES), default="demo",
                       help="demo data size when no input is given (default: demo)")
    build.add_argument("--n-events", type=int, default=None, help="demo data size in events (overrides --scale)")
    build.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    build.add_argument("--share", type=float, default=DEFAULT_SHARE, help="flagged share of the operating point")
    build.add_argument("--detector", default=DEFAULT_DETECTOR,
                       help=f"detector that scores and cleans (default {DEFAULT_DETECTOR}); every "
                       "detector is fitted and saved: isolation_forest, robust_z, hbos, ecod")
    build.add_argument("--no-protect-buyers", dest="protect_buyers", action="store_false",
                       help="let cleaning remove visitors who bought (the policy is on by default)")
    build.add_argument("--out", default=str(artifacts.ARTIFACT_DIR), help="artifact directory")

    bench = sub.add_parser("bench", help="time every stage at RetailRocket scale, with peak RSS")
    bench.add_argument("--seed", type=int, default=DEFAULT_SEED)
    bench.add_argument("--n-events", type=int, default=None, help="events to generate (default: retailrocket scale)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the command; bad input exits with status 2 and a clear message."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from core import bench, pipeline  # imported late so `--help` stays instant

    try:
        if args.command == "build":
            if args.share <= 0 or args.share >= 1:
                raise ProjectError(f"--share must be between 0 and 1, got {args.share}")
            from core.anomaly import DETECTORS

            if args.detector not in DETECTORS:
                raise ProjectError(f"--detector must be one of {sorted(DETECTORS)}, got {args.detector!r}")
            result = pipeline.build(args.out, raw_dir=args.raw_dir, events_file=args.events_file,
                                    scale=args.scale, n_events=args.n_events, seed=args.seed, share=args.share,
                                    detector=args.detector, protect_buyers=args.protect_buyers)
            realism = result.pop("realism")
            print(json.dumps(result, indent=2))
            print("\nRealism report: each figure of this build next to its real-data target")
            print("\n".join(pipeline.realism_lines(realism)))
        else:
            rows = bench.bench(seed=args.seed, n_events=args.n_events)
            print(f"{'stage':<46}{'seconds':>10}{'peak RSS MB':>14}")
            for row in rows:
                value = row.get("value")
                seconds = "" if row["seconds"] is None else f"{row['seconds']:.2f}"
                rss = "" if row["peak_rss_mb"] is None else str(row["peak_rss_mb"])
                print(f"{row['stage']:<46}{seconds:>10}{rss:>14}" + (f"  {value:,}" if value is not None else ""))
    except ProjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
