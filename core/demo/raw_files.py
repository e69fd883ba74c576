"""The RetailRocket-shaped raw CSV files of a generated dataset, plus its label files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from core.demo.generate import DemoDataset
from core.schema import (
    CATEGORY_TREE_COLUMNS,
    EVENT_TYPES,
    ITEM_PROPERTY_COLUMNS,
    ITEM_PROPERTY_FILES,
    RAW_EVENT_COLUMNS,
)

logger = logging.getLogger(__name__)

LABELS_FILE = "abnormal_labels.csv"  # visitorid,kind of abnormal visitors only
LOOKALIKES_FILE = "normal_lookalikes.csv"  # visitorid,kind of normal visitors that look abnormal


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


def write_raw(ds: DemoDataset, raw_dir: str | Path) -> dict:
    """Write the RetailRocket-shaped raw files and the two label files; returns what was written."""
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
        _write_csv(ip_table.slice(half * i, half if i == 0 else len(ip) - half), files[name])

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
        "item_property_rows": len(ip),
        "labels": len(ds.labels),
        "lookalikes": len(ds.lookalikes),
    }
    logger.info("wrote raw demo files to %s: %s", raw_dir, info)
    return info
