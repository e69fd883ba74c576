"""The README's results and its story about rankers and detectors are the build's RESULTS.md."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from sync_readme import END, START, readme_with_results  # noqa: E402


def test_readme_results_block_is_the_builds_results_md():
    readme = (ROOT / "README.md").read_text()
    results = (ROOT / "recsys_artifacts" / "RESULTS.md").read_text()
    assert readme.count(START) == readme.count(END) == 1
    assert readme == readme_with_results(readme, results), "run: python scripts/sync_readme.py"


def test_the_block_carries_the_serving_rule_and_the_story():
    results = (ROOT / "recsys_artifacts" / "RESULTS.md").read_text()
    assert "**Which ranker is served**" in results and "**What the numbers say**" in results
    assert "| history | recency |" in results and "| history | last_category |" in results


def test_sync_replaces_only_the_block():
    text = f"intro\n{START}\nold\n{END}\noutro\n"
    assert readme_with_results(text, "new\n") == f"intro\n{START}\nnew\n{END}\noutro\n"
