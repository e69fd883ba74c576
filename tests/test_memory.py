"""core.base.memory: the allocator settings the dashboard makes at start-up, and the release call."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from core.base import memory


def test_returning_allocators_put_arrow_on_the_system_pool_and_can_be_set_twice():
    memory.use_returning_allocators()
    memory.use_returning_allocators()
    assert pa.default_memory_pool().backend_name == "system"
    table = pa.table({"x": np.arange(1_000_000)})  # allocated and freed through the new pool
    assert table.num_rows == 1_000_000
    del table
    memory.release_memory()  # gc and malloc_trim (a no-op where the C library is not glibc)


def test_glibc_calls_are_found_where_the_c_library_is_glibc():
    """mallopt and malloc_trim are looked up by name; on glibc a missing one fails here, not silently."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        return
    assert memory._glibc() is not None, "glibc's mallopt or malloc_trim is gone"


def test_the_switch_keeps_glibc_alone(monkeypatch):
    monkeypatch.setenv(memory.WORKAROUNDS_ENV, "0")

    def fail():
        raise AssertionError("glibc was called with RECSYS_WORKAROUNDS=0")

    monkeypatch.setattr(memory, "_glibc", fail)
    memory.use_returning_allocators()
    memory.release_memory()
