"""One way to find, verify and load the build's artifacts, shared by the dashboard and the API.

Every file the build writes is listed in ``manifest.json`` with its sha256 and size. A joblib
file is only unpickled after its hash matches the manifest, because unpickling runs code: a
tampered or foreign model file is refused, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from core.errors import ArtifactError
from core.schema import (  # noqa: F401  (the file names are re-exported for callers)
    AUDIT_CSV,
    BEFORE_AFTER_CSV,
    BEFORE_AFTER_JSON,
    CLEAN_EVENTS,
    CLEANING_COST_CSV,
    DAILY_ACTIVITY,
    DATASET_SUMMARY,
    DETECTOR,
    DETECTOR_PREFIX,
    DETECTOR_QUALITY_JSON,
    EVALUATION_JSON,
    MANIFEST,
    OPERATING_POINT,
    RANKING_DATASET,
    RANKING_METRICS_CSV,
    RANKING_METRICS_JSON,
    RANKING_MODEL_PREFIX,
    RESULTS_MD,
    SCORED_USERS,
)
from core.schema import USER_FEATURES_FILE as USER_FEATURES  # noqa: F401

log = logging.getLogger(__name__)

ARTIFACT_DIR_ENV = "RECSYS_ARTIFACT_DIR"
ARTIFACT_DIR = Path(__file__).resolve().parent.parent / "recsys_artifacts"
REBUILD_HINT = "Rebuild them with `python -m core build` (about a minute at demo scale)."


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """The manifest entry of one file: its sha256 and size in bytes."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def json_ready(obj: Any, decimals: int | None = None) -> Any:
    """JSON-ready copy: numpy and times as Python, NaN/inf as None, floats rounded when asked."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v, decimals) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v, decimals) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist(), decimals)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if not math.isfinite(value):
            return None
        return value if decimals is None else round(value, decimals)
    if isinstance(obj, (pd.Timestamp, datetime)):
        return obj.isoformat()
    return obj


def write_json(obj: Any, path: Path, decimals: int | None = None) -> None:
    """Deterministic JSON (sorted keys), so the same build gives the same bytes.

    Pass ``decimals`` only for report tables: thresholds and model figures stay exact.
    """
    text = json.dumps(json_ready(obj, decimals), indent=2, sort_keys=True, allow_nan=False)
    path.write_text(text + "\n")

@dataclass
class Artifacts:
    """What was found in an artifact directory, and whether it can be trusted."""

    path: Path
    manifest: dict[str, Any] | None = None
    status: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    ranking_model: Any = None
    detector: Any = None
    detectors: dict[str, Any] = field(default_factory=dict)
    operating_point: dict[str, Any] | None = None

    @property
    def manifest_ok(self) -> bool:
        """True when a manifest exists and every file it lists matches its hash."""
        return self.manifest is not None and not any(
            s.startswith("tampered") or s.startswith("missing") for s in self.status.values()
        )

    def served(self, role: str) -> dict[str, Any]:
        """The manifest's entry of a served model ("ranking_model" or "detector"), or {}."""
        return ((self.manifest or {}).get("served") or {}).get(role) or {}

    @property
    def ranking_model_name(self) -> str | None:
        """Name of the served ranking model as the manifest records it, or None when not loaded."""
        if self.ranking_model is None:
            return None
        return self.served("ranking_model").get("name")

    def ranking_fallback_reason(self) -> str | None:
        """Why the ranking model is not used, in one line (None when it is loaded).

        The API's ``fallback_reason`` and the dashboard's ranking page both say it this way.
        """
        if self.ranking_model is not None:
            return None
        if self.manifest is None:
            return f"model artifact not loaded: no valid {MANIFEST} in {self.path}"
        name = self.served("ranking_model").get("file")
        if name is None or name not in self.status:
            return "model artifact missing: the manifest lists no ranking model"
        status = self.status[name]
        if status.startswith("tampered"):
            return f"model artifact refused: {name} sha256 differs from manifest"
        return f"model artifact {status}: {name}"

    def verified_path(self, name: str) -> Path | None:
        """Path of a file whose hash matched the manifest, else None."""
        return self.path / name if self.status.get(name) == "ok" else None

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A verified JSON artifact, or None when it is missing or refused."""
        path = self.verified_path(name)
        return json.loads(path.read_text()) if path else None

    def read_table(self, name: str) -> pd.DataFrame | None:
        """A verified CSV or parquet artifact, or None when it is missing or refused."""
        path = self.verified_path(name)
        if path is None:
            return None
        return pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)

    def summary(self) -> dict[str, Any]:
        """A JSON-safe description for /health, /version and the dashboard sidebar."""
        manifest = self.manifest or {}
        return {
            "artifact_dir": str(self.path),
            "manifest_ok": self.manifest_ok,
            "ranking_model": self.ranking_model_name,
            "detector_loaded": self.detector is not None,
            "detector": self.served("detector").get("name") if self.detector is not None else None,
            "detectors": sorted(self.detectors),
            "built_at": manifest.get("built_at"),
            "data": manifest.get("data"),
            "seed": manifest.get("seed"),
            "problems": list(self.problems),
        }


def _check_files(arts: Artifacts) -> None:
    """Compare every manifest entry with the file on disk."""
    files = arts.manifest.get("files", {}) if arts.manifest else {}
    for name, entry in sorted(files.items()):
        path = arts.path / name
        if not path.exists():
            arts.status[name] = "missing"
            arts.problems.append(f"{name} is listed in the manifest but missing. {REBUILD_HINT}")
        elif sha256_file(path) != entry.get("sha256"):
            arts.status[name] = "tampered: sha256 differs from the manifest"
            arts.problems.append(
                f"{name} does not match its sha256 in {MANIFEST} (changed after the build); "
                f"it was refused. {REBUILD_HINT}"
            )
        else:
            arts.status[name] = "ok"


def _load_pickle(arts: Artifacts, name: str, expected: str) -> Any:
    """Unpickle a verified joblib file and check it holds the expected class."""
    path = arts.verified_path(name)
    if path is None:
        return None
    try:
        obj = joblib.load(path)
    except Exception as exc:  # a verified file that still fails to load: say so, keep going
        arts.status[name] = f"unreadable: {type(exc).__name__}"
        arts.problems.append(f"{name} could not be loaded ({exc}). {REBUILD_HINT}")
        return None
    # A subclass passes (every detector derives from Detector); matched by name, not imported.
    if expected not in {c.__name__ for c in type(obj).__mro__}:
        arts.status[name] = f"wrong type: {type(obj).__name__}"
        arts.problems.append(f"{name} holds a {type(obj).__name__}, expected {expected}.")
        return None
    return obj


def default_dir() -> Path:
    """The artifact directory: $RECSYS_ARTIFACT_DIR when set (and not blank), else the
    repository's recsys_artifacts/. The only place the variable is read."""
    override = os.environ.get(ARTIFACT_DIR_ENV, "").strip()
    return Path(override) if override else ARTIFACT_DIR


def load_artifacts(path: str | Path | None = None) -> Artifacts:
    """Verify the artifact directory against its manifest and load the models it holds."""
    arts = Artifacts(path=Path(path) if path is not None else default_dir())
    manifest_path = arts.path / MANIFEST
    if not manifest_path.exists():
        arts.problems.append(
            f"No {MANIFEST} in {arts.path}: no model can be verified, so none is loaded. "
            + REBUILD_HINT
        )
        return arts
    try:
        arts.manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        arts.problems.append(f"{MANIFEST} is not valid JSON ({exc}). {REBUILD_HINT}")
        return arts
    _check_files(arts)
    model_file = arts.served("ranking_model").get("file")
    if model_file:
        arts.ranking_model = _load_pickle(arts, model_file, "RankingModel")
    else:
        arts.problems.append(f"{MANIFEST} names no served ranking model. {REBUILD_HINT}")
    served_detector = arts.served("detector")
    detector_file = served_detector.get("file")
    if detector_file:
        arts.detector = _load_pickle(arts, detector_file, "Detector")
        # Every other detector the build saved, selectable by name; the served one is shared.
        for name, file in (served_detector.get("detectors") or {}).items():
            det = arts.detector if file == detector_file else _load_pickle(arts, file, "Detector")
            if det is not None:
                arts.detectors[name] = det
        if arts.detector is not None:
            arts.detectors.setdefault(str(getattr(arts.detector, "name", "default")), arts.detector)
    else:
        arts.problems.append(f"{MANIFEST} names no served detector. {REBUILD_HINT}")
    arts.operating_point = arts.read_json(OPERATING_POINT)
    for problem in arts.problems:
        log.warning(problem)
    return arts


def require(obj: Any, what: str) -> Any:
    """Return obj, or raise ArtifactError naming what is missing and how to rebuild it."""
    if obj is None:
        raise ArtifactError(f"The {what} is not available. {REBUILD_HINT}")
    return obj


def load_detector(path: str | Path | None = None) -> Any:
    """The verified detector of an artifact directory; ArtifactError when there is none."""
    arts = load_artifacts(path)
    if arts.detector is None:
        why = " ".join(arts.problems)
        raise ArtifactError(
            "No verified anomaly detector is available; run `python -m core build` to create "
            f"one. {why}".strip()
        )
    return arts.detector
