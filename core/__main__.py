"""Command line: ``python -m core build`` writes every artifact; ``python -m core bench`` times it;
``python -m core score`` scores a file as the anomaly page does;
``python -m core features|candidates`` runs one per-visitor stage on the pandas or Dask engine;
``python -m core evaluate`` measures the served ranker and the baselines on your events;
``python -m core rank`` ranks the next category of every visitor of your events."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from core.base.errors import ProjectError
from core.base.json_ready import json_ready
from core.base.schema import DEFAULT_DETECTOR, DEFAULT_SEED, DEFAULT_SHARE
from core.demo.generate import SCALES
from core.store import artifacts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="turn events into every artifact (demo data by default)")
    source = build.add_mutually_exclusive_group()
    source.add_argument("--raw-dir", help="directory with the real RetailRocket CSV files")
    source.add_argument("--events", dest="events_file", help="a prepared events parquet")
    build.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="demo",
        help="demo data size when no input is given (default: demo)",
    )
    build.add_argument("--n-events", type=int, default=None, help="demo data size in events (overrides --scale)")
    build.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    build.add_argument("--share", type=float, default=DEFAULT_SHARE, help="flagged share of the operating point")
    build.add_argument(
        "--detector",
        default=DEFAULT_DETECTOR,
        help=f"detector that scores and cleans (default {DEFAULT_DETECTOR}); every "
        "detector is fitted and saved: isolation_forest, robust_z, hbos, ecod",
    )
    build.add_argument(
        "--no-protect-buyers",
        dest="protect_buyers",
        action="store_false",
        help="let cleaning remove visitors who bought (the policy is on by default)",
    )
    build.add_argument("--out", default=str(artifacts.ARTIFACT_DIR), help="artifact directory")
    _engine_arguments(build)

    for stage, what in (
        ("features", "the 16 user features per visitor"),
        ("candidates", "the ranking candidates (7 contract features, label, y)"),
    ):
        cmd = sub.add_parser(stage, help=f"{what} of prepared events, on the pandas or Dask engine")
        cmd.add_argument("events", help="prepared-events parquet file, or a folder of parquet files")
        cmd.add_argument("out", help="output parquet (a folder of parts with --engine dask) or .csv")
        _engine_arguments(cmd)

    score = sub.add_parser("score", help="score a user-features or raw-events file as the anomaly page does")
    score.add_argument("input", help="user features or raw events, CSV or parquet")
    score.add_argument("out", help="the scored rows (.csv or .parquet): the page's scored download")
    score.add_argument("--detector", default=None, help="detector of the build (default: the served one)")
    score.add_argument("--share", type=float, default=None, help="flag this share of the batch (default: frozen point)")
    score.add_argument(
        "--fit-on-batch", action="store_true", help="fit the detector on this batch (needs --share; fixed seed)"
    )
    score.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed of --fit-on-batch (default {DEFAULT_SEED})"
    )
    score.add_argument(
        "--no-protect-buyers", dest="protect_buyers", action="store_false", help="let visitors who bought be flagged"
    )
    score.add_argument("--labels", default=None, help="visitorid,is_bot file: precision, recall, PR-AUC")
    score.add_argument("--report", default=None, help="write the report as JSON here")
    score.add_argument("--cleaned-events", default=None, help="raw input: write the cleaned events (.csv or .parquet)")
    score.add_argument(
        "--artifacts", default=None, help="artifact directory (default: $RECSYS_ARTIFACT_DIR or the repository's)"
    )
    evaluate = sub.add_parser(
        "evaluate",
        help="the served ranker and the baselines (rule, recency, last category) on every case of "
        "prepared events, with visitor-bootstrap 95%% intervals",
    )
    evaluate.add_argument("events", help="prepared events (.parquet or .csv with a categoryid column)")
    evaluate.add_argument("--report", help="write the JSON report here (default: print it)")
    evaluate.add_argument("--cases", help="write the per-case table here (.csv or .parquet)")
    evaluate.add_argument("--artifact-dir", default=None, help="the build to evaluate (default: recsys_artifacts/)")
    rank = sub.add_parser("rank", help="rank the next category after each visitor's latest history, as /rank would")
    rank.add_argument("events", help="prepared events (.parquet or .csv with a categoryid column)")
    rank.add_argument("out", help="output table (.csv or .parquet): visitorid, rank, categoryid, score")
    rank.add_argument("--top-k", type=int, default=3, help="categories per visitor (default 3)")
    rank.add_argument(
        "--artifact-dir", default=None, help="the build whose served ranker ranks (default: recsys_artifacts/)"
    )

    bench = sub.add_parser("bench", help="time every stage at RetailRocket scale, with peak RSS")
    bench.add_argument("--seed", type=int, default=DEFAULT_SEED)
    bench.add_argument(
        "--n-events",
        type=int,
        default=None,
        help="events to generate (default 2,960,000 of the bench mix: at least RetailRocket's events, visitors and candidate rows)",
    )
    bench.add_argument("--engine", choices=("pandas", "dask"), default="pandas", help="engine of the build")
    bench.add_argument(
        "--full-properties",
        action="store_true",
        help="item properties files of the real size (20.3M rows, ~0.75 GB) instead of the generated rows only",
    )
    return parser


def _engine_arguments(cmd: argparse.ArgumentParser) -> None:
    """--engine, --scheduler, --workers and --memory-limit of the per-visitor stages."""
    cmd.add_argument(
        "--engine",
        choices=("pandas", "dask"),
        default="pandas",
        help="per-visitor stages in this process (pandas) or on a Dask cluster (dask)",
    )
    cmd.add_argument(
        "--scheduler", default=None, help="Dask scheduler address (tcp://host:8786); default: a LocalCluster here"
    )
    cmd.add_argument("--workers", type=int, default=2, help="LocalCluster workers (default 2)")
    cmd.add_argument("--memory-limit", default="4GB", help="memory limit per LocalCluster worker")


def _write_table(frame, path: str) -> None:
    """A table to .parquet, else CSV."""
    if path.lower().endswith((".parquet", ".pq")):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def _evaluate_or_rank(args: argparse.Namespace) -> None:
    """`evaluate` and `rank`: the served ranker of a verified build on a prepared events file."""
    from core.evaluation.on_events import evaluate_events, read_events_file
    from core.ranking.serve import rank_latest

    arts = artifacts.load_artifacts(args.artifact_dir)
    model, served = arts.ranking_model, arts.ranking_model_name
    if model is None:
        logging.warning(
            "no verified ranking model (%s): the count + recency rule ranks", arts.ranking_fallback_reason()
        )
    else:
        model = dataclasses.replace(model, name=served or model.name)
    events = read_events_file(args.events)
    if args.command == "rank":
        table = rank_latest(events, model, args.top_k)
        _write_table(table, args.out)
        print(
            json.dumps({"visitors": int(table["visitorid"].nunique()), "rows": len(table), "ranker": served or "rule"})
        )
        return
    result = evaluate_events(events, model, served)
    text = json.dumps(result.report, indent=2)
    if args.report:
        Path(args.report).write_text(text + "\n")
    else:
        print(text)
    if args.cases:
        _write_table(result.cases, args.cases)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the command; bad input exits with status 2 and a clear message."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from core.build import bench, pipeline  # imported late so `--help` stays instant

    try:
        if args.command == "build":
            if args.share <= 0 or args.share >= 1:
                raise ProjectError(f"--share must be between 0 and 1, got {args.share}")
            from core.anomaly.detector import DETECTORS

            if args.detector not in DETECTORS:
                raise ProjectError(f"--detector must be one of {sorted(DETECTORS)}, got {args.detector!r}")
            from core.base.memory import BUILD_MMAP_THRESHOLD_BYTES, set_mmap_threshold

            set_mmap_threshold(BUILD_MMAP_THRESHOLD_BYTES)  # this process only runs the build
            result = pipeline.build(
                args.out,
                raw_dir=args.raw_dir,
                events_file=args.events_file,
                scale=args.scale,
                n_events=args.n_events,
                seed=args.seed,
                share=args.share,
                detector=args.detector,
                protect_buyers=args.protect_buyers,
                engine=args.engine,
                scheduler=args.scheduler,
                memory_limit=args.memory_limit,
                n_workers=args.workers,
            )
            realism = result.pop("realism")
            print(json.dumps(result, indent=2))
            print("\nRealism report: each figure of this build next to its real-data target")
            print("\n".join(pipeline.realism_lines(realism)))
        elif args.command == "score":
            from core.userfiles.score_command import ScoreOptions, run

            if args.share is not None and not 0 < args.share < 1:
                raise ProjectError(f"--share must be between 0 and 1, got {args.share}")
            report = run(
                ScoreOptions(
                    input=args.input,
                    out=args.out,
                    detector=args.detector,
                    share=args.share,
                    fit_on_batch=args.fit_on_batch,
                    protect_buyers=args.protect_buyers,
                    labels=args.labels,
                    report=args.report,
                    cleaned_events=args.cleaned_events,
                    seed=args.seed,
                    artifact_dir=args.artifacts,
                )
            )
            print(json.dumps(json_ready(report, 4), indent=2))
        elif args.command in ("evaluate", "rank"):
            _evaluate_or_rank(args)
        elif args.command in ("features", "candidates"):
            from core import engine

            start = time.perf_counter()
            result = engine.run_file(
                args.command, args.events, args.out, args.engine, args.scheduler, args.workers, args.memory_limit
            )
            print(
                json.dumps(
                    {
                        **result,
                        "seconds": round(time.perf_counter() - start, 2),
                        "peak_rss_mb": round(bench.peak_rss_mb()),
                    }
                )
            )
        else:
            rows = bench.bench(
                seed=args.seed, n_events=args.n_events, engine=args.engine, full_properties=args.full_properties
            )
            print(f"{'stage':<60}{'seconds':>10}{'CPU s':>10}{'peak RSS MB':>14}")
            for row in rows:
                value = row.get("value")
                seconds = "" if row["seconds"] is None else f"{row['seconds']:.2f}"
                cpu = "" if row.get("cpu_s") is None else f"{row['cpu_s']:.2f}"
                rss = "" if row["peak_rss_mb"] is None else str(row["peak_rss_mb"])
                print(
                    f"{row['stage']:<60}{seconds:>10}{cpu:>10}{rss:>14}" + (f"  {value:,}" if value is not None else "")
                )
    except ProjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
