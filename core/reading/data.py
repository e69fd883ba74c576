"""RetailRocket loader: raw CSVs -> the prepared events table described in docs/DATA_CONTRACT.md, plus its checks.

Row numbers in error messages: for CSV files they are 1-based data rows (the header is not
counted, so data row N is on file line N + 1); for parquet files and in-memory tables they are
0-based row positions. Every message says which convention it uses.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.base.distinct import duplicated_rows
from core.base.errors import DataError
from core.base.schema import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_PROPERTY_FILES,
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    RAW_EVENT_COLUMNS,
    UNKNOWN_CATEGORY,
)
from core.reading.categories import (
    asof_categories,
    read_category_files,
    read_category_tree,
)
from core.reading.csv_checks import (
    _CSV_ROWS,
    MAX_SHOWN,
    _bad_values_error,
    _check_columns,
    _csv_header,
    _raise_bad_strings,
    _require_file,
    _string_options,
)

logger = logging.getLogger(__name__)

EVENTS_FILE = "events.csv"
CATEGORY_TREE_FILE = "category_tree.csv"

_INT_COLUMNS = ("timestamp", "visitorid", "itemid")
_POS_ROWS = "0-based row positions"
_RAW_EVENT_TYPES = {
    "timestamp": pa.int64(),
    "visitorid": pa.int64(),
    "event": pa.string(),
    "itemid": pa.int64(),
    "transactionid": pa.float64(),
}


@dataclass(frozen=True)
class LoadReport:
    """What load_raw read, dropped and kept."""

    rows_read: int
    duplicates_dropped: int
    events_kept: int
    visitors: int
    items: int
    unknown_category_events: int
    category_snapshots: int

    def as_dict(self) -> dict[str, int]:
        """The report as a plain dict of ints."""
        return {k: int(v) for k, v in asdict(self).items()}


# --------------------------------------------------------------------------- events.csv


def _diagnose_events(path: Path, arrow_error: Exception | None) -> DataError:
    """Re-read the typed columns as strings to name the first bad rows of a failed typed read."""
    cols = list(RAW_EVENT_COLUMNS)
    try:
        table = pacsv.read_csv(path, convert_options=_string_options(cols))
    except pa.ArrowException as exc:
        return DataError(f"{path}: the CSV cannot be parsed ({exc}). Fix: repair the file.")
    for col in cols:
        if col == "event":
            continue
        kind = "float" if col == "transactionid" else "int"
        try:
            _raise_bad_strings(str(path), col, table.column(col), kind)
        except DataError as exc:
            return exc
    return DataError(
        f"{path}: the values cannot be converted to the expected types {dict(_RAW_EVENT_TYPES)} "
        f"({arrow_error}). Fix: repair the file (e.g. an integer too large for int64)."
    )


def read_raw_events(path: str | Path) -> tuple[pd.DataFrame, int]:
    """Read and check a raw events.csv; returns (events in file order, rows read)."""
    path = Path(path)
    _require_file(path, "the events file")
    header = _csv_header(path)
    _check_columns(str(path), header, RAW_EVENT_COLUMNS)
    opts = pacsv.ConvertOptions(column_types=_RAW_EVENT_TYPES, include_columns=list(RAW_EVENT_COLUMNS))
    try:
        table = pacsv.read_csv(path, convert_options=opts)
    except pa.ArrowInvalid as exc:
        if "conversion error" in str(exc):
            raise _diagnose_events(path, exc) from exc
        raise DataError(f"{path}: the CSV cannot be parsed ({exc}). Fix: repair the file.") from exc
    if table.num_rows == 0:
        raise DataError(f"{path}: the file has a header but no data rows. Fix: provide the events.")
    # Arrow reads an empty integer field as null instead of failing: that is bad input too.
    if any(table.column(c).null_count for c in _INT_COLUMNS):
        raise _diagnose_events(path, None)

    event = table.column("event")
    codes = pc.index_in(event, value_set=pa.array(EVENT_TYPES, pa.string()))
    if codes.null_count:
        bad = np.asarray(codes.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        idx = np.flatnonzero(bad)
        raise _bad_values_error(
            str(path),
            "event",
            f"must be one of {list(EVENT_TYPES)}",
            idx + 1,
            event.take(pa.array(idx[:MAX_SHOWN])).to_pylist(),
            _CSV_ROWS,
            int(bad.sum()),
            "drop those rows or map them to one of the known event types (lower case)",
        )
    df = pd.DataFrame(
        {
            "timestamp": table.column("timestamp").to_numpy().astype(np.int64, copy=False),
            "visitorid": table.column("visitorid").to_numpy().astype(np.int64, copy=False),
            "event": pd.Categorical.from_codes(
                codes.to_numpy(zero_copy_only=False).astype(np.int8), categories=list(EVENT_TYPES)
            ),
            "itemid": table.column("itemid").to_numpy().astype(np.int64, copy=False),
            "transactionid": table.column("transactionid").to_numpy(zero_copy_only=False).astype(np.float64),
        }
    )
    return df, table.num_rows


# --------------------------------------------------------------------------- load_raw


def drop_exact_duplicates(events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(events without exact duplicate rows, how many were dropped): the first occurrence is kept,
    file order too. The loader's rule, also applied to raw events uploaded to the dashboard."""
    dup = duplicated_rows(events)
    if not dup.any():
        return events, 0
    return events.loc[~dup].reset_index(drop=True), int(dup.sum())


def load_raw_with_report(raw_dir: str | Path, *, block_size: int | None = None) -> tuple[pd.DataFrame, LoadReport]:
    """Load a RetailRocket directory into the prepared events table and its LoadReport."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(
            f"{raw_dir}: the raw data directory does not exist. Fix: pass the folder that holds {EVENTS_FILE}."
        )
    events_path = raw_dir / EVENTS_FILE
    if not events_path.is_file():
        present = sorted(p.name for p in raw_dir.iterdir())[:20]
        raise DataError(
            f"{events_path}: the required file {EVENTS_FILE} is missing; the folder "
            f"holds {present}. Fix: put the RetailRocket {EVENTS_FILE} there."
        )
    events, rows_read = read_raw_events(events_path)
    events, n_duplicates = drop_exact_duplicates(events)

    prop_files = [raw_dir / name for name in ITEM_PROPERTY_FILES if (raw_dir / name).is_file()]
    snap = read_category_files(prop_files, block_size=block_size) if prop_files else None
    n_snap = 0 if snap is None else len(snap)
    if snap is None:
        logger.warning("%s: no item properties files, every categoryid is %d", raw_dir, UNKNOWN_CATEGORY)
        cats = np.full(len(events), UNKNOWN_CATEGORY, dtype=np.int64)
    else:
        cats = asof_categories(
            events["timestamp"].to_numpy(),
            events["itemid"].to_numpy(),
            snap["timestamp"].to_numpy(),
            snap["itemid"].to_numpy(),
            snap["categoryid"].to_numpy(),
        )
    events["categoryid"] = cats
    events = events[list(EVENT_COLUMNS)]

    tree_path = raw_dir / CATEGORY_TREE_FILE
    if tree_path.is_file():  # optional; checked so a broken tree is reported here, not later
        logger.info("%s: %d categories", tree_path, len(read_category_tree(tree_path)))

    report = LoadReport(
        rows_read=rows_read,
        duplicates_dropped=n_duplicates,
        events_kept=len(events),
        visitors=int(events["visitorid"].nunique()),
        items=int(events["itemid"].nunique()),
        unknown_category_events=int((cats == UNKNOWN_CATEGORY).sum()),
        category_snapshots=n_snap,
    )
    logger.info("loaded %s: %s", raw_dir, report.as_dict())
    events.attrs["load_report"] = report.as_dict()
    return events, report


def load_raw(raw_dir: str | Path, *, block_size: int | None = None) -> pd.DataFrame:
    """Prepared events of a RetailRocket directory; the report is in df.attrs['load_report']."""
    return load_raw_with_report(raw_dir, block_size=block_size)[0]


# --------------------------------------------------------------------------- prepared events


def _coerce_int(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    """An int64 column from ints, whole floats or numeric strings; a DataError otherwise."""
    s = df[col]
    if pd.api.types.is_bool_dtype(s.dtype):
        raise DataError(f"{source}: column '{col}' is boolean, expected int64. Fix: store integers.")
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        return s.to_numpy(dtype=np.int64)
    num = (
        pd.to_numeric(s, errors="coerce").astype("float64")
        if not pd.api.types.is_float_dtype(s.dtype)
        else s.astype("float64")
    )
    vals = num.to_numpy()
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(vals) | (vals != np.round(vals)) | (np.abs(vals) > 2.0**63 - 1)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise _bad_values_error(
            source,
            col,
            "must hold whole numbers (no NaN, no fraction)",
            idx,
            s.iloc[idx[:MAX_SHOWN]].tolist(),
            _POS_ROWS,
            int(bad.sum()),
            "drop or repair those rows; ids and timestamps are int64",
        )
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.to_numpy(dtype=np.int64, na_value=0)
    if pd.api.types.is_float_dtype(s.dtype):
        return vals.astype(np.int64)
    # Strings: parse exactly (a float round-trip would lose precision beyond 2**53).
    return pd.to_numeric(s, errors="raise").astype(np.int64).to_numpy()


def _check_timestamps(ts: np.ndarray, source: str) -> None:
    """Refuse timestamps outside 1970..2100, the API's bounds too (core.base.schema)."""
    bad = (ts < MIN_TIMESTAMP_MS) | (ts > MAX_TIMESTAMP_MS)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise _bad_values_error(
            source,
            "timestamp",
            f"must lie between 1970-01-01 and 2100-01-01 (Unix milliseconds {MIN_TIMESTAMP_MS} to "
            f"{MAX_TIMESTAMP_MS:,})",
            idx,
            ts[idx[:MAX_SHOWN]].tolist(),
            _POS_ROWS,
            int(bad.sum()),
            "store Unix time in milliseconds (seconds x 1000), and drop rows without a real time",
        )


def validate_events(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check and coerce a prepared events table; returns EVENT_COLUMNS with contract dtypes."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    _check_columns(source, [str(c) for c in df.columns], EVENT_COLUMNS)
    if len(df) == 0:
        raise DataError(f"{source}: the events table has no rows. Fix: provide events.")
    out = {col: _coerce_int(df, col, source) for col in ("timestamp", "visitorid", "itemid", "categoryid")}
    _check_timestamps(out["timestamp"], source)

    cat = out["categoryid"]
    bad = cat < UNKNOWN_CATEGORY
    if bad.any():
        idx = np.flatnonzero(bad)
        raise _bad_values_error(
            source,
            "categoryid",
            f"must be >= 0 or {UNKNOWN_CATEGORY} (unknown)",
            idx,
            cat[idx[:MAX_SHOWN]].tolist(),
            _POS_ROWS,
            int(bad.sum()),
            f"use {UNKNOWN_CATEGORY} for an unknown category",
        )

    ev = df["event"]
    ev_str = ev.astype("string") if not isinstance(ev.dtype, pd.CategoricalDtype) else ev
    codes = pd.Categorical(ev_str, categories=list(EVENT_TYPES)).codes
    bad = codes < 0
    if bad.any():
        idx = np.flatnonzero(bad)
        raise _bad_values_error(
            source,
            "event",
            f"must be one of {list(EVENT_TYPES)}",
            idx,
            ev.iloc[idx[:MAX_SHOWN]].tolist(),
            _POS_ROWS,
            int(bad.sum()),
            "drop those rows or map them to a known event type",
        )

    txn = df["transactionid"]
    txn_num = pd.to_numeric(txn, errors="coerce").astype("float64")
    bad = (txn_num.isna() & txn.notna()).to_numpy()
    if bad.any():
        idx = np.flatnonzero(bad)
        raise _bad_values_error(
            source,
            "transactionid",
            "must be numeric or NaN",
            idx,
            txn.iloc[idx[:MAX_SHOWN]].tolist(),
            _POS_ROWS,
            int(bad.sum()),
            "leave it NaN or store the numeric transaction id",
        )
    result = pd.DataFrame(
        {
            "timestamp": out["timestamp"],
            "visitorid": out["visitorid"],
            "event": pd.Categorical.from_codes(codes, categories=list(EVENT_TYPES)),
            "itemid": out["itemid"],
            "transactionid": txn_num.to_numpy(),
            "categoryid": cat,
        },
        index=df.index,
    )
    result.attrs = dict(df.attrs)
    return result


def read_events(path: str | Path) -> pd.DataFrame:
    """Read a prepared events parquet file and validate it."""
    path = Path(path)
    _require_file(path, "the prepared events parquet file")
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{path}: not a readable parquet file ({exc}). Fix: rebuild it with write_events or `python -m core build`."
        ) from exc
    return validate_events(table.to_pandas(), str(path))


def write_events(df: pd.DataFrame, path: str | Path) -> None:
    """Write prepared events as parquet (zstd, no index) after validating them."""
    path = Path(path)
    clean = validate_events(df, "write_events input").reset_index(drop=True)
    clean.attrs = {}  # attrs would be serialised into parquet metadata; the report is not data
    path.parent.mkdir(parents=True, exist_ok=True)
    clean.to_parquet(path, compression="zstd", index=False, write_page_checksum=True)  # checked on read


def fingerprint(df: pd.DataFrame) -> str:
    """16 hex chars of sha256 over the row hashes of the event columns (order-sensitive)."""
    _check_columns("fingerprint input", [str(c) for c in df.columns], EVENT_COLUMNS)
    hashes = pd.util.hash_pandas_object(df[list(EVENT_COLUMNS)], index=False).to_numpy()
    return hashlib.sha256(np.ascontiguousarray(hashes, dtype="<u8").tobytes()).hexdigest()[:16]
