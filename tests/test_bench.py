"""`python -m core bench` end to end at a small size: every stage row, the sizes and the total."""

from __future__ import annotations

import pytest

from core.build import bench

pytestmark = pytest.mark.e2e


def test_bench_reports_sizes_every_build_stage_and_the_whole_build():
    rows = bench.bench(seed=3, n_events=20_000)
    by_stage = {r["stage"]: r for r in rows}
    assert by_stage["events"]["value"] > 15_000 and by_stage["visitors"]["value"] > 5_000
    assert by_stage["candidate rows"]["value"] > 0
    build_stages = [r for r in rows if r["stage"].startswith("  build: ")]
    assert any("honest evaluation" in r["stage"] for r in build_stages) and len(build_stages) >= 10
    total = by_stage["whole build, --engine pandas (own process)"]
    assert total["seconds"] > 0 and total["peak_rss_mb"] > 100
    assert total["seconds"] >= max(r["seconds"] for r in build_stages)
