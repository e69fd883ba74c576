"""Shared fixtures: the built artifact folder (loaded once, and a light copy for tests of hostile
files), the dashboard's artifact settings, example bodies, and the skip-or-fail rule (a missing
prerequisite skips locally and fails under CI=true)."""

from __future__ import annotations

import copy
import gc
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from api.schemas import EXAMPLES_DIR
from core.store import artifacts as A

IN_CI = os.environ.get("CI") == "true"


# The modules imported so far (scikit-learn, pandas, the app), then every test module, live to the
# end of the run: frozen out of garbage collection, as an API worker freezes its loaded artifacts,
# so that each full collection (tens in a run) does not walk them all again.
gc.freeze()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collection left alive: the test modules and their tables (see above)."""
    gc.freeze()


def skip_or_fail(reason: str) -> None:
    """Skip a test whose prerequisite is missing; under CI=true the same gap fails it."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def built_artifact_dir(loaded_artifacts: A.Artifacts) -> Path:
    """A verified artifact directory: $RECSYS_ARTIFACT_DIR if set, else the committed one."""
    return loaded_artifacts.path


@pytest.fixture(scope="session")
def default_artifacts() -> A.Artifacts:
    """The artifact directory load_artifacts() reads by default, loaded once for the session,
    verified or not (read its models, never change them)."""
    arts = A.load_artifacts()
    gc.freeze()  # kept to the end of the session, like the modules (pytest_collection_finish)
    return arts


@pytest.fixture(scope="session")
def loaded_artifacts(default_artifacts: A.Artifacts) -> A.Artifacts:
    """default_artifacts, which must be a verified build (same checks as built_artifact_dir)."""
    if not default_artifacts.manifest_ok:
        skip_or_fail(f"no verified artifacts in {default_artifacts.path}; run `python -m core build`")
    return default_artifacts


LIGHT_TREES = 2


def _keep_trees(forest: Any, n: int) -> None:
    """Cut a fitted scikit-learn forest to its first ``n`` trees (and every per-tree list it keeps)."""
    per_tree = (
        "estimators_",
        "estimators_features_",
        "_seeds",
        "_decision_path_lengths",
        "_average_path_length_per_tree",
    )
    for name in per_tree:
        if hasattr(forest, name):
            setattr(forest, name, getattr(forest, name)[:n])
    forest.n_estimators = n


@pytest.fixture(scope="session")
def light_artifact_dir(loaded_artifacts: A.Artifacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the verified build with the served ranker's forest and the isolation forest cut to
    two trees each and relisted in the (unsigned) manifest: the same files, kinds and load path, but
    a load unpacks 4 trees instead of 300. For tests of hostile files, where the models' size plays no part."""
    from core.base.schema import MANIFEST
    from core.store.manifest import file_entry
    from core.store.model_files import dump_model

    target = tmp_path_factory.mktemp("light") / "arts"
    shutil.copytree(loaded_artifacts.path, target)
    manifest = json.loads((target / MANIFEST).read_text())
    model_file = manifest["served"]["ranking_model"]["file"]
    # Shallow copies of the session's loaded models (not a second load from disk); the cut
    # replaces their per-tree lists, so the session's models keep every tree.
    model = copy.copy(loaded_artifacts.ranking_model)
    model.estimator = copy.copy(model.estimator)
    _keep_trees(model.estimator, LIGHT_TREES)
    detector_file = manifest["served"]["detector"]["detectors"]["isolation_forest"]
    detector = copy.copy(loaded_artifacts.detectors["isolation_forest"])
    detector.forest_ = copy.copy(detector.forest_)
    _keep_trees(detector.forest_, LIGHT_TREES)
    detector.n_estimators = LIGHT_TREES
    for name, obj in ((model_file, model), (detector_file, detector)):
        (target / name).write_bytes(dump_model(obj))
        manifest["files"][name] = file_entry(target / name)
    (target / MANIFEST).write_text(json.dumps(manifest))
    return target


@pytest.fixture(scope="session")
def built_artifacts(built_artifact_dir: Path) -> Path:
    """The artifact directory the API serves by default (same checks as built_artifact_dir)."""
    return built_artifact_dir


@pytest.fixture
def dashboard_built(monkeypatch, built_artifact_dir) -> Path:
    """Point the dashboard at the built artifacts."""
    monkeypatch.setenv(A.ARTIFACT_DIR_ENV, str(built_artifact_dir))
    return built_artifact_dir


@pytest.fixture
def dashboard_empty(monkeypatch, tmp_path) -> Path:
    """Point the dashboard at an empty artifact directory (nothing built)."""
    monkeypatch.setenv(A.ARTIFACT_DIR_ENV, str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def example() -> Callable[[str], dict[str, Any]]:
    """Load a committed example body by file name (a fresh copy each call)."""

    def load(name: str) -> dict[str, Any]:
        """The body in examples/<name>."""
        return json.loads((EXAMPLES_DIR / name).read_text())

    return load
