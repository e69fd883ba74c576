"""The manifest's schema and parsing, file entries, and its HMAC signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.base.errors import ArtifactError
from core.base.schema import MANIFEST, MANIFEST_SIG
from core.store.safe_read import READ_BLOCK, check_name

MANIFEST_KEY_ENV = "RECSYS_MANIFEST_KEY"
MAX_MANIFEST_BYTES = 1 << 20
MAX_FILE_BYTES = 4 << 30


# --------------------------------------------------------------------------------------------
# File entries and signatures.
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
# The manifest's schema.
# --------------------------------------------------------------------------------------------


def _plain_name(name: str) -> str:
    """A file the manifest may list: a plain name, and not the manifest or its signature."""
    if check_name(name) in (MANIFEST, MANIFEST_SIG):
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
    reason: str | None = Field(default=None, max_length=1000)  # the serving rule's why


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
        raise ArtifactError(
            f"{MANIFEST} does not follow the manifest schema: " + "; ".join(_schema_reasons(exc))
        ) from exc
