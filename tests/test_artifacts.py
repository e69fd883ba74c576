"""The shared artifact loader: committed artifacts verify; missing or tampered ones are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import pytest

from core import artifacts
from core.artifacts import load_artifacts, require
from core.errors import ArtifactError


@pytest.fixture
def copy_dir(tmp_path) -> Path:
    target = tmp_path / "arts"
    shutil.copytree(artifacts.ARTIFACT_DIR, target)
    return target


def _model_name(path: Path) -> str:
    return next(p.name for p in path.glob(f"{artifacts.RANKING_MODEL_PREFIX}*.joblib"))


def test_committed_artifacts_verify_and_load():
    arts = load_artifacts()
    assert arts.manifest_ok, arts.problems
    assert arts.problems == []
    assert type(arts.ranking_model).__name__ == "RankingModel"
    from core import anomaly

    assert isinstance(arts.detector, anomaly.Detector) and arts.detector.name == anomaly.DEFAULT_DETECTOR
    assert arts.operating_point["threshold"] == pytest.approx(arts.detector.threshold_)
    assert set(arts.detectors) == set(anomaly.DETECTORS)
    for name, det in arts.detectors.items():  # every built detector loads, under its own name
        assert det.name == name and arts.operating_point["detectors"][name]["threshold"] == det.threshold_
    summary = arts.summary()
    assert summary["detector"] == anomaly.DEFAULT_DETECTOR and summary["detectors"] == sorted(anomaly.DETECTORS)
    assert summary["manifest_ok"] is True and summary["ranking_model"] == arts.ranking_model.name


def test_tampered_model_is_refused_not_unpickled(copy_dir):
    name = _model_name(copy_dir)
    with open(copy_dir / name, "ab") as handle:
        handle.write(b"\0")
    arts = load_artifacts(copy_dir)
    assert arts.ranking_model is None
    assert arts.status[name].startswith("tampered")
    assert not arts.manifest_ok
    assert any(name in p and "sha256" in p for p in arts.problems)
    assert arts.detector is not None  # the untouched detector still loads


def test_missing_manifest_loads_no_model(copy_dir):
    (copy_dir / artifacts.MANIFEST).unlink()
    arts = load_artifacts(copy_dir)
    assert arts.ranking_model is None and arts.detector is None
    assert "python -m core build" in arts.problems[0]


def test_file_missing_after_build_is_reported(copy_dir):
    (copy_dir / artifacts.DETECTOR).unlink()
    arts = load_artifacts(copy_dir)
    assert arts.detector is None
    assert arts.status[artifacts.DETECTOR] == "missing"
    assert any(artifacts.DETECTOR in p for p in arts.problems)
    assert arts.detector is None and "isolation_forest" not in arts.detectors
    assert "robust_z" in arts.detectors  # the other detectors still load
    with pytest.raises(ArtifactError, match="python -m core build"):
        require(arts.detector, "anomaly detector")


def test_wrong_object_with_matching_hash_is_refused(copy_dir):
    joblib.dump({"not": "a detector"}, copy_dir / artifacts.DETECTOR)
    manifest = json.loads((copy_dir / artifacts.MANIFEST).read_text())
    manifest["files"][artifacts.DETECTOR] = artifacts.file_entry(copy_dir / artifacts.DETECTOR)
    (copy_dir / artifacts.MANIFEST).write_text(json.dumps(manifest))
    arts = load_artifacts(copy_dir)
    assert arts.detector is None
    assert arts.status[artifacts.DETECTOR] == "wrong type: dict"


def test_corrupt_manifest_is_reported(copy_dir):
    (copy_dir / artifacts.MANIFEST).write_text("{not json")
    arts = load_artifacts(copy_dir)
    assert arts.manifest is None and arts.ranking_model is None
    assert "not valid JSON" in arts.problems[0]


def test_empty_directory_is_usable_and_explains(tmp_path):
    arts = load_artifacts(tmp_path)
    assert arts.summary()["manifest_ok"] is False
    assert arts.read_table(artifacts.AUDIT_CSV) is None
    assert arts.read_json(artifacts.OPERATING_POINT) is None


def test_environment_variable_points_the_loader_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv(artifacts.ARTIFACT_DIR_ENV, str(tmp_path))
    arts = load_artifacts()
    assert arts.path == tmp_path and arts.ranking_model is None
