"""The build's output folder: a fresh folder swapped in whole, and its signed manifest."""

from __future__ import annotations

import os
import platform
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

import core
from core.base import schema
from core.store import artifacts
from core.store.manifest import Manifest, file_entry, manifest_keys, sign_manifest

LIBRARIES = (
    "numpy",
    "pandas",
    "scikit-learn",
    "skops",
    "pyarrow",
    "joblib",
    "threadpoolctl",
    "streamlit",
    "altair",
    "fastapi",
    "pydantic",
    "uvicorn",
)


def write_manifest(
    out: Path,
    *,
    seed: int,
    source: str,
    scale: str,
    fingerprint: str,
    events: pd.DataFrame,
    load_report: dict[str, Any] | None,
    sampled_clean: bool,
    served: dict[str, Any],
) -> None:
    """List every file of this build with its sha256 and size, the served models, versions,
    seed and data; sign it when $RECSYS_MANIFEST_KEY is set.

    ``out`` is the build's own fresh folder, so every file in it was written by this build.
    """
    files = {}
    for p in sorted(out.iterdir()):
        if p.name in (schema.MANIFEST, schema.MANIFEST_SIG):
            continue
        if not stat.S_ISREG(p.lstat().st_mode):  # the build writes regular files only
            raise artifacts.ArtifactError(f"unexpected non-regular file {p.name} in the build folder")
        files[p.name] = file_entry(p)
    manifest = {
        "core_version": core.__version__,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "data": {
            "source": source,
            "scale": scale,
            "fingerprint": fingerprint,
            "events": int(len(events)),
            "visitors": int(events["visitorid"].nunique()),
            "load_report": load_report,
            "events_clean_q04_is_sample": sampled_clean,
        },
        "versions": {"python": platform.python_version(), **{lib: _version(lib) for lib in LIBRARIES}},
        "served": served,
        "files": files,
    }
    # Validated before it is written, so a build never ships a manifest the loader refuses.
    Manifest.model_validate(manifest)
    artifacts.write_json(manifest, out / schema.MANIFEST)
    keys = manifest_keys()
    if keys:
        signature = sign_manifest((out / schema.MANIFEST).read_bytes(), keys[0])
        (out / schema.MANIFEST_SIG).write_text(signature + "\n")


def _replaceable(target: Path) -> bool:
    """True when ``target`` is absent, an empty folder or an earlier build (it has a manifest)."""
    if not target.exists() and not target.is_symlink():
        return True
    if target.is_symlink() or not target.is_dir():
        return False
    return (target / schema.MANIFEST).is_file() or not any(target.iterdir())


@contextmanager
def fresh_output(target: Path) -> Iterator[Path]:
    """An empty folder next to ``target`` to build into; on success it replaces ``target`` whole.

    The old folder is renamed aside, the new one renamed in, then the old one removed: readers
    see either the old build or the new one, never a mix. On failure the new folder is removed
    and ``target`` is left as it was.
    """
    target = target.absolute()
    if not _replaceable(target):
        raise artifacts.ArtifactError(
            f"{target} exists and is not an artifact folder (no {schema.MANIFEST}); refusing to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the served folder is world-readable
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    swap_in(staging, target)


def swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging``: old aside, new in, old removed (old restored on error)."""
    if not target.exists():
        os.replace(staging, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, aside / target.name)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(aside / target.name, target)
        shutil.rmtree(aside, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(aside)


def _version(lib: str) -> str | None:
    """The installed version of ``lib``, or None when it is not installed."""
    try:
        return version(lib)
    except Exception:
        return None
