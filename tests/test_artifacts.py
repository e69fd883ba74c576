"""The shared artifact loader: committed artifacts verify; anything else is refused, never run.

Every case works on a copy of the built artifacts in tmp_path (its forests cut to a few trees, so
that a load is quick); the committed artifacts themselves are loaded whole once, in the first test.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from core.anomaly.detector import DETECTORS, Detector
from core.base import schema
from core.base.errors import ArtifactError
from core.base.schema import CANDIDATE_FEATURES, DEFAULT_DETECTOR
from core.build import outputs
from core.ranking.models import LEARNED_RANKERS, RankingModel, make_estimator
from core.store import artifacts, model_files, safe_read
from core.store.artifacts import load_artifacts, require
from core.store.manifest import MANIFEST_KEY_ENV, file_entry, sign_manifest, signature_ok

ROOT = Path(__file__).resolve().parent.parent
LOAD_TIMEOUT_S = 60


@pytest.fixture
def copy_dir(tmp_path, light_artifact_dir) -> Path:
    """A copy of the committed artifacts, its forests cut to a few trees (conftest.light_artifact_dir)."""
    target = tmp_path / "arts"
    shutil.copytree(light_artifact_dir, target)
    return target


def _model_name(path: Path) -> str:
    return next(p.name for p in path.glob(f"{schema.RANKING_MODEL_PREFIX}*{schema.MODEL_SUFFIX}"))


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / schema.MANIFEST).read_text())


def _rewrite_manifest(path: Path, manifest: Any) -> None:
    (path / schema.MANIFEST).write_text(json.dumps(manifest))


def _relist(path: Path, name: str) -> None:
    """Update a file's manifest entry, as an attacker who can write the folder would."""
    manifest = _manifest(path)
    manifest["files"][name] = file_entry(path / name)
    _rewrite_manifest(path, manifest)


def _load_within_timeout(path: Path) -> artifacts.Artifacts:
    """load_artifacts in a thread; fails the test instead of hanging."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(load_artifacts(path)), daemon=True)
    worker.start()
    worker.join(LOAD_TIMEOUT_S)
    assert not worker.is_alive(), "load_artifacts hung"
    return result[0]


class RunsCode:
    """A pickle payload that leaves a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class Foreign:
    """A type no model file may hold."""

    def __init__(self) -> None:
        self.x = 1


# ------------------------------------------------------------------------------ the happy path


def test_committed_artifacts_verify_and_load():
    arts = load_artifacts()
    assert arts.manifest_ok, arts.problems
    assert arts.problems == []
    assert type(arts.ranking_model) is RankingModel
    assert isinstance(arts.detector, Detector) and arts.detector.name == DEFAULT_DETECTOR
    assert arts.operating_point["threshold"] == pytest.approx(arts.detector.threshold_)
    assert set(arts.detectors) == set(DETECTORS)
    for name, det in arts.detectors.items():  # every built detector loads, under its own name
        assert det.name == name and arts.operating_point["detectors"][name]["threshold"] == det.threshold_
    summary = arts.summary()
    assert summary["detector"] == DEFAULT_DETECTOR and summary["detectors"] == sorted(DETECTORS)
    assert summary["manifest_ok"] is True and summary["ranking_model"] == arts.ranking_model.name
    assert summary["artifact_dir"] == artifacts.ARTIFACT_DIR.name  # a name, never a path


def test_model_files_are_skops_not_pickle():
    for name in (_model_name(artifacts.ARTIFACT_DIR), schema.DETECTOR):
        data = (artifacts.ARTIFACT_DIR / name).read_bytes()
        assert data[:2] == b"PK"  # a skops zip
        assert set(sio.get_untrusted_types(data=data)) <= set(model_files.trusted_types())


@pytest.mark.parametrize("learner", LEARNED_RANKERS)
def test_every_learned_ranker_round_trips_through_the_trusted_format(learner):
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    X = rng.random((200, len(CANDIDATE_FEATURES))).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(int)
    with threadpool_limits(1):  # as fit_ranker fits: OpenMP threads only spin on a tiny fit (or predict)
        estimator = make_estimator(learner).fit(X, y)
        model = RankingModel(name=learner, estimator=estimator)
        back = model_files.load_model(model_files.dump_model(model), RankingModel)
        # allclose: a forest sums its trees on threads, in any order
        np.testing.assert_allclose(back.estimator.predict_proba(X), estimator.predict_proba(X), rtol=1e-12)


def test_no_code_unpickles_artifacts():
    sources = [
        *ROOT.glob("*.py"),
        *(ROOT / "core").rglob("*.py"),
        *(ROOT / "api").glob("*.py"),
        *(ROOT / "pages").glob("*.py"),
        *(ROOT / "scripts").glob("*.py"),
        *(ROOT / "benchmarks").glob("*.py"),
    ]
    for path in sources:
        text = path.read_text()
        for call in ("joblib.load", "pickle.load", "pickle.loads", "trusted=True"):
            assert call not in text, f"{path.relative_to(ROOT)} uses {call}"


# ------------------------------------------------------------------------------ model files


def test_tampered_model_is_refused_not_loaded(copy_dir):
    name = _model_name(copy_dir)
    with open(copy_dir / name, "ab") as handle:
        handle.write(b"\0")
    arts = load_artifacts(copy_dir)
    assert arts.ranking_model is None
    assert arts.status[name].startswith("tampered")
    assert not arts.manifest_ok
    assert any(name in p and "tampered" in p for p in arts.problems)
    assert arts.detector is not None  # the untouched detector still loads


def test_malicious_pickle_with_its_hash_in_the_manifest_never_runs(copy_dir, tmp_path):
    marker = tmp_path / "pwned"
    name = _model_name(copy_dir)
    (copy_dir / name).write_bytes(pickle.dumps(RunsCode(marker)))
    (copy_dir / schema.DETECTOR).write_bytes(pickle.dumps(RunsCode(marker)))
    _relist(copy_dir, name)
    _relist(copy_dir, schema.DETECTOR)
    arts = load_artifacts(copy_dir)
    assert not marker.exists()
    assert arts.ranking_model is None and arts.detector is None
    assert arts.status[name].startswith("refused: is not a readable skops model file")
    assert not arts.manifest_ok
    with pytest.raises(ArtifactError, match="skops"):
        model_files.load_model((copy_dir / name).read_bytes(), RankingModel)


def test_a_type_outside_the_trusted_list_is_refused(copy_dir):
    data = sio.dumps({"model": Foreign()})
    with pytest.raises(ArtifactError, match="outside the trusted list: .*Foreign"):
        model_files.load_model(data, RankingModel)
    (copy_dir / schema.DETECTOR).write_bytes(data)
    _relist(copy_dir, schema.DETECTOR)
    arts = load_artifacts(copy_dir)
    assert arts.detector is None and "outside the trusted list" in arts.status[schema.DETECTOR]


def test_wrong_object_with_matching_hash_is_refused(copy_dir):
    (copy_dir / schema.DETECTOR).write_bytes(sio.dumps({"not": "a detector"}))
    _relist(copy_dir, schema.DETECTOR)
    arts = load_artifacts(copy_dir)
    assert arts.detector is None
    assert arts.status[schema.DETECTOR] == "refused: holds a dict, expected Detector"


def test_the_bytes_hashed_are_the_bytes_loaded(copy_dir, tmp_path, monkeypatch):
    """A swap of the file after it was read and hashed has no effect: nothing reopens it."""
    marker = tmp_path / "pwned"
    name = _model_name(copy_dir)
    real_read = safe_read.read_verified

    def read_then_swap(dir_fd, file_name, entry):
        data = real_read(dir_fd, file_name, entry)
        if file_name == name:
            (copy_dir / name).write_bytes(pickle.dumps(RunsCode(marker)))
        return data

    monkeypatch.setattr(artifacts, "read_verified", read_then_swap)
    arts = load_artifacts(copy_dir)
    assert type(arts.ranking_model) is RankingModel and not marker.exists()


# ------------------------------------------------------------------------------ the manifest


def test_missing_manifest_loads_no_model(copy_dir):
    (copy_dir / schema.MANIFEST).unlink()
    arts = load_artifacts(copy_dir)
    assert arts.ranking_model is None and arts.detector is None
    assert "python -m core build" in arts.problems[0]


def test_file_missing_after_build_is_reported(copy_dir):
    (copy_dir / schema.DETECTOR).unlink()
    arts = load_artifacts(copy_dir)
    assert arts.detector is None
    assert arts.status[schema.DETECTOR] == "missing"
    assert any(schema.DETECTOR in p for p in arts.problems)
    assert arts.detector is None and "isolation_forest" not in arts.detectors
    assert "robust_z" in arts.detectors  # the other detectors still load
    with pytest.raises(ArtifactError, match="python -m core build"):
        require(arts.detector, "anomaly detector")


def test_corrupt_manifest_is_reported(copy_dir):
    (copy_dir / schema.MANIFEST).write_text("{not json")
    arts = load_artifacts(copy_dir)
    assert arts.manifest is None and arts.ranking_model is None
    assert "not valid JSON" in arts.problems[0]


def _bad_manifests(good: dict[str, Any]) -> dict[str, Any]:
    """Malformed manifests by name: each must give a degraded, explained load."""
    listed = lambda name: {**good, "files": {**good["files"], name: {"sha256": "0" * 64, "bytes": 1}}}  # noqa: E731
    served_elsewhere = json.loads(json.dumps(good))
    served_elsewhere["served"]["detector"]["file"] = "not_listed.skops"
    no_served = {k: v for k, v in good.items() if k != "served"}
    return {
        "files is a list": {**good, "files": list(good["files"])},
        "a string": "x",
        "an empty object": {},
        "no files": {**good, "files": {}},
        "a list": [],
        "absolute path": listed("/dev/zero"),
        "parent folder": listed("../outside.json"),
        "hidden name": listed(".hidden"),
        "entry not an object": {**good, "files": {**good["files"], "x.csv": "sha"}},
        "bad sha256": {**good, "files": {**good["files"], "x.csv": {"sha256": "zz", "bytes": 1}}},
        "negative size": {**good, "files": {**good["files"], "x.csv": {"sha256": "0" * 64, "bytes": -1}}},
        "served file not listed": served_elsewhere,
        "no served block": no_served,
        "unknown field": {**good, "extra": 1},
    }


BAD_MANIFESTS = (
    "files is a list",
    "a string",
    "an empty object",
    "no files",
    "a list",
    "absolute path",
    "parent folder",
    "hidden name",
    "entry not an object",
    "bad sha256",
    "negative size",
    "served file not listed",
    "no served block",
    "unknown field",
)


@pytest.mark.parametrize("case", BAD_MANIFESTS)
def test_malformed_manifest_degrades_with_a_reason(copy_dir, case):
    bad = _bad_manifests(_manifest(copy_dir))[case]
    _rewrite_manifest(copy_dir, bad)
    arts = _load_within_timeout(copy_dir)
    assert arts.manifest is None and not arts.manifest_ok
    assert arts.ranking_model is None and arts.detector is None
    assert arts.problems and "manifest" in arts.problems[0]
    assert arts.summary()["manifest_ok"] is False


def test_duplicate_keys_in_the_manifest_are_refused(copy_dir):
    text = (copy_dir / schema.MANIFEST).read_text()
    (copy_dir / schema.MANIFEST).write_text(text.replace('"seed":', '"seed": 1, "seed":', 1))
    arts = load_artifacts(copy_dir)
    assert arts.manifest is None and "not valid JSON" in arts.problems[0]


def test_a_symlink_out_of_the_folder_is_refused(copy_dir, tmp_path):
    outside = tmp_path / "outside.csv"
    shutil.copy(copy_dir / schema.AUDIT_CSV, outside)
    (copy_dir / schema.AUDIT_CSV).unlink()
    (copy_dir / schema.AUDIT_CSV).symlink_to(outside)
    arts = load_artifacts(copy_dir)
    assert arts.status[schema.AUDIT_CSV] == "refused" and not arts.manifest_ok
    assert any("symlink" in p for p in arts.problems)


def test_a_symlink_to_a_device_does_not_hang(copy_dir):
    (copy_dir / schema.AUDIT_CSV).unlink()
    (copy_dir / schema.AUDIT_CSV).symlink_to("/dev/zero")
    arts = _load_within_timeout(copy_dir)
    assert arts.status[schema.AUDIT_CSV] == "refused"


def test_a_fifo_is_refused_without_blocking(copy_dir):
    (copy_dir / schema.AUDIT_CSV).unlink()
    os.mkfifo(copy_dir / schema.AUDIT_CSV)
    arts = _load_within_timeout(copy_dir)
    assert arts.status[schema.AUDIT_CSV] == "refused"
    assert any("not a regular file" in p for p in arts.problems)


def test_a_manifest_that_is_a_fifo_does_not_block(copy_dir):
    (copy_dir / schema.MANIFEST).unlink()
    os.mkfifo(copy_dir / schema.MANIFEST)
    arts = _load_within_timeout(copy_dir)
    assert arts.manifest is None and "not a regular file" in arts.problems[0]


def test_a_file_grown_past_its_listed_size_is_refused_unread(copy_dir):
    with open(copy_dir / schema.AUDIT_CSV, "ab") as handle:
        handle.write(b"0" * 1_000_000)
    arts = load_artifacts(copy_dir)
    assert arts.status[schema.AUDIT_CSV].startswith("tampered") or arts.status[schema.AUDIT_CSV] == "refused"
    assert not arts.manifest_ok


def test_empty_directory_is_usable_and_explains(tmp_path):
    arts = load_artifacts(tmp_path)
    assert arts.summary()["manifest_ok"] is False
    assert arts.read_table(schema.AUDIT_CSV) is None
    assert arts.read_json(schema.OPERATING_POINT) is None


def test_environment_variable_points_the_loader_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv(artifacts.ARTIFACT_DIR_ENV, str(tmp_path))
    arts = load_artifacts()
    assert arts.path == tmp_path and arts.ranking_model is None


def test_tables_are_read_from_verified_bytes(copy_dir):
    arts = load_artifacts(copy_dir)
    assert isinstance(arts.read_table(schema.AUDIT_CSV), pd.DataFrame)
    (copy_dir / schema.AUDIT_CSV).write_text("changed,after\n1,2\n")
    assert arts.read_table(schema.AUDIT_CSV) is None  # re-verified on every read


# ------------------------------------------------------------------------------ signatures


def _sign(path: Path, key: str) -> None:
    data = (path / schema.MANIFEST).read_bytes()
    (path / schema.MANIFEST_SIG).write_text(sign_manifest(data, key.encode()) + "\n")


def test_with_a_key_an_unsigned_manifest_is_refused(copy_dir, monkeypatch):
    monkeypatch.setenv(MANIFEST_KEY_ENV, "k1")
    arts = load_artifacts(copy_dir)
    assert arts.manifest is None and arts.ranking_model is None
    assert "signature" in arts.problems[0]


def test_with_a_key_a_signed_manifest_loads_and_a_forged_one_does_not(copy_dir, monkeypatch):
    _sign(copy_dir, "k1")
    monkeypatch.setenv(MANIFEST_KEY_ENV, "k1")
    arts = load_artifacts(copy_dir)
    assert arts.manifest_ok and arts.signed and arts.summary()["manifest_signed"] is True
    _sign(copy_dir, "attacker")
    assert load_artifacts(copy_dir).manifest is None
    _sign(copy_dir, "k1")
    manifest = _manifest(copy_dir)
    manifest["seed"] = 1
    (copy_dir / schema.MANIFEST).write_text(json.dumps(manifest))  # changed after signing
    assert load_artifacts(copy_dir).manifest is None


def test_during_key_rotation_both_keys_are_accepted(copy_dir, monkeypatch):
    _sign(copy_dir, "old")
    monkeypatch.setenv(MANIFEST_KEY_ENV, "new, old")
    assert load_artifacts(copy_dir).manifest_ok
    monkeypatch.setenv(MANIFEST_KEY_ENV, "new")
    assert load_artifacts(copy_dir).manifest is None


# ------------------------------------------------------------------------------ the build's folder


def _tiny_build(staging: Path, model_name: str) -> None:
    """What a build writes, in miniature: two files and a signed-if-keyed manifest."""
    (staging / model_name).write_bytes(b"model")
    (staging / schema.DETECTOR).write_bytes(b"detector")
    events = pd.DataFrame({"visitorid": [1, 2]})
    outputs.write_manifest(
        staging,
        seed=1,
        source="test",
        scale="demo",
        fingerprint="f",
        events=events,
        load_report=None,
        sampled_clean=False,
        served={
            "ranking_model": {"file": model_name, "name": "m", "ranker": "m", "candidates": "history"},
            "detector": {
                "file": schema.DETECTOR,
                "name": "isolation_forest",
                "protect_buyers": True,
                "detectors": {"isolation_forest": schema.DETECTOR},
            },
        },
    )


def test_a_build_replaces_the_folder_and_never_lists_planted_files(tmp_path, monkeypatch):
    target = tmp_path / "arts"
    with outputs.fresh_output(target) as staging:
        _tiny_build(staging, "task1_ranking_best_a.skops")
    planted = target / "task1_ranking_best_planted.skops"
    planted.write_bytes(b"planted")
    monkeypatch.setenv(MANIFEST_KEY_ENV, "k1")
    with outputs.fresh_output(target) as staging:
        assert staging.parent == target.parent and not any(staging.iterdir())
        _tiny_build(staging, "task1_ranking_best_b.skops")
    names = {p.name for p in target.iterdir()}
    assert names == {"task1_ranking_best_b.skops", schema.DETECTOR, schema.MANIFEST, schema.MANIFEST_SIG}
    manifest = _manifest(target)
    assert set(manifest["files"]) == {"task1_ranking_best_b.skops", schema.DETECTOR}
    sig = (target / schema.MANIFEST_SIG).read_text().strip()
    assert signature_ok((target / schema.MANIFEST).read_bytes(), sig, [b"k1"])
    assert {p.name for p in tmp_path.iterdir()} == {"arts"}  # no staging or old folder left


def test_a_failed_build_leaves_the_old_folder_untouched(tmp_path):
    target = tmp_path / "arts"
    with outputs.fresh_output(target) as staging:
        _tiny_build(staging, "task1_ranking_best_a.skops")
    before = hashlib.sha256((target / schema.MANIFEST).read_bytes()).hexdigest()
    with pytest.raises(RuntimeError), outputs.fresh_output(target) as staging:
        (staging / "half.csv").write_text("x")
        raise RuntimeError("stage failed")
    assert hashlib.sha256((target / schema.MANIFEST).read_bytes()).hexdigest() == before
    assert {p.name for p in tmp_path.iterdir()} == {"arts"}


def test_a_build_refuses_to_replace_a_folder_that_is_not_a_build(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not an artifact folder"), outputs.fresh_output(tmp_path):
        pass
    assert (tmp_path / "precious.txt").exists()
