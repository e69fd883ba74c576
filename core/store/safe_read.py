"""Reading artifact files safely: relative to one folder, no symlinks, regular files only, capped size."""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from core.base.errors import ArtifactError
from core.base.schema import MANIFEST


class Listed(Protocol):
    """What a check needs of a file's manifest entry (core.store.manifest.FileEntry is one)."""

    @property
    def sha256(self) -> str: ...

    @property
    def bytes(self) -> int: ...


READ_BLOCK = 1 << 20
# The largest file of each kind the loader reads (docs/ARCHITECTURE.md, "Artifact limits"),
# checked on the manifest's listed size before the file is opened: the demo build's largest
# model is 2.8 MB, its largest JSON 0.2 MB and its largest table 3 MB.
MAX_BYTES_BY_KIND: dict[str, int] = {
    "model": 256 << 20,
    "json": 16 << 20,
    "table": 512 << 20,
    "other": 16 << 20,
}
_KIND_OF_SUFFIX = {".skops": "model", ".json": "json", ".parquet": "table", ".csv": "table"}


def check_name(name: str) -> str:
    """A name directly inside the artifact folder: no path separator, no hidden name."""
    if not name or len(name) > 255 or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise ValueError("must be a plain file name inside the artifact folder")
    return name


def kind_of(name: str) -> str:
    """'model', 'json', 'table' or 'other', from a file name's suffix."""
    return next((k for suffix, k in _KIND_OF_SUFFIX.items() if name.endswith(suffix)), "other")


def max_bytes(name: str) -> int:
    """The largest size a file of this name's kind may have."""
    return MAX_BYTES_BY_KIND[kind_of(name)]


class MissingFile(ArtifactError):
    """A listed file is not in the folder."""


class TooLarge(ArtifactError):
    """A file is larger than it may be."""


def open_dir(path: Path) -> int:
    """A descriptor of the artifact folder, so every file is opened relative to one folder."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _blocks(dir_fd: int, name: str, max_bytes: int) -> Iterator[bytes]:
    """The blocks of a regular file directly in the folder; TooLarge past ``max_bytes``.

    Symlinks are not followed, and devices and FIFOs are refused before any read (O_NONBLOCK
    keeps opening a FIFO from blocking).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(check_name(name), flags, dir_fd=dir_fd)
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
        size = 0
        while size <= max_bytes:
            block = os.read(fd, min(READ_BLOCK, max_bytes + 1 - size))
            if not block:
                break
            size += len(block)
            if size > max_bytes:  # it grew while being read
                raise TooLarge(f"{name} is larger than {max_bytes} bytes")
            yield block
    finally:
        os.close(fd)


def read_regular(dir_fd: int, name: str, max_bytes: int) -> bytes:
    """The bytes of a regular file directly in the folder, at most ``max_bytes`` of them."""
    return b"".join(_blocks(dir_fd, name, max_bytes))


def check_listed_size(name: str, entry: Listed) -> None:
    """Refuse a file listed larger than its kind's cap, before it is opened."""
    cap = max_bytes(name)
    if entry.bytes > cap:
        raise ArtifactError(
            f"{name} is listed with {entry.bytes:,} bytes; a {kind_of(name)} file may have at most "
            f"{cap:,} bytes, so it was not read"
        )


def _verified(name: str, entry: Listed, blocks: Iterable[bytes]) -> None:
    """Refuse blocks whose size or sha256 differs from the file's manifest entry."""
    digest, size = hashlib.sha256(), 0
    try:
        for block in blocks:
            digest.update(block)
            size += len(block)
    except TooLarge as exc:
        raise ArtifactError(
            f"{name} is larger than the {entry.bytes} bytes {MANIFEST} lists, so it cannot match its sha256: tampered"
        ) from exc
    if size != entry.bytes:
        raise ArtifactError(
            f"{name} has {size} bytes, {MANIFEST} lists {entry.bytes}, so it cannot match its sha256: tampered"
        )
    if not hmac.compare_digest(digest.hexdigest(), entry.sha256):
        raise ArtifactError(f"{name} does not match its sha256 in {MANIFEST}: tampered")


def verify_listed(dir_fd: int, name: str, entry: Listed) -> None:
    """Check a listed file against its manifest entry, streamed: its bytes are not kept."""
    check_listed_size(name, entry)
    _verified(name, entry, _blocks(dir_fd, name, entry.bytes))


def read_verified(dir_fd: int, name: str, entry: Listed) -> bytes:
    """A listed file's bytes, read once and checked against its manifest size and sha256."""
    check_listed_size(name, entry)
    blocks: list[bytes] = []
    _verified(name, entry, _collect(_blocks(dir_fd, name, entry.bytes), blocks))
    return b"".join(blocks)


def _collect(blocks: Iterable[bytes], into: list[bytes]) -> Iterator[bytes]:
    """The blocks, each also appended to ``into``."""
    for block in blocks:
        into.append(block)
        yield block
