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
