"""The loader's CSV scans next to DuckDB's, on RetailRocket-size files: time and peak RSS of each.

    python benchmarks/bench_properties.py [--raw-dir DIR] [--repeat 3] [--ideas]

Without --raw-dir, writes the `python -m core bench --full-properties` set once into
--dir (default /tmp/bench_properties/raw; kept for the next run): item_properties_part1.csv and
part2.csv of the real 20,275,902 rows, and events.csv of 2.96M rows. Then, each in its own
process (so each peak RSS is that reader's own), alternating, --repeat times:

- properties: ``core.reading.categories.read_category_files`` on both files, next to one DuckDB
  ``read_csv`` of both files with a ``property = 'categoryid'`` filter; both give the
  timestamp, itemid and categoryid of every categoryid row, in file order, as int64 columns;
- events: ``core.reading.data.read_raw_events`` next to DuckDB's ``read_csv`` of events.csv, both into
  a pandas DataFrame.

--ideas adds the other readers measured for the property scan: pyarrow's multi-threaded
``read_csv`` of each whole file then a filter, and the streaming reader the loader used before
(``open_csv``, 1 MiB blocks, one file after the other). Prints one line per run, then a table
of the best and the median of each reader, with the load averages (1, 5, 15 min) of the
machine at the end of each run: wall times grow with other people's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.base.schema import ITEM_PROPERTY_FILES  # noqa: E402
from core.build.bench import peak_rss_mb  # noqa: E402
from core.reading import categories, data  # noqa: E402

PROPERTY_READERS = ("core", "duckdb")
IDEAS = ("pyarrow read_csv + filter", "streaming reader before issue 22")
EVENT_READERS = ("core events", "duckdb events")


def _props(raw: Path) -> list[Path]:
    """The two item properties files."""
    return [raw / name for name in ITEM_PROPERTY_FILES]


def _duckdb_properties(raw: Path) -> pd.DataFrame:
    """DuckDB: one read_csv of both files, the categoryid rows, value cast to BIGINT."""
    import duckdb

    files = [str(p) for p in _props(raw)]
    query = (
        "SELECT timestamp, itemid, CAST(value AS BIGINT) AS categoryid FROM read_csv(?, header = true, "
        "columns = {'timestamp': 'BIGINT', 'itemid': 'BIGINT', 'property': 'VARCHAR', 'value': 'VARCHAR'}) "
        "WHERE property = 'categoryid'"
    )
    return duckdb.connect().execute(query, [files]).df()


def _pyarrow_whole(raw: Path) -> pd.DataFrame:
    """pyarrow's multi-threaded read_csv of each whole file (all columns strings), then a filter."""
    frames = []
    for path in _props(raw):
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(("timestamp", "itemid", "property", "value"), pa.string())
            ),
        )
        sub = table.filter(pc.equal(table.column("property"), "categoryid"))
        frames.append(
            pd.DataFrame({c: pc.cast(sub.column(c), pa.int64()).to_numpy() for c in ("timestamp", "itemid", "value")})
        )
        del table
    return pd.concat(frames, ignore_index=True).rename(columns={"value": "categoryid"})


def _streaming_before(raw: Path) -> pd.DataFrame:
    """The loader before issue 22: open_csv, 1 MiB blocks, one thread, one file after the other."""
    frames = []
    for path in _props(raw):
        opts = pacsv.ConvertOptions(
            column_types=dict.fromkeys(("timestamp", "itemid", "property", "value"), pa.string())
        )
        parts: dict[str, list[np.ndarray]] = {"timestamp": [], "itemid": [], "value": []}
        for batch in pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20), convert_options=opts):
            sub = batch.filter(pc.equal(batch.column("property"), "categoryid"))
            for col, out in parts.items():
                out.append(pc.cast(sub.column(col), pa.int64()).to_numpy())
        frames.append(pd.DataFrame({k: np.concatenate(v) for k, v in parts.items()}))
    return pd.concat(frames, ignore_index=True).rename(columns={"value": "categoryid"})


def _duckdb_events(raw: Path) -> pd.DataFrame:
    """DuckDB's read_csv of events.csv into pandas."""
    import duckdb

    return duckdb.connect().execute("SELECT * FROM read_csv(?, header = true)", [str(raw / "events.csv")]).df()


READERS: dict[str, Any] = {
    "core": lambda raw: categories.read_category_files(_props(raw)),
    "duckdb": _duckdb_properties,
    IDEAS[0]: _pyarrow_whole,
    IDEAS[1]: _streaming_before,
    "core events": lambda raw: data.read_raw_events(raw / "events.csv")[0],
    "duckdb events": _duckdb_events,
}


def _peak_mb() -> float:
    """This process's own peak RSS (VmHWM; ru_maxrss would keep the parent's peak at the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


def run_one(name: str, raw: Path) -> dict[str, Any]:
    """One reader in this process: wall and CPU seconds (all threads), rows, peak RSS and the RSS before."""
    import duckdb  # noqa: F401  (imported by every run, so the baseline RSS is the same)

    before, cpu = _peak_mb(), time.process_time()
    start = time.perf_counter()
    frame = READERS[name](raw)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    checksum = int(pd.util.hash_pandas_object(frame, index=False).sum()) if "events" not in name else 0
    return {
        "reader": name,
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "rows": len(frame),
        "peak_rss_mb": round(_peak_mb()),
        "rss_before_mb": round(before),
        "checksum": checksum,
    }


def run_child(name: str, raw: Path) -> dict[str, Any]:
    """One reader in its own process, with the load averages at its end."""
    out = subprocess.run(
        [sys.executable, __file__, "--one", name, "--raw-dir", str(raw)], check=True, capture_output=True, text=True
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["load_average"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(row), flush=True)
    return row


def make_files(folder: Path, seed: int = 42) -> Path:
    """The `python -m core bench --full-properties` raw files (generated once, then kept)."""
    from core.build import bench
    from core.demo.generate import generate
    from core.demo.raw_files import write_raw

    if not (folder / "events.csv").exists():
        start = time.perf_counter()
        ds = generate(n_events=bench.BENCH_EVENTS, seed=seed, bot_mix=bench.BENCH_MIX)
        write_raw(ds, folder, full_properties=True)
        print(json.dumps({"made": str(folder), "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    return folder


def summary(rows: list[dict[str, Any]]) -> None:
    """Best and median of each reader, property scans first, with the size of the files."""
    print(
        f"\n{'reader':<36}{'best s':>8}{'median s':>10}{'best CPU s':>12}{'peak RSS MiB':>14}{'rows':>12}"
        "  load averages (1, 5, 15 min) at the end of each run"
    )
    for name in dict.fromkeys(r["reader"] for r in rows):
        mine = [r for r in rows if r["reader"] == name]
        secs = [r["seconds"] for r in mine]
        best = min(mine, key=lambda r: r["seconds"])
        print(
            f"{name:<36}{min(secs):>8.2f}{statistics.median(secs):>10.2f}{min(r['cpu_s'] for r in mine):>12.2f}"
            f"{max(r['peak_rss_mb'] for r in mine):>14}"
            f"{best['rows']:>12,}  {'; '.join(str(r['load_average']) for r in mine)}"
        )
    sums = {r["reader"]: r["checksum"] for r in rows if "events" not in r["reader"]}
    print(f"same rows in the same order from every property reader: {len(set(sums.values())) == 1}")


def main() -> None:
    """Make or find the files, run every reader --repeat times (alternating), print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw-dir", default=None, help="a folder with the RetailRocket CSV files")
    parser.add_argument("--dir", default="/tmp/bench_properties/raw", help="where to write the files without --raw-dir")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ideas", action="store_true", help="also the other property readers that were measured")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process: one reader
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, Path(args.raw_dir))))
        return
    raw = Path(args.raw_dir) if args.raw_dir else make_files(Path(args.dir))
    sizes = {p.name: f"{p.stat().st_size / 2**20:,.0f} MiB" for p in [*_props(raw), raw / "events.csv"]}
    print(json.dumps({"files": sizes, "cpus": os.cpu_count()}), flush=True)
    names = PROPERTY_READERS + (IDEAS if args.ideas else ()) + EVENT_READERS
    rows = [run_child(name, raw) for _ in range(args.repeat) for name in names]
    summary(rows)


if __name__ == "__main__":
    main()
