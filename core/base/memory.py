"""Giving freed memory back to the operating system, for the long-lived dashboard process.

The dashboard holds one user's 1.4M-row table at a time on a 1 GB host. By default the allocators
keep what a freed table used: glibc raises its mmap threshold to the size of the last freed
block (up to 32 MB), so later blocks land on a heap that fragments and rarely shrinks, and
pyarrow's mimalloc pool keeps its pages. With both settings below a freed table's memory goes
back to the OS, so the next upload fits (figures: docs/PERFORMANCE.md, "Dashboard memory").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
from functools import cache

import pyarrow as pa

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter (malloc.h)
# Blocks from 1 MiB up are mmapped and unmapped on free: a column of 1.4M values is 11 MB.
# Setting it also switches off glibc's dynamic threshold, which would otherwise rise to 32 MB.
MMAP_THRESHOLD_BYTES = 1 << 20
# The build (`python -m core build`, its own process) mmaps blocks from 8 MiB up: the columns of
# the multi-million-row tables its two threads free go back to the OS instead of fragmenting the
# heap (its peak RSS otherwise depends on which phases of the threads meet); 1 MiB, as above, would
# page-fault every mid-size temporary (figures: docs/PERFORMANCE.md, "The whole build").
BUILD_MMAP_THRESHOLD_BYTES = 8 << 20
# "0" turns off every workaround that reaches below a public API: the glibc calls here and the
# dashboard's Streamlit internals (dashboard/internals.py), e.g. to rule them out as a cause.
WORKAROUNDS_ENV = "RECSYS_WORKAROUNDS"


def workarounds_enabled() -> bool:
    """False when $RECSYS_WORKAROUNDS is "0": no glibc calls, no Streamlit internals."""
    return os.environ.get(WORKAROUNDS_ENV, "1").strip() != "0"


@cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (mallopt and malloc_trim exist), else None (macOS, musl)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc only: the attribute lookup is the check
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def use_returning_allocators() -> None:
    """Arrow on the system allocator and glibc mmap for blocks of 1 MiB and more, so a freed
    table's memory goes back to the OS (idempotent; blocks allocated earlier keep their pool)."""
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
    set_mmap_threshold(MMAP_THRESHOLD_BYTES)


def set_mmap_threshold(nbytes: int) -> None:
    """glibc mmaps blocks of ``nbytes`` and more and unmaps them on free (a fixed threshold)."""
    libc = _glibc() if workarounds_enabled() else None
    if libc is not None and not libc.mallopt(M_MMAP_THRESHOLD, nbytes):
        log.warning("mallopt(M_MMAP_THRESHOLD) failed; freed memory may stay with the process")


def release_memory() -> None:
    """Collect garbage, then hand glibc's free heap pages back to the OS (malloc_trim)."""
    gc.collect()
    libc = _glibc() if workarounds_enabled() else None
    if libc is not None:
        libc.malloc_trim(0)
