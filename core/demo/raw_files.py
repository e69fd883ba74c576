"""The RetailRocket-shaped raw CSV files of a generated dataset, plus its label files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from core.base import arrays
from core.base.schema import (
    CATEGORY_TREE_COLUMNS,
    EVENT_TYPES,
    ITEM_PROPERTY_COLUMNS,
    ITEM_PROPERTY_FILES,
    RAW_EVENT_COLUMNS,
)
from core.demo.generate import DemoDataset
from core.demo.properties import filler_properties

logger = logging.getLogger(__name__)

LABELS_FILE = "abnormal_labels.csv"  # visitorid,kind of abnormal visitors only
LOOKALIKES_FILE = "normal_lookalikes.csv"  # visitorid,kind of normal visitors that look abnormal
# Rows of the real item_properties_part1.csv and part2.csv (20,275,902 in all, ~0.9 GB).
REAL_PROPERTY_ROWS = (10_999_999, 9_275_903)
_FULL_CHUNK_ROWS = 1_000_000  # rows generated and written at a time (memory stays ~0.2 GB)


# --------------------------------------------------------------------------- raw CSV files


def _write_csv(table: pa.Table, path: Path, trailing_newline: bool = True) -> None:
    """CSV with an unquoted header and unquoted values, like the RetailRocket files."""
    with open(path, "wb") as fh:
        fh.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    if not trailing_newline:  # the real events.csv may end without a newline
        with open(path, "r+b") as fh:
            fh.seek(-1, 2)
            if fh.read(1) == b"\n":
                fh.truncate(fh.tell() - 1)


def _write_full_properties(ip_table: pa.Table, paths: list[Path], seed: int, item_ids: np.ndarray) -> int:
    """Property files of the real row counts: the generated rows scattered among filler rows.

    The generated rows (categoryid snapshots and the other properties the build knows) keep
    their order; filler_properties makes the rest, a chunk at a time. Returns the rows written.
    """
    rng = np.random.default_rng([seed, 20150503, 1])  # its own stream: the small files stay as they were
    total = sum(REAL_PROPERTY_ROWS)
    if total < ip_table.num_rows:
        raise ValueError(f"{ip_table.num_rows:,} generated property rows do not fit in {total:,}")
    pos = np.sort(rng.choice(total, size=ip_table.num_rows, replace=False))
    ends = np.cumsum(REAL_PROPERTY_ROWS)
    schema = pa.schema(
        [("timestamp", pa.int64()), ("itemid", pa.int64()), ("property", pa.string()), ("value", pa.string())]
    )
    ip_table = ip_table.cast(schema)
    for path, lo, hi in zip(paths, ends - REAL_PROPERTY_ROWS, ends):
        with open(path, "wb") as fh:
            fh.write((",".join(ITEM_PROPERTY_COLUMNS) + "\n").encode())
            for a in range(int(lo), int(hi), _FULL_CHUNK_ROWS):
                b = min(a + _FULL_CHUNK_ROWS, int(hi))
                i0, i1 = np.searchsorted(pos, [a, b])
                is_base = np.zeros(b - a, bool)
                is_base[pos[i0:i1] - a] = True
                slot = np.empty(b - a, np.int64)
                slot[is_base] = np.arange(i1 - i0)
                slot[~is_base] = (i1 - i0) + np.arange(b - a - (i1 - i0))
                filler = filler_properties(rng, item_ids, b - a - int(i1 - i0))
                chunk = pa.concat_tables([ip_table.slice(i0, i1 - i0), filler]).take(pa.array(slot))
                pacsv.write_csv(chunk, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return total


def write_raw(ds: DemoDataset, raw_dir: str | Path, *, full_properties: bool = False) -> dict:
    """Write the RetailRocket-shaped raw files and the two label files; returns what was written.

    ``full_properties`` writes item properties files of the real size (REAL_PROPERTY_ROWS rows,
    ~0.8 GB) in which the generated rows are scattered among non-category filler rows, so the
    loader pays the real parsing cost; by default they hold the generated rows only.
    """
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([ds.seed, 20150503])
    ev = ds.events
    n = len(ev)
    dup = rng.choice(n, size=min(ds.n_duplicates, n), replace=False)
    rows = rng.permutation(np.concatenate([np.arange(n), dup]))  # unsorted, duplicates scattered
    codes = ev["event"].cat.codes.to_numpy()[rows].astype(np.int64)
    txn = ev["transactionid"].to_numpy()[rows]
    table = pa.table(
        {
            "timestamp": ev["timestamp"].to_numpy()[rows],
            "visitorid": ev["visitorid"].to_numpy()[rows],
            "event": pa.array(list(EVENT_TYPES), pa.string()).take(pa.array(codes)),
            "itemid": ev["itemid"].to_numpy()[rows],
            "transactionid": pa.array(np.nan_to_num(txn, nan=0).astype(np.int64), mask=np.isnan(txn)),
        }
    )
    assert tuple(table.column_names) == RAW_EVENT_COLUMNS
    files = {"events": raw_dir / "events.csv"}
    _write_csv(table, files["events"], trailing_newline=False)

    ip = ds.item_properties
    perm = pa.array(rng.permutation(len(ip)))
    ip_table = pa.table(
        {
            "timestamp": pa.array(ip["timestamp"].to_numpy()),
            "itemid": pa.array(ip["itemid"].to_numpy()),
            "property": pa.array(ip["property"].array),
            "value": pa.array(ip["value"].array),
        }
    ).take(perm)
    assert tuple(ip_table.column_names) == ITEM_PROPERTY_COLUMNS
    half = (len(ip) + 1) // 2
    for i, name in enumerate(ITEM_PROPERTY_FILES):
        files[name] = raw_dir / name
        if not full_properties:
            _write_csv(ip_table.slice(half * i, half if i == 0 else len(ip) - half), files[name])
    n_props = len(ip)
    if full_properties:
        paths = [files[name] for name in ITEM_PROPERTY_FILES]
        n_props = _write_full_properties(ip_table, paths, ds.seed, arrays.unique(ip["itemid"].to_numpy()))

    tree = ds.category_tree
    files["category_tree"] = raw_dir / "category_tree.csv"
    parent = tree["parentid"].astype("Int64")
    _write_csv(
        pa.table(
            {
                "categoryid": pa.array(tree["categoryid"].to_numpy(np.int64)),
                "parentid": pa.array(parent.to_numpy(dtype=np.int64, na_value=0), mask=parent.isna().to_numpy()),
            }
        ),
        files["category_tree"],
    )
    assert tuple(tree.columns) == CATEGORY_TREE_COLUMNS
    # Two label files: every visitor in abnormal_labels.csv is a bot (its consumers rely on that);
    # normal_lookalikes.csv names normal visitors that only look abnormal, for detector reports.
    for key, name, frame in (("labels", LABELS_FILE, ds.labels), ("lookalikes", LOOKALIKES_FILE, ds.lookalikes)):
        files[key] = raw_dir / name
        _write_csv(
            pa.table(
                {
                    "visitorid": pa.array(frame["visitorid"].to_numpy(np.int64)),
                    "kind": pa.array(frame["kind"].astype(str).tolist(), pa.string()),
                }
            ),
            files[key],
        )
    info = {
        "raw_dir": str(raw_dir),
        "files": {k: str(v) for k, v in files.items()},
        "events_rows_written": n + dup.size,
        "duplicates_injected": int(dup.size),
        "item_property_rows": n_props,
        "labels": len(ds.labels),
        "lookalikes": len(ds.lookalikes),
    }
    logger.info("wrote raw demo files to %s: %s", raw_dir, info)
    return info
