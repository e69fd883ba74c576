"""One way to find, verify and load the build's artifacts, shared by the dashboard and the API.

Every file the build writes is listed in ``manifest.json`` with its sha256 and size. Each file is
opened once, without following symlinks, checked to be a regular file of the listed size, read
into memory, hashed, and only those verified bytes are parsed. Models are stored with skops,
whose loader builds objects only from an explicit list of trusted types and never runs pickle
code. With ``$RECSYS_MANIFEST_KEY`` set, the manifest itself must carry a valid HMAC signature.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import io
import json
import logging
import math
import os
import stat
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import skops.io as sio
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    MANIFEST_SIG,
    MODEL_SUFFIX,
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
MANIFEST_KEY_ENV = "RECSYS_MANIFEST_KEY"
ARTIFACT_DIR = Path(__file__).resolve().parent.parent / "recsys_artifacts"
REBUILD_HINT = "Rebuild them with `python -m core build` (about a minute at demo scale)."
MAX_MANIFEST_BYTES = 1 << 20
MAX_FILE_BYTES = 4 << 30
READ_BLOCK = 1 << 20
# scikit-learn types our models hold that skops does not trust by default; both are plain
# fitted-tree containers rebuilt from arrays, with no callable state.
SKLEARN_TRUSTED: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)


# --------------------------------------------------------------------------------------------
# Hashing, JSON output and signatures.
# --------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(READ_BLOCK), b""):
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

def manifest_keys() -> list[bytes]:
    """The HMAC keys of $RECSYS_MANIFEST_KEY (comma-separated; the first one signs)."""
    raw = os.environ.get(MANIFEST_KEY_ENV, "")
    return [k.strip().encode() for k in raw.split(",") if k.strip()]


def sign_manifest(data: bytes, key: bytes) -> str:
    """Hex HMAC-SHA256 of the manifest's exact bytes."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def signature_ok(data: bytes, signature: str, keys: list[bytes]) -> bool:
    """True when ``signature`` is the HMAC of ``data`` under any of ``keys``."""
    return any(hmac.compare_digest(sign_manifest(data, key), signature) for key in keys)


# --------------------------------------------------------------------------------------------
# Models: skops with an explicit list of trusted types.
# --------------------------------------------------------------------------------------------


def type_name(obj: Any) -> str:
    """The dotted name skops records for a class or function."""
    return f"{obj.__module__}.{obj.__qualname__}"


def trusted_types() -> list[str]:
    """Every type a model file may hold beyond skops' own safe defaults."""
    # Imported here: core.ranking and core.anomaly are heavy and the loader is imported early.
    from core import ranking
    from core.anomaly.detector import DETECTORS

    ours = (ranking.RankingModel, ranking.MarkovModel, *DETECTORS.values())
    return sorted({*SKLEARN_TRUSTED, *(type_name(t) for t in ours)})


def dump_model(obj: Any) -> bytes:
    """A model as skops bytes; ArtifactError if it holds a type the loader would refuse."""
    data = sio.dumps(obj, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    unknown = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted_types()))
    if unknown:
        raise ArtifactError(f"{type(obj).__name__} holds types the loader does not trust: {unknown}")
    return data


def load_model(data: bytes, expected: type) -> Any:
    """The object in skops bytes, built only from trusted types and checked to be ``expected``."""
    trusted = trusted_types()
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # a zip or schema skops cannot read: refuse, whatever the cause
        raise ArtifactError(f"is not a readable skops model file ({type(exc).__name__})") from exc
    unknown = sorted(set(untrusted) - set(trusted))
    if unknown:
        raise ArtifactError(f"holds types outside the trusted list: {', '.join(unknown)}")
    try:
        obj = sio.loads(data, trusted=trusted)
    except Exception as exc:
        raise ArtifactError(f"could not be loaded ({type(exc).__name__})") from exc
    if not isinstance(obj, expected):  # every detector is a subclass of the Detector base
        raise ArtifactError(f"holds a {type(obj).__name__}, expected {expected.__name__}")
    return obj


# --------------------------------------------------------------------------------------------
# The manifest's schema.
# --------------------------------------------------------------------------------------------


def _file_name(name: str) -> str:
    """A name directly inside the artifact folder: no path separator, no hidden name."""
    if not name or len(name) > 255 or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise ValueError("must be a plain file name inside the artifact folder")
    return name


def _plain_name(name: str) -> str:
    """A file the manifest may list: a plain name, and not the manifest or its signature."""
    if _file_name(name) in (MANIFEST, MANIFEST_SIG):
        raise ValueError("must not be the manifest or its signature")
    return name


PlainName = Annotated[str, AfterValidator(_plain_name)]


class FileEntry(BaseModel):
    """One listed file: its sha256 and size."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0, le=MAX_FILE_BYTES)


class ServedRanking(BaseModel):
    """The served ranking model: its file and identity."""

    model_config = ConfigDict(extra="forbid", strict=True)

    file: PlainName
    name: str = Field(min_length=1, max_length=100)
    ranker: str = Field(min_length=1, max_length=100)
    candidates: str = Field(min_length=1, max_length=100)


class ServedDetector(BaseModel):
    """The served anomaly detector's file and name, the buyer policy and every selectable detector."""

    model_config = ConfigDict(extra="forbid", strict=True)

    file: PlainName
    name: str = Field(min_length=1, max_length=100)
    protect_buyers: bool
    detectors: dict[str, PlainName] = Field(min_length=1, max_length=20)


class Served(BaseModel):
    """The models the dashboard and the API serve, named explicitly."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ranking_model: ServedRanking
    detector: ServedDetector


class Manifest(BaseModel):
    """manifest.json: build facts, the served models and every file with its hash."""

    model_config = ConfigDict(extra="forbid", strict=True)

    core_version: str | None = None
    built_at: str | None = None
    seed: int | None = None
    data: dict[str, Any] | None = None
    versions: dict[str, str | None] | None = None
    served: Served
    files: dict[PlainName, FileEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _served_files_are_listed(self) -> Manifest:
        """A served model must be one of the verified files."""
        served = [("ranking_model.file", self.served.ranking_model.file), ("detector.file", self.served.detector.file)]
        served += [(f"detector.detectors.{n}", f) for n, f in self.served.detector.detectors.items()]
        for role, name in served:
            if name not in self.files:
                raise ValueError(f"served.{role} is not listed in files")
        return self


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads hook: a repeated key is an error, not 'last one wins'."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key in a JSON object")
    return dict(pairs)


def _schema_reasons(exc: ValidationError) -> list[str]:
    """Short reasons from a validation error, without echoing values or path-like keys."""
    reasons = []
    for err in exc.errors()[:10]:
        loc = ".".join("<name>" if any(c in str(p) for c in "/\\") else str(p) for p in err["loc"])
        reasons.append(f"{loc or 'manifest'}: {err['msg']}")
    return reasons


def parse_manifest(data: bytes) -> Manifest:
    """The validated manifest of raw manifest.json bytes; ArtifactError with reasons if not."""
    try:
        raw = json.loads(data, object_pairs_hook=_reject_duplicates)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"{MANIFEST} is not valid JSON ({type(exc).__name__}).") from exc
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(f"{MANIFEST} does not follow the manifest schema: "
                            + "; ".join(_schema_reasons(exc))) from exc


# --------------------------------------------------------------------------------------------
# Reading files safely.
# --------------------------------------------------------------------------------------------


class MissingFile(ArtifactError):
    """A listed file is not in the folder."""


class TooLarge(ArtifactError):
    """A file is larger than it may be."""


def open_dir(path: Path) -> int:
    """A descriptor of the artifact folder, so every file is opened relative to one folder."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def read_regular(dir_fd: int, name: str, max_bytes: int) -> bytes:
    """The bytes of a regular file directly in the folder, at most ``max_bytes`` of them.

    Symlinks are not followed, and devices and FIFOs are refused before any read (O_NONBLOCK
    keeps opening a FIFO from blocking).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(_file_name(name), flags, dir_fd=dir_fd)
    except FileNotFoundError as exc:
        raise MissingFile(f"{name} is missing") from exc
    except OSError as exc:
        why = "is a symlink" if exc.errno == errno.ELOOP else f"cannot be opened ({exc.strerror})"
        raise ArtifactError(f"{name} {why}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"{name} is not a regular file")
        if info.st_size > max_bytes:
            raise TooLarge(f"{name} is larger than {max_bytes} bytes")
        chunks, size = [], 0
        while size <= max_bytes:
            block = os.read(fd, min(READ_BLOCK, max_bytes + 1 - size))
            if not block:
                break
            chunks.append(block)
            size += len(block)
        if size > max_bytes:  # it grew while being read
            raise TooLarge(f"{name} is larger than {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_verified(dir_fd: int, name: str, entry: FileEntry) -> bytes:
    """A listed file's bytes, read once and checked against its manifest size and sha256."""
    try:
        data = read_regular(dir_fd, name, entry.bytes)
    except TooLarge as exc:
        raise ArtifactError(f"{name} is larger than the {entry.bytes} bytes {MANIFEST} lists, so it "
                            "cannot match its sha256: tampered") from exc
    if len(data) != entry.bytes:
        raise ArtifactError(f"{name} has {len(data)} bytes, {MANIFEST} lists {entry.bytes}, so it cannot "
                            "match its sha256: tampered")
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), entry.sha256):
        raise ArtifactError(f"{name} does not match its sha256 in {MANIFEST}: tampered")
    return data


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

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A verified JSON artifact, or None when it is missing or refused."""
        data = self.read_bytes(name)
        return json.loads(data) if data is not None else None

    def read_table(self, name: str) -> pd.DataFrame | None:
        """A verified CSV or parquet artifact, or None when it is missing or refused."""
        data = self.read_bytes(name)
        if data is None:
            return None
        buffer = io.BytesIO(data)
        return pd.read_parquet(buffer) if name.endswith(".parquet") else pd.read_csv(buffer)

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
        arts.problems.append(f"No {MANIFEST} in {arts.path.name}: no model can be verified, so none "
                             f"is loaded. {REBUILD_HINT}")
        return None
    except ArtifactError as exc:
        arts.problems.append(f"{exc}; no model is loaded. {REBUILD_HINT}")
        return None
    keys = manifest_keys()
    if keys:
        try:
            signature = read_regular(dir_fd, MANIFEST_SIG, 1024).decode("ascii").strip()
        except (ArtifactError, UnicodeDecodeError):
            signature = ""
        if not signature_ok(data, signature, keys):
            arts.problems.append(f"{MANIFEST} has no valid signature ({MANIFEST_SIG}) for the key in "
                                 f"${MANIFEST_KEY_ENV}; no model is loaded. {REBUILD_HINT}")
            return None
        arts.signed = True
    try:
        manifest = parse_manifest(data)
    except ArtifactError as exc:
        arts.problems.append(f"{exc} No model is loaded. {REBUILD_HINT}")
        return None
    arts.manifest_sha256 = hashlib.sha256(data).hexdigest()
    return manifest


def _check_files(arts: Artifacts, manifest: Manifest, dir_fd: int, keep: set[str]) -> dict[str, bytes]:
    """Verify every listed file; return the verified bytes of the files named in ``keep``."""
    kept: dict[str, bytes] = {}
    for name, entry in sorted(manifest.files.items()):
        try:
            data = read_verified(dir_fd, name, entry)
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
        if name in keep:
            kept[name] = data
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
        arts.problems.append(f"No {MANIFEST} in {arts.path.name}: the folder cannot be opened, so no "
                             f"model is loaded. {REBUILD_HINT}")
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
    from core import ranking
    from core.anomaly.detector import Detector

    manifest = _read_manifest(arts, dir_fd)
    if manifest is None:
        return
    arts.manifest = manifest.model_dump(mode="json")
    model_file = manifest.served.ranking_model.file
    served = manifest.served.detector
    kept = _check_files(arts, manifest, dir_fd, {model_file, served.file, *served.detectors.values()})
    arts.ranking_model = _load_model(arts, model_file, kept.get(model_file), ranking.RankingModel)
    arts.detector = _load_model(arts, served.file, kept.get(served.file), Detector)
    # Every detector the build saved, selectable by name; the served one is the same object.
    for name, file in served.detectors.items():
        det = arts.detector if file == served.file else _load_model(arts, file, kept.get(file), Detector)
        if det is not None:
            arts.detectors[name] = det
    arts.operating_point = arts.read_json(OPERATING_POINT)


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
