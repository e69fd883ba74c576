"""Reading artifact files safely: relative to one folder, no symlinks, regular files only, capped size."""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ArtifactError
from core.schema import MANIFEST

if TYPE_CHECKING:  # only for annotations: core.manifest imports this module
    from core.manifest import FileEntry

READ_BLOCK = 1 << 20


def check_name(name: str) -> str:
    """A name directly inside the artifact folder: no path separator, no hidden name."""
    if not name or len(name) > 255 or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise ValueError("must be a plain file name inside the artifact folder")
    return name


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
        raise ArtifactError(
            f"{name} is larger than the {entry.bytes} bytes {MANIFEST} lists, so it cannot match its sha256: tampered"
        ) from exc
    if len(data) != entry.bytes:
        raise ArtifactError(
            f"{name} has {len(data)} bytes, {MANIFEST} lists {entry.bytes}, so it cannot match its sha256: tampered"
        )
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), entry.sha256):
        raise ArtifactError(f"{name} does not match its sha256 in {MANIFEST}: tampered")
    return data
