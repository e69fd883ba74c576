"""The build: events in, every artifact out (``python -m core build``); ``core.build.bench`` times it."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from core import engine as engine_pkg
from core.anomaly.audit import audit_table, clean_events, cleaning_report, proxy_labels
from core.anomaly.detector import DETECTOR_FIT_CAP, DETECTORS, Detector, detector_file, fit_detector, fit_sample
from core.anomaly.drift import drift_reference
from core.anomaly.features import user_features
from core.anomaly.policy import DEFAULT_PROTECT_BUYERS, DEFAULT_SHARES, apply_policy, cleaning_cost, policy_label
from core.anomaly.scoring import provenance, stamped
from core.base import schema
from core.base.distinct import distinct_rows
from core.base.memory import release_memory
from core.base.schema import (
    DEFAULT_DETECTOR,
    DEFAULT_SEED,
    DEFAULT_SHARE,
    SYNTHETIC_SOURCE,
    USER_FEATURES,
)
from core.build.bench import StageTimer, peak_rss_mb
from core.build.outputs import fresh_output, write_manifest
from core.build.results import results_markdown
from core.build.summary import daily_activity, dataset_summary
from core.demo.generate import SCALES, generate
from core.demo.raw_files import write_raw
from core.demo.realism import realism_report
from core.ranking.models import BASELINES, RankingModel
from core.ranking.select import serving_choice
from core.ranking.train import train_and_evaluate
from core.reading import categories, data
from core.store import artifacts, model_files

log = logging.getLogger(__name__)

# Committed artifacts must stay a few MB: above this many events the cleaned table is sampled.
CLEAN_EVENTS_COMMIT_LIMIT = 400_000
RANKING_DATASET_COMMIT_ROWS = 60_000
MARKOV_TOP_N = 5
MARKOV_RANKERS = ("hgb",)  # the best learner on history candidates; one fit keeps the build fast


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready dicts (NaN becomes null)."""
    return json.loads(frame.to_json(orient="records", double_precision=10))


@dataclass
class Inputs:
    """The events to build from, with their provenance and any ground-truth labels."""

    events: pd.DataFrame
    source: str
    labels: pd.DataFrame | None
    load_report: dict[str, Any] | None
    category_tree: pd.DataFrame | None = None
    lookalikes: pd.DataFrame | None = None  # generator only: normal visitors that look abnormal by volume


def load_inputs(raw_dir: str | None, events_file: str | None, n_events: int, seed: int) -> Inputs:
    """Read real RetailRocket files, a prepared parquet, or generate the demo data.

    The source names the folder or file only: it is shown by the API, which never shows paths.
    """
    if raw_dir:
        events, report = data.load_raw_with_report(raw_dir)
        tree_file = Path(raw_dir) / data.CATEGORY_TREE_FILE
        tree = categories.read_category_tree(tree_file) if tree_file.exists() else None
        return Inputs(events, f"RetailRocket files in {Path(raw_dir).name}/", None, report.as_dict(), tree)
    if events_file:
        return Inputs(data.read_events(events_file), f"prepared events {Path(events_file).name}", None, None)
    ds = generate(n_events=n_events, seed=seed)
    # Round-trip through the real CSV layout so the demo exercises the same loader as real data.
    with tempfile.TemporaryDirectory() as tmp:
        write_raw(ds, tmp)
        events, report = data.load_raw_with_report(tmp)
    return Inputs(
        events,
        f"{SYNTHETIC_SOURCE} ({n_events:,} events, seed {seed})",
        ds.labels,
        report.as_dict(),
        ds.category_tree,
        ds.lookalikes,
    )


def detect_and_clean(
    events: pd.DataFrame,
    labels: pd.DataFrame | None,
    seed: int,
    share: float,
    fingerprint: str,
    *,
    detector: str = DEFAULT_DETECTOR,
    protect_buyers: bool = DEFAULT_PROTECT_BUYERS,
    features: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Task 2: user features, every detector, audit and cost tables, operating point, cleaning.

    Every detector of the registry is fitted (each is selectable when serving); ``detector``
    names the one that scores and cleans here, with the "keep visitors who bought" policy when
    ``protect_buyers``, through the same ``apply_policy`` the dashboard and API use.
    ``features`` are the user features when the build already computed them.
    """
    features = user_features(events) if features is None else features
    fit_users = fit_sample(features, DETECTOR_FIT_CAP, seed)
    distinct, codes = _distinct_users(features)

    def fit_and_score(name: str) -> tuple[Detector, np.ndarray]:
        """One detector fitted, and its scores of every user (each distinct row scored once)."""
        det = fit_detector(fit_users, name, share=share, seed=seed, fingerprint=fingerprint)
        return det, det.score_samples(distinct)[codes]

    # The detectors are independent: two at a time on two threads (each fit is seeded; the
    # results do not depend on the order).
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="detector") as pool:
        done = dict(zip(DETECTORS, pool.map(fit_and_score, DETECTORS), strict=True))
    fitted = {name: det for name, (det, _) in done.items()}
    all_scores = {name: sc for name, (_, sc) in done.items()}
    served = fitted[detector]
    scores = all_scores[detector]
    flags = apply_policy(scores >= served.threshold_, features, protect_buyers)
    if labels is not None:
        truth = features["visitorid"].isin(labels["visitorid"]).to_numpy()
        label_source = "ground truth (demo generator labels)"
    else:
        truth = proxy_labels(features)
        label_source = "proxy rule (proxy_labels)"
    audit = audit_table(scores, truth, features["events"].to_numpy())
    audit["label_source"] = label_source
    audit["detector"] = detector
    # What cleaning removes at every share, for every detector and both policies.
    cost = pd.concat(
        [
            cleaning_cost(features, all_scores[name], DEFAULT_SHARES, det.threshold_, policy).assign(detector=name)
            for name, det in fitted.items()
            for policy in (True, False)
        ],
        ignore_index=True,
    )
    flagged_ids = features.loc[flags, "visitorid"].to_numpy()
    clean = clean_events(events, flagged_ids)
    scored = stamped(
        pd.DataFrame({"visitorid": features["visitorid"].to_numpy(), "anomaly_score": scores, "is_anomaly": flags}),
        served,
        protect_buyers,
        served.threshold_,
    )
    cleaning = cleaning_report(events, clean)
    cleaning.update(provenance(served, protect_buyers, served.threshold_))
    return {
        "features": features,
        "detector": served,
        "detectors": fitted,
        "detector_scores": all_scores,
        "protect_buyers": protect_buyers,
        "scored": scored,
        "audit": audit,
        "cost": cost,
        "clean": clean,
        "cleaning": cleaning,
        "label_source": label_source,
        "drift_reference": drift_reference(fit_users, population="training users of the detectors"),
    }


def _distinct_users(features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(each distinct row of the users' detector features, every user's code into those rows).

    A detector's score depends on the user's feature row alone, and ~3 users share each row at
    RetailRocket scale: the rows are found once for every detector the build fits.
    """
    X = np.empty((len(features), len(USER_FEATURES)), np.float64, order="F")  # hashed column by column
    for j, f in enumerate(USER_FEATURES):  # the 16 feature columns
        X[:, j] = features[f].to_numpy(np.float64)
    first, codes = distinct_rows(X)
    return np.asfortranarray(X[first]), codes  # column-major again: hashed and read by column


def write_task2(out: Path, t2: dict[str, Any]) -> dict[str, Any]:
    """Write the task-2 artifacts (every detector, tables, operating point); the served entry."""
    served = t2["detector"]
    # page checksums: a corrupted artifact is caught on read (core.store.artifacts.read_table)
    t2["features"].to_parquet(
        out / schema.USER_FEATURES_FILE, index=False, compression="zstd", write_page_checksum=True
    )
    t2["scored"].to_parquet(out / schema.SCORED_USERS, index=False, compression="zstd", write_page_checksum=True)
    t2["audit"].to_csv(out / schema.AUDIT_CSV, index=False, float_format="%.6f")
    t2["cost"].to_csv(out / schema.CLEANING_COST_CSV, index=False, float_format="%.6f")
    files = {}
    for name, det in t2["detectors"].items():
        files[name] = detector_file(name)
        (out / files[name]).write_bytes(model_files.dump_model(det))
    op = served.operating_point()
    op.update(
        protect_buyers=t2["protect_buyers"],
        policy=policy_label(t2["protect_buyers"]),
        detectors={n: {"file": files[n], "threshold": float(d.threshold_)} for n, d in t2["detectors"].items()},
    )
    artifacts.write_json(op, out / schema.OPERATING_POINT)
    artifacts.write_json(t2["drift_reference"].model_dump(mode="json"), out / schema.DRIFT_REFERENCE)
    return {"file": files[served.name], "name": served.name, "protect_buyers": t2["protect_buyers"], "detectors": files}


def _metric_rows(result: Any, run: str, population: str) -> pd.DataFrame:
    """Test-split metrics of every ranker of one Task 1 run, labelled with their population."""
    table = result.metrics
    test = table[table["split"] == "test"].copy()
    test.insert(0, "population", population)
    test.insert(0, "run", run)
    return test.reset_index(drop=True)


def build(
    out: str | Path = artifacts.ARTIFACT_DIR,
    *,
    raw_dir: str | None = None,
    events_file: str | None = None,
    scale: str = "demo",
    n_events: int | None = None,
    seed: int = DEFAULT_SEED,
    share: float = DEFAULT_SHARE,
    detector: str = DEFAULT_DETECTOR,
    protect_buyers: bool = DEFAULT_PROTECT_BUYERS,
    engine: str = "pandas",
    scheduler: str | None = None,
    memory_limit: str = engine_pkg.DEFAULT_MEMORY_LIMIT,
    n_workers: int = 2,
) -> dict[str, Any]:
    """Run every stage and write every artifact into ``out``; returns the stage timings.

    The artifacts are written into a fresh folder next to ``out`` that replaces ``out`` as a
    whole at the end, so a build never mixes with (or lists) files of an earlier one. The
    per-visitor stages (user features, history candidates) run once on ``engine`` and are reused
    by the raw, cleaned and Markov runs and the honest evaluation.
    """
    # One OpenMP/BLAS limit for the whole build: the fits and scorings that set their own limits
    # run on two threads at once, and each would otherwise restore the default on exit.
    with fresh_output(Path(out)) as staging, threadpool_limits(limits=1):
        return _build_into(
            staging,
            raw_dir=raw_dir,
            events_file=events_file,
            scale=scale,
            n_events=n_events,
            seed=seed,
            share=share,
            detector=detector,
            protect_buyers=protect_buyers,
            engine=engine,
            scheduler=scheduler,
            memory_limit=memory_limit,
            n_workers=n_workers,
        )


def _build_into(
    out: Path,
    *,
    raw_dir: str | None,
    events_file: str | None,
    scale: str,
    n_events: int | None,
    seed: int,
    share: float,
    detector: str,
    protect_buyers: bool,
    engine: str,
    scheduler: str | None,
    memory_limit: str,
    n_workers: int,
) -> dict[str, Any]:
    """Every stage, writing into the empty folder ``out``."""
    from core.evaluation.detectors import detector_quality
    from core.evaluation.run import honest_evaluation, write_reports

    n_events = n_events or SCALES[scale]
    timer = StageTimer(total=12)

    with timer.stage("load events"):
        inputs = load_inputs(raw_dir, events_file, n_events, seed)
        events = inputs.events
        fp = data.fingerprint(events)
        artifacts.write_json(dataset_summary(events, inputs.source), out / schema.DATASET_SUMMARY)
        daily_activity(events).to_csv(out / schema.DAILY_ACTIVITY, index=False)
        if inputs.category_tree is not None:  # the pages show each category with its parent path
            inputs.category_tree.to_csv(out / schema.CATEGORY_TREE, index=False)

    with timer.stage(f"user features and history candidates ({engine} engine)"):
        features, cands = engine_pkg.per_visitor_stages(events, engine, scheduler, n_workers, memory_limit)

    release_memory()  # what the two threads freed stays in their malloc arenas otherwise

    with timer.stage("rare-label drop, raw cases"):
        raw_cases = engine_pkg.cases_from_candidates(cands)

    # A second thread runs, one after the other, the Markov run (single-threaded) and the
    # same-population evaluation, neither of which needs anything from Task 2. The main thread runs
    # the detectors, the cleaned and raw runs and the detectors' quality report beside them; their
    # two-thread parts (detectors, forest fits and scoring) use the second core when the second
    # thread is done, so neither core idles before the end. All only read the events, features
    # and cases; numpy, pandas and scikit-learn release the GIL in their heavy loops; every result
    # is the same as one after the other.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="beside") as pool:
        markov = pool.submit(
            _timed,
            train_and_evaluate,
            events,
            seed=seed,
            markov_top_n=MARKOV_TOP_N,
            rankers=MARKOV_RANKERS,
            source=f"raw events + Markov top-{MARKOV_TOP_N} candidates",
            cases=raw_cases,
        )
        evaluation = pool.submit(
            _timed, honest_evaluation, events, inputs.labels, seed, share, features=features, cases=raw_cases
        )
        with timer.stage("detectors and cleaning"):
            t2 = detect_and_clean(
                events,
                inputs.labels,
                seed,
                share,
                fp,
                detector=detector,
                protect_buyers=protect_buyers,
                features=features,
            )
            served_detector = write_task2(out, t2)
            clean = t2.pop("clean")  # the build's own reference only: freed after the cleaned run
            committed = _commit_sample(clean, seed)
            sampled_clean = len(committed) < len(clean)
            data.write_events(committed, out / schema.CLEAN_EVENTS)
            del committed

        release_memory()

        with timer.stage("cleaned cases"):
            scored = t2.pop("scored")  # written already; only the flagged ids are needed from here on
            flagged = scored.loc[scored["is_anomaly"], "visitorid"].to_numpy()
            del scored
            # A visitor's cases depend only on that visitor's views: the cleaned events' candidates
            # are the raw ones without the flagged visitors' cases (ids renumbered).
            clean_cases = engine_pkg.cases_from_candidates(engine_pkg.without_visitors(cands, flagged))
            del cands

        # The cleaned run (the smaller one) first: the raw run's memory peak then falls beside
        # the evaluation's temporal split, not beside its larger group split.
        with timer.stage("task 1 on cleaned events"):
            clean_run = train_and_evaluate(clean, seed=seed, source="cleaned events", cases=clean_cases)
            del clean_cases, clean

        release_memory()
        with timer.stage("task 1 on raw events"):
            raw_run = train_and_evaluate(events, seed=seed, source="raw events", cases=raw_cases)

        with timer.stage("detector quality"):  # the build's detectors and their scores of every user
            quality = detector_quality(
                features, inputs.labels, share, seed, fitted=t2["detectors"], fitted_scores=t2["detector_scores"]
            )

        with timer.stage("rest of the honest evaluation"):
            markov_run, markov_seconds = markov.result()  # re-raises anything the Markov run raised
            report, evaluation_seconds = evaluation.result()  # and the evaluation
            write_reports(report, quality, out)
            del report, quality

    release_memory()

    with timer.stage("write task 1 artifacts"):
        served = choose_served(raw_run, markov_run, seed)
        served_ranker = write_task1(out, raw_run, clean_run, markov_run, served, t2["cleaning"])
        raw_metrics = raw_run.metrics
        del clean_run, markov_run, raw_run, served

    with timer.stage("realism report"):
        realism = realism_report(events, inputs.category_tree, raw_metrics)
        artifacts.write_json(realism, out / schema.REALISM_REPORT)
        for line in realism_lines(realism):
            log.info("realism: %s", line)

    with timer.stage("manifest"):
        (out / schema.RESULTS_MD).write_text(results_markdown(out))
        write_manifest(
            out,
            seed=seed,
            source=inputs.source,
            scale=scale,
            fingerprint=fp,
            events=events,
            load_report=inputs.load_report,
            sampled_clean=sampled_clean,
            served={"ranking_model": served_ranker, "detector": served_detector},
        )
    timer.note({"stage": "task 1 with Markov candidates, on the second thread", "seconds": markov_seconds})
    timer.note(
        {
            "stage": "honest evaluation, on the second thread after the Markov run",
            "seconds": evaluation_seconds,
        }
    )
    log.info("build finished: %s", ", ".join(f"{t['stage']} {t['seconds']}s" for t in timer.timings))
    return {
        "timings": timer.timings,
        "peak_rss_mb": round(peak_rss_mb()),
        "cleaning": t2["cleaning"],
        "realism": realism,
    }


def realism_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The realism report as aligned text lines: figure, this build's value, target range, real value."""
    return [
        f"{r['figure']:<28} {r['value']:>10.4g}   target {r['target_low']:.4g}-{r['target_high']:.4g}"
        f"   real {r['real_value']:.4g}   {'ok' if r['ok'] else 'OUT OF RANGE'}"
        for r in rows
    ]


def _validation_score(run: Any) -> float:
    """Validation top1_all of the ranker a run chose (the selection metric)."""
    table = run.metrics
    row = table[(table["split"] == "validation") & (table["ranker"] == run.chosen_ranker)]
    return float(row["top1_all"].iloc[0])


@dataclass
class ServedChoice:
    """The served ranking model and the serving rule's record (serving_choice)."""

    model: RankingModel
    serving: dict[str, Any]
    run: Any  # the Task 1 run the model comes from


def choose_served(raw_run: Any, markov_run: Any, seed: int = DEFAULT_SEED) -> ServedChoice:
    """The served ranker by the serving rule (select), on validation only (never test).

    The best learned ranker of either run faces the raw run's best simple baseline. Both runs
    split the same raw-event cases with the same seed, so the validation cases are the same
    and the comparison is paired.
    """
    serving = raw_run.serving
    best_learned = serving.get("best_learned")
    learned_val = serving["validation_top1_all"].get(best_learned, -np.inf) if best_learned else -np.inf
    if _validation_score(markov_run) <= learned_val:
        return ServedChoice(raw_run.best_model, serving, raw_run)
    # The Markov run's learner is the best learned ranker: the rule is applied to it instead.
    name = served_identity(markov_run.best_model)["name"]
    baselines = [r for r in BASELINES if r in raw_run.validation_outcomes]
    outcomes = {r: raw_run.validation_outcomes[r] for r in baselines}
    outcomes[name] = markov_run.validation_outcomes[markov_run.chosen_ranker]
    serving = serving_choice(outcomes, baselines, [name], seed)
    if serving["served"] == name:
        return ServedChoice(markov_run.best_model, serving, markov_run)
    return ServedChoice(raw_run.models[serving["served"]], serving, raw_run)


def _run_info(run: Any) -> dict[str, Any]:
    """A run's facts without wall-clock timings, so the same seed gives byte-identical JSON."""
    return {k: v for k, v in run.info.items() if k != "timings_s"}


def served_identity(model: RankingModel) -> dict[str, Any]:
    """The served ranker's manifest entry: its learner, its candidate set, name and file."""
    markov = bool(model.markov_top_n and model.estimator is not None)
    candidates = f"history+markov{model.markov_top_n}" if markov else "history"
    # The name is what the dashboard and API show as "ranker": it says when the candidates differ.
    name = f"{model.name}_markov{model.markov_top_n}" if markov else model.name
    return {
        "file": f"{schema.RANKING_MODEL_PREFIX}{name}{schema.MODEL_SUFFIX}",
        "name": name,
        "ranker": model.name,
        "candidates": candidates,
    }


def write_task1(
    out: Path, raw_run: Any, clean_run: Any, markov_run: Any, served: ServedChoice, cleaning: dict[str, Any]
) -> dict[str, Any]:
    """Write the served model, the candidate dataset sample, the metrics and before/after tables.

    Returns the served ranker's manifest entry (``served_identity`` plus the rule's reason).
    """
    identity = served_identity(served.model)
    # A copy under its served name: the fitted model of the run is left as it was.
    best = dataclasses.replace(served.model, name=identity["name"])
    (out / identity["file"]).write_bytes(model_files.dump_model(best))
    dataset = _case_sample(raw_run.dataset_sample, RANKING_DATASET_COMMIT_ROWS)
    dataset.to_parquet(out / schema.RANKING_DATASET, index=False, compression="zstd", write_page_checksum=True)
    metrics = pd.concat(
        [
            raw_run.metrics.assign(candidate_set="history"),
            markov_run.metrics.assign(candidate_set=f"history + Markov top-{MARKOV_TOP_N}"),
        ],
        ignore_index=True,
    )
    metrics.to_csv(out / schema.RANKING_METRICS_CSV, index=False, float_format="%.6f")
    artifacts.write_json(
        {
            "population": (
                "test cases of the test visitors (20% of visitors, GroupShuffleSplit "
                "by visitor) of the raw events; validation visitors are carved out of train"
            ),
            "best": best.name,
            "served_model": {
                "name": best.name,
                "trained_on": best.trained_on,
                "candidate_set": "history + Markov" if best.markov_top_n else "history",
                "validation_top1_all": served.serving["validation_top1_all"][best.name],
                "why": served.serving["reason"],
            },
            "selected_on": "validation split carved out of train (by visitor), metric top1_all; a learned "
            "ranker is served only if its paired visitor-bootstrap 95% interval over the best simple "
            "baseline lies above zero",
            "serving_rule": served.serving,
            "dataset_file": {
                "name": schema.RANKING_DATASET,
                "rows": int(len(dataset)),
                "candidate_rows_in_run": int(raw_run.n_candidate_rows),
                "is_sample": bool(len(dataset) < raw_run.n_candidate_rows),
                "sampling": "whole cases of the raw-events run, every k-th case id",
            },
            "rankers": records(metrics),
            "history_run": _run_info(raw_run),
            "markov_run": _run_info(markov_run),
        },
        out / schema.RANKING_METRICS_JSON,
    )
    before_after = pd.concat(
        [
            _metric_rows(raw_run, "raw", "test visitors of the raw events (all visitors)"),
            _metric_rows(clean_run, "cleaned", "test visitors of the cleaned events (flagged users removed)"),
        ],
        ignore_index=True,
    )
    before_after.to_csv(out / schema.BEFORE_AFTER_CSV, index=False, float_format="%.6f")
    artifacts.write_json(
        {
            "note": (
                "The raw and cleaned runs are evaluated on different test populations "
                "(each run splits its own events by visitor); this is not a same-population "
                "gain. See task1_honest_evaluation.json for the same-population comparison."
            ),
            "cleaning": cleaning,
            "runs": records(before_after),
            "raw": _run_info(raw_run),
            "cleaned": _run_info(clean_run),
        },
        out / schema.BEFORE_AFTER_JSON,
    )
    return {**identity, "reason": served.serving["reason"]}


def _timed(func: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """func(*args, **kwargs) and its wall seconds."""
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return result, round(time.perf_counter() - start, 2)


def _case_sample(cands: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """Whole cases, every k-th case id, so the committed candidate sample stays small."""
    if len(cands) <= max_rows:
        return cands
    step = int(np.ceil(len(cands) / max_rows))
    return cands[cands["case_id"] % step == 0].reset_index(drop=True)


def _commit_sample(clean: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The cleaned events to commit: all of them when small, else whole visitors sampled."""
    if len(clean) <= CLEAN_EVENTS_COMMIT_LIMIT:
        return clean
    visitors = clean["visitorid"].unique()
    rng = np.random.default_rng(seed)
    keep = rng.choice(visitors, size=int(len(visitors) * CLEAN_EVENTS_COMMIT_LIMIT / len(clean)), replace=False)
    return clean[clean["visitorid"].isin(keep)]
