"""Peak memory and time of three hostile files (issue 21, cases 3, 6 and 7), each in a fresh process.

    python benchmarks/bench_hostile_files.py              # this checkout
    python benchmarks/bench_hostile_files.py --repo DIR   # another checkout (e.g. before the fix)

- dictionary bomb: a parquet upload of 20,000 rows of one dictionary-encoded 50 KB string, written
  without the Arrow schema, read as the anomaly page reads it (``core.userfiles.uploads.read_upload``);
- skops zip bomb: the served detector with an array of 150,000,000 zeros added, listed in a
  rewritten manifest, loaded by ``core.store.artifacts.load_artifacts``;
- sparse model: a 2 GiB sparse file in place of the ranking model, listed with its true size.

Each case runs in its own Python process and prints the process's peak RSS (VmHWM: unlike
``ru_maxrss`` it starts afresh at exec, not at the parent's size), the RSS before the call
(imports done) and the call's wall time, plus the message the file gets.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
case, target = sys.argv[2], Path(sys.argv[3])

def rss_mb():
    # peak RSS of this process so far, MB (VmHWM)
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

if case == "dictionary_bomb":
    from core.base.errors import DataError
    from core.userfiles.uploads import read_upload
    data = target.read_bytes()
    before, t0 = rss_mb(), time.perf_counter()
    try:
        up = read_upload(target.name, data)
        message = f"accepted: {len(up.features):,} rows"
    except DataError as exc:
        message = f"refused: {exc}"
else:
    from core.store.artifacts import load_artifacts
    name = sys.argv[4]
    before, t0 = rss_mb(), time.perf_counter()
    arts = load_artifacts(target)
    said = [p for p in arts.problems if p.startswith(name)]
    message = f"status {arts.status.get(name)!r}; " + (said[0] if said else "no problem reported")
print(json.dumps({"case": case, "peak_rss_mb": round(rss_mb()), "rss_before_mb": round(before),
                  "seconds": round(time.perf_counter() - t0, 2), "message": message}))
"""


def dictionary_bomb(folder: Path) -> Path:
    """The 20,000 x 50 KB dictionary-encoded parquet, without the Arrow schema (built as a
    dictionary, so this process never holds the 1 GB it expands to)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / "bomb.parquet"
    value = np.random.default_rng(0).integers(97, 123, 50_000, dtype=np.uint8).tobytes().decode()
    column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(20_000, np.int32)), pa.array([value]))
    pq.write_table(pa.table({"visitorid": column}), path, store_schema=False, use_dictionary=True)
    return path


def _relist(arts: Path, name: str, entry: dict) -> None:
    """Rewrite a file's manifest entry, as someone who can write the folder (no key) would."""
    manifest = json.loads((arts / "manifest.json").read_text())
    manifest["files"][name] = entry
    (arts / "manifest.json").write_text(json.dumps(manifest))


def skops_bomb(folder: Path, repo: Path) -> tuple[Path, str]:
    """A copy of the artifacts whose served detector holds 150,000,000 zeros (a ~1.2 MB file)."""
    arts = folder / "arts_skops"
    shutil.copytree(repo / "recsys_artifacts", arts)
    make = (
        "import sys, zipfile, numpy as np, skops.io as sio; sys.path.insert(0, sys.argv[1]);"
        "from core.store.artifacts import load_artifacts; from core.base.schema import DETECTOR; det = load_artifacts(sys.argv[2]).detector;"
        "det.padding_ = np.zeros(150_000_000);"
        "open(sys.argv[2] + '/' + DETECTOR, 'wb').write(sio.dumps(det, compression=zipfile.ZIP_DEFLATED))"
    )
    subprocess.run([sys.executable, "-c", make, str(repo), str(arts)], check=True)
    sys.path.insert(0, str(repo))
    from core.base.schema import DETECTOR
    from core.store.manifest import file_entry

    _relist(arts, DETECTOR, file_entry(arts / DETECTOR))
    print(f"skops bomb: {(arts / DETECTOR).stat().st_size:,} bytes on disk")
    return arts, DETECTOR


def sparse_model(folder: Path, repo: Path) -> tuple[Path, str]:
    """A copy of the artifacts whose ranking model is a 2 GiB sparse file, listed with that size."""
    arts = folder / "arts_sparse"
    shutil.copytree(repo / "recsys_artifacts", arts)
    name = next(p.name for p in arts.glob("task1_ranking_best_*.skops"))
    with open(arts / name, "r+b") as handle:
        handle.truncate(2 << 30)
    _relist(arts, name, {"sha256": "0" * 64, "bytes": 2 << 30})
    return arts, name


def run(repo: Path, case: str, *args: str) -> dict:
    """One case in a fresh process; its JSON line."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(repo), case, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    args = parser.parse_args()
    repo = args.repo.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bomb = dictionary_bomb(folder)
        print(f"dictionary bomb: {bomb.stat().st_size:,} bytes on disk")
        results = [run(repo, "dictionary_bomb", str(bomb))]
        arts, name = skops_bomb(folder, repo)
        results.append(run(repo, "skops_zip_bomb", str(arts), name))
        arts, name = sparse_model(folder, repo)
        results.append(run(repo, "sparse_2gib_model", str(arts), name))
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
