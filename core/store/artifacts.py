"""One way to find, verify and load the build's artifacts, shared by the dashboard and the API.

Every file the build writes is listed in ``manifest.json`` with its sha256 and size. Each file is
opened once, without following symlinks, checked to be a regular file of the listed size, read
into memory, hashed, and only those verified bytes are parsed. Models are stored with skops,
whose loader builds objects only from an explicit list of trusted types and never runs pickle
code. With ``$RECSYS_MANIFEST_KEY`` set, the manifest itself must carry a valid HMAC signature.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from core.base.errors import ArtifactError
from core.base.json_ready import json_ready
from core.base.schema import DRIFT_REFERENCE, MANIFEST, MANIFEST_SIG, OPERATING_POINT
from core.store.manifest import (
    MANIFEST_KEY_ENV,
    MAX_MANIFEST_BYTES,
    FileEntry,
    Manifest,
    manifest_keys,
    parse_manifest,
    signature_ok,
)
from core.store.model_files import load_model
from core.store.safe_read import MissingFile, open_dir, read_regular, read_verified, verify_listed

log = logging.getLogger(__name__)

ARTIFACT_DIR_ENV = "RECSYS_ARTIFACT_DIR"
ARTIFACT_DIR = Path(__file__).resolve().parents[2] / "recsys_artifacts"
REBUILD_HINT = "Rebuild them with `python -m core build` (about a minute at demo scale)."


# --------------------------------------------------------------------------------------------
# JSON output.
# --------------------------------------------------------------------------------------------


def write_json(obj: Any, path: Path, decimals: int | None = None) -> None:
    """Deterministic JSON (sorted keys), so the same build gives the same bytes.

    Pass ``decimals`` only for report tables: thresholds and model figures stay exact.
    """
    text = json.dumps(json_ready(obj, decimals), indent=2, sort_keys=True, allow_nan=False)
    path.write_text(text + "\n")


# --------------------------------------------------------------------------------------------
# The loaded artifacts.
# --------------------------------------------------------------------------------------------


@dataclass
class Artifacts:
    """What was found in an artifact directory, and whether it can be trusted."""

    path: Path
    manifest: dict[str, Any] | None = None
    manifest_sha256: str | None = None
    signed: bool = False
    status: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    ranking_model: Any = None
    detector: Any = None
    detectors: dict[str, Any] = field(default_factory=dict)
    operating_point: dict[str, Any] | None = None
    # why the manifest was refused (unparsable, off-schema, unsigned, ...); None when none was found
    refused: str | None = None
    # listed files whose hash matched but whose content could not be parsed: name -> why
    unreadable: dict[str, str] = field(default_factory=dict)
    drift_reference: Any = None  # core.anomaly.drift.DriftReference, or None when not built

    @property
    def manifest_ok(self) -> bool:
        """True when a valid, non-empty manifest was found and every file it lists checked out."""
        return bool(self.manifest and self.status) and all(s == "ok" for s in self.status.values())

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
            return f"model artifact not loaded: no valid {MANIFEST} in {self.path.name}"
        name = self.served("ranking_model").get("file")
        if name is None or name not in self.status:
            return "model artifact missing: the manifest lists no ranking model"
        status = self.status[name]
        if status.startswith("tampered"):
            return f"model artifact refused: {name} sha256 differs from manifest"
        return f"model artifact {status}: {name}"

    def verified_path(self, name: str) -> Path | None:
        """Path of a file whose hash matched the manifest, else None (prefer read_bytes)."""
        return self.path / name if self.status.get(name) == "ok" else None

    def read_bytes(self, name: str) -> bytes | None:
        """A listed file's bytes, re-read and re-verified now; None when missing or refused."""
        entry = ((self.manifest or {}).get("files") or {}).get(name)
        if entry is None or self.status.get(name) != "ok":
            return None
        try:
            dir_fd = open_dir(self.path)
        except OSError:
            return None
        try:
            return read_verified(dir_fd, name, FileEntry.model_validate(entry))
        except ArtifactError as exc:
            log.warning("%s changed after it was verified: %s", name, exc)
            return None
        finally:
            os.close(dir_fd)

    def _unreadable(self, name: str, why: str) -> None:
        """Record (and log) why a verified file could not be parsed."""
        self.unreadable[name] = why
        log.warning("%s cannot be read: %s", name, why)

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A verified JSON object, or None when it is missing, refused or malformed (see unreadable)."""
        data = self.read_bytes(name)
        if data is None:
            return None
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands of levels deep
            self._unreadable(name, f"is not valid JSON ({type(exc).__name__})")
            return None
        if not isinstance(obj, dict):
            self._unreadable(name, f"holds a JSON {type(obj).__name__}, not an object")
            return None
        return obj

    def read_table(self, name: str) -> pd.DataFrame | None:
        """A verified CSV or parquet artifact (page checksums checked), or None when it is missing,
        refused or malformed (see unreadable)."""
        data = self.read_bytes(name)
        if data is None:
            return None
        buffer = io.BytesIO(data)
        try:
            if name.endswith(".parquet"):
                return pd.read_parquet(buffer, page_checksum_verification=True)
            return pd.read_csv(buffer)
        except (ValueError, OSError, pa.ArrowException) as exc:  # parser, encoding and checksum errors
            self._unreadable(name, f"cannot be parsed ({type(exc).__name__}: {str(exc)[:200]})")
            return None

    def summary(self) -> dict[str, Any]:
        """A JSON-safe description for /health, /version and the dashboard sidebar.

        The folder is named, never its absolute path: callers may show this to anyone.
        """
        manifest = self.manifest or {}
        return {
            "artifact_dir": self.path.name,
            "manifest_ok": self.manifest_ok,
            "manifest_sha256": self.manifest_sha256,
            "manifest_signed": self.signed,
            "ranking_model": self.ranking_model_name,
            "ranking_model_why": self.served("ranking_model").get("reason") if self.ranking_model is not None else None,
            "detector_loaded": self.detector is not None,
            "detector": self.served("detector").get("name") if self.detector is not None else None,
            "detectors": sorted(self.detectors),
            "built_at": manifest.get("built_at"),
            "data": manifest.get("data"),
            "seed": manifest.get("seed"),
            "problems": list(self.problems),
        }


def _read_manifest(arts: Artifacts, dir_fd: int) -> Manifest | None:
    """The validated (and, with a key set, signature-checked) manifest, or None with a problem."""
    try:
        data = read_regular(dir_fd, MANIFEST, MAX_MANIFEST_BYTES)
    except MissingFile:
        arts.problems.append(
            f"No {MANIFEST} in {arts.path.name}: no model can be verified, so none is loaded. {REBUILD_HINT}"
        )
        return None
    except ArtifactError as exc:
        arts.refused = str(exc)
        arts.problems.append(f"{exc}; no model is loaded. {REBUILD_HINT}")
        return None
    keys = manifest_keys()
    if keys:
        try:
            signature = read_regular(dir_fd, MANIFEST_SIG, 1024).decode("ascii").strip()
        except (ArtifactError, UnicodeDecodeError):
            signature = ""
        if not signature_ok(data, signature, keys):
            arts.refused = f"{MANIFEST} has no valid signature ({MANIFEST_SIG}) for the key in ${MANIFEST_KEY_ENV}"
            arts.problems.append(
                f"{MANIFEST} has no valid signature ({MANIFEST_SIG}) for the key in "
                f"${MANIFEST_KEY_ENV}; no model is loaded. {REBUILD_HINT}"
            )
            return None
        arts.signed = True
    try:
        manifest = parse_manifest(data)
    except ArtifactError as exc:
        arts.refused = str(exc)
        arts.problems.append(f"{exc} No model is loaded. {REBUILD_HINT}")
        return None
    arts.manifest_sha256 = hashlib.sha256(data).hexdigest()
    return manifest


def _check_files(arts: Artifacts, manifest: Manifest, dir_fd: int, keep: set[str]) -> dict[str, bytes]:
    """Verify every listed file; return the verified bytes of the files named in ``keep``.

    The others are hashed as they are read, so a large table never sits in memory whole here.
    """
    kept: dict[str, bytes] = {}
    for name, entry in sorted(manifest.files.items()):
        try:
            if name in keep:
                kept[name] = read_verified(dir_fd, name, entry)
            else:
                verify_listed(dir_fd, name, entry)
        except MissingFile:
            arts.status[name] = "missing"
            arts.problems.append(f"{name} is listed in the manifest but missing. {REBUILD_HINT}")
            continue
        except ArtifactError as exc:
            tampered = "tampered" in str(exc)
            arts.status[name] = "tampered: sha256 differs from the manifest" if tampered else "refused"
            arts.problems.append(f"{exc}; it was refused. {REBUILD_HINT}")
            continue
        arts.status[name] = "ok"
    return kept


def _load_model(arts: Artifacts, name: str, data: bytes | None, expected: type) -> Any:
    """The model in a verified file's bytes, or None with the reason recorded."""
    if data is None:
        return None
    try:
        return load_model(data, expected)
    except ArtifactError as exc:
        arts.status[name] = f"refused: {exc}"
        arts.problems.append(f"{name} {exc}; it was refused. {REBUILD_HINT}")
        return None


def default_dir() -> Path:
    """The artifact directory: $RECSYS_ARTIFACT_DIR when set (and not blank), else the
    repository's recsys_artifacts/. The only place the variable is read."""
    override = os.environ.get(ARTIFACT_DIR_ENV, "").strip()
    return Path(override) if override else ARTIFACT_DIR


def load_artifacts(path: str | Path | None = None) -> Artifacts:
    """Verify the artifact directory against its manifest and load the models it holds."""
    arts = Artifacts(path=Path(path) if path is not None else default_dir())
    try:
        dir_fd = open_dir(arts.path)
    except OSError:
        arts.problems.append(
            f"No {MANIFEST} in {arts.path.name}: the folder cannot be opened, so no model is loaded. {REBUILD_HINT}"
        )
        return arts
    try:
        _load_into(arts, dir_fd)
    finally:
        os.close(dir_fd)
    for problem in arts.problems:
        log.warning(problem)
    return arts


def _load_into(arts: Artifacts, dir_fd: int) -> None:
    """Read the manifest, verify every file and load the served models, all through dir_fd."""
    from core.anomaly.detector import Detector
    from core.ranking.models import RankingModel

    manifest = _read_manifest(arts, dir_fd)
    if manifest is None:
        return
    arts.manifest = manifest.model_dump(mode="json")
    model_file = manifest.served.ranking_model.file
    served = manifest.served.detector
    kept = _check_files(arts, manifest, dir_fd, {model_file, served.file, *served.detectors.values()})
    arts.ranking_model = _load_model(arts, model_file, kept.get(model_file), RankingModel)
    arts.detector = _load_model(arts, served.file, kept.get(served.file), Detector)
    # Every detector the build saved, selectable by name; the served one is the same object.
    for name, file in served.detectors.items():
        det = arts.detector if file == served.file else _load_model(arts, file, kept.get(file), Detector)
        if det is not None:
            arts.detectors[name] = det
    arts.operating_point = arts.read_json(OPERATING_POINT)
    why = arts.unreadable.get(OPERATING_POINT)
    if why is not None:  # the server still starts, degraded, and /health names the file
        arts.status[OPERATING_POINT] = f"refused: {why}"
        arts.problems.append(f"{OPERATING_POINT} {why}; it was refused. {REBUILD_HINT}")
    arts.drift_reference = _drift_reference(arts)


def _drift_reference(arts: Artifacts) -> Any:
    """The verified, schema-checked drift reference, or None (a build without one has no drift check)."""
    from pydantic import ValidationError

    from core.anomaly.drift import DriftReference

    data = arts.read_bytes(DRIFT_REFERENCE)
    if data is None:
        return None
    try:
        return DriftReference.model_validate_json(data)
    except ValidationError as exc:
        arts.problems.append(
            f"{DRIFT_REFERENCE} does not follow its schema ({exc.error_count()} errors); no drift check."
        )
        return None


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
            f"No verified anomaly detector is available; run `python -m core build` to create one. {why}".strip()
        )
    return arts.detector
