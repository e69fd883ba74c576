"""Copy the build's recsys_artifacts/RESULTS.md into README.md between the RESULTS markers.

The README's results tables and its story about rankers and detectors are written by
``python -m core build``; this script is the only way they enter the README, and
tests/test_readme.py fails when the two differ. Run from anywhere: ``python scripts/sync_readme.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- RESULTS:START -->", "<!-- RESULTS:END -->"


def readme_with_results(readme: str, results: str) -> str:
    """The README text with the block between the markers replaced by ``results``."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{results.rstrip()}\n{END}{tail}"


def main() -> int:
    """Rewrite README.md in place; prints whether it changed."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = readme_with_results(text, (ROOT / "recsys_artifacts" / "RESULTS.md").read_text())
    readme.write_text(new)
    print("README.md updated" if new != text else "README.md already in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
