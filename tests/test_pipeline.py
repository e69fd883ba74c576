"""A demo-scale `python -m core build`, run twice with one seed: artifacts, manifest, reproducibility."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.anomaly.detector import DETECTORS, detector_file
from core.base import schema
from core.base.schema import DEFAULT_DETECTOR, USER_FEATURES
from core.store.artifacts import load_artifacts
from core.store.manifest import sha256_file

pytestmark = pytest.mark.e2e  # full pipeline builds

ROOT = Path(__file__).resolve().parent.parent
METRICS_FILES = (
    schema.RANKING_METRICS_JSON,
    schema.BEFORE_AFTER_JSON,
    schema.OPERATING_POINT,
    schema.DATASET_SUMMARY,
    schema.EVALUATION_JSON,
    schema.DETECTOR_QUALITY_JSON,
)


def _build(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", "build", "--scale", "demo", "--seed", "7", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    first, second = tmp_path_factory.mktemp("build_a"), tmp_path_factory.mktemp("build_b")
    run = _build(first)
    assert run.returncode == 0, run.stderr[-3000:]
    again = _build(second)
    assert again.returncode == 0, again.stderr[-3000:]
    return first, second, run


def test_build_writes_every_artifact_listed_in_the_manifest(two_builds):
    out, _, _ = two_builds
    manifest = json.loads((out / schema.MANIFEST).read_text())
    expected = {
        schema.RANKING_DATASET,
        schema.RANKING_METRICS_JSON,
        schema.RANKING_METRICS_CSV,
        schema.DETECTOR,
        schema.OPERATING_POINT,
        schema.USER_FEATURES_FILE,
        schema.SCORED_USERS,
        schema.AUDIT_CSV,
        schema.CLEAN_EVENTS,
        schema.BEFORE_AFTER_CSV,
        schema.BEFORE_AFTER_JSON,
        schema.DATASET_SUMMARY,
        schema.DAILY_ACTIVITY,
        schema.EVALUATION_JSON,
        schema.DETECTOR_QUALITY_JSON,
        schema.CLEANING_COST_CSV,
        *(detector_file(n) for n in DETECTORS),
    }
    assert expected <= set(manifest["files"])
    models = [n for n in manifest["files"] if n.startswith(schema.RANKING_MODEL_PREFIX)]
    assert len(models) == 1 and models[0].endswith(schema.MODEL_SUFFIX)
    served = manifest["served"]  # the served models are named, never inferred from file names
    assert served["ranking_model"]["file"] == models[0]
    assert served["detector"] == {
        "file": schema.DETECTOR,
        "name": DEFAULT_DETECTOR,
        "protect_buyers": True,
        "detectors": {n: detector_file(n) for n in DETECTORS},
    }
    assert {"name", "ranker", "candidates"} <= set(served["ranking_model"])
    for name, entry in manifest["files"].items():
        assert sha256_file(out / name) == entry["sha256"]
        assert (out / name).stat().st_size == entry["bytes"]
    assert manifest["seed"] == 7
    assert manifest["data"]["load_report"]["duplicates_dropped"] > 0
    assert {"numpy", "pandas", "scikit-learn", "python"} <= set(manifest["versions"])


def test_build_progress_names_every_stage_with_timings(two_builds):
    _, _, run = two_builds
    for stage in (
        "load events",
        "user features and history candidates (pandas engine)",
        "detectors and cleaning",
        "realism report",
        "task 1 on raw events",
        "task 1 on cleaned events",
        "rest of the honest evaluation",
        "manifest",
    ):
        assert f"{stage} done in" in run.stderr


def test_same_seed_gives_byte_identical_metrics(two_builds):
    first, second, _ = two_builds
    for name in METRICS_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_built_artifacts_load_and_agree_with_each_other(two_builds):
    out, _, _ = two_builds
    arts = load_artifacts(out)
    assert arts.manifest_ok, arts.problems
    assert arts.ranking_model is not None and arts.detector is not None
    op = arts.operating_point
    assert op["share"] == pytest.approx(0.04)
    assert op["threshold"] == pytest.approx(arts.detector.threshold_)
    assert list(op["features"]) == list(USER_FEATURES)

    features = pd.read_parquet(out / schema.USER_FEATURES_FILE)
    scored = pd.read_parquet(out / schema.SCORED_USERS)
    assert len(features) == len(scored) == op["n_users"]
    # the policy keeps every buyer, so at most the operating share is flagged, and no buyer
    bought = features["transaction"].to_numpy() > 0
    raw = scored["anomaly_score"] >= op["threshold"]
    assert (scored["is_anomaly"].to_numpy() == (raw.to_numpy() & ~bought)).all()
    assert raw.mean() == pytest.approx(0.04, abs=0.002)
    assert (scored["detector"] == op["detector"]).all() and (scored["policy"] == op["policy"]).all()
    assert set(arts.detectors) == set(DETECTORS)
    for name, det in arts.detectors.items():
        assert op["detectors"][name]["threshold"] == det.threshold_
    cost = pd.read_csv(out / schema.CLEANING_COST_CSV)
    assert set(cost["detector"]) == set(DETECTORS) and set(cost["protect_buyers"]) == {True, False}
    assert (cost.groupby(["detector", "protect_buyers"]).size() == 21).all()  # 1%..20% + frozen
    frozen = cost[(cost["detector"] == op["detector"]) & cost["protect_buyers"] & (cost["point"] == "frozen")]
    assert frozen["users_removed"].iloc[0] == int(scored["is_anomaly"].sum())
    assert frozen["buyers_removed"].iloc[0] == 0

    summary = json.loads((out / schema.BEFORE_AFTER_JSON).read_text())
    clean = pd.read_parquet(out / schema.CLEAN_EVENTS)
    flagged = set(scored.loc[scored["is_anomaly"], "visitorid"])
    assert not flagged & set(clean["visitorid"])
    assert summary["cleaning"]["events_after"] == len(clean)
    assert summary["cleaning"]["users_removed"] == len(flagged)
    populations = {run["run"]: run["population"] for run in summary["runs"]}
    assert set(populations) == {"raw", "cleaned"} and populations["raw"] != populations["cleaned"]


def test_every_ranker_reported_on_test_with_case_counts(two_builds):
    out, _, _ = two_builds
    metrics = json.loads((out / schema.RANKING_METRICS_JSON).read_text())
    test_rows = [r for r in metrics["rankers"] if r["split"] == "test"]
    assert {"rule", "recency", "last_category", "logreg", "hgb", "rf"} <= {r["ranker"] for r in test_rows}
    for row in test_rows:
        assert row["n_cases"] > 0
        assert row["top1_all"] == pytest.approx(row["top1"] * row["coverage"], abs=1e-6)
    served = metrics["served_model"]
    assert served["name"] == metrics["best"]
    # The serving rule, on validation only: a learned ranker only with an interval above zero.
    rule = metrics["serving_rule"]
    assert rule["served"] == metrics["best"] and served["why"] == rule["reason"]
    val = rule["validation_top1_all"]
    assert val[rule["best_baseline"]] == max(val[b] for b in ("rule", "recency", "last_category"))
    assert rule["learned_served"] == (rule["difference"]["ci_low"] > 0)
    assert metrics["best"] == (rule["best_learned"] if rule["learned_served"] else rule["best_baseline"])
    manifest = json.loads((out / schema.MANIFEST).read_text())
    assert manifest["served"]["ranking_model"]["reason"] == rule["reason"]


def test_build_rejects_a_bad_events_file_with_a_clear_message(tmp_path):
    bad = tmp_path / "events.parquet"
    bad.write_bytes(b"not a parquet file")
    run = subprocess.run(
        [sys.executable, "-m", "core", "build", "--events", str(bad), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "events.parquet" in run.stderr and "Traceback" not in run.stderr
