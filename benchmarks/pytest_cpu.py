"""A pytest plugin that prints where a test run's CPU time goes: start-up, collection, each test.

    python -m pytest -q -m "not e2e" -p benchmarks.pytest_cpu            # the 25 costliest tests
    PYTEST_CPU_TOP=60 python -m pytest -q -m "not e2e" -p benchmarks.pytest_cpu

CPU time is user + system of the pytest process and of the children it waited for, so a busy
machine inflates it far less than wall clock. A test's figure covers its setup, call and
teardown, so a module or session fixture is charged to the first test that uses it. Start-up is
the interpreter, the plugins and the root conftest, before the session starts.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Generator

import pytest

_rows: list[tuple[str, float]] = []
_wall_start = time.perf_counter()


def _cpu() -> float:
    """User + system CPU seconds of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pytest_sessionstart(session: pytest.Session) -> None:
    """Everything before the session: interpreter, imports, plugins, the root conftest."""
    _rows.append(("<start-up>", _cpu()))


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session) -> Generator[None, None, None]:
    """Importing the test modules (assertion rewriting included) and building the items."""
    before = _cpu()
    yield
    _rows.append(("<collection>", _cpu() - before))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """One test: setup, call and teardown."""
    before = _cpu()
    yield
    _rows.append((item.nodeid, _cpu() - before))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The totals, the CPU by test file and the costliest tests."""
    top = int(os.environ.get("PYTEST_CPU_TOP") or 25)
    tests = [(name, cpu) for name, cpu in _rows if not name.startswith("<")]
    fixed = {name: cpu for name, cpu in _rows if name.startswith("<")}
    by_file: dict[str, float] = {}
    for name, cpu in tests:
        path = name.split("::")[0]
        by_file[path] = by_file.get(path, 0.0) + cpu
    write = terminalreporter.write_line
    terminalreporter.section("CPU seconds (user + system)")
    write(f"process so far {_cpu():.1f}, wall since plugin import {time.perf_counter() - _wall_start:.1f} s")
    for name, cpu in fixed.items():
        write(f"{cpu:8.2f}  {name}")
    write(f"{sum(cpu for _, cpu in tests):8.2f}  <{len(tests)} tests>")
    for path, cpu in sorted(by_file.items(), key=lambda row: -row[1])[:12]:
        write(f"{cpu:8.2f}  {path}")
    write(f"-- the {top} costliest tests")
    for name, cpu in sorted(tests, key=lambda row: -row[1])[:top]:
        write(f"{cpu:8.2f}  {name}")
