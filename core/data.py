"""RetailRocket loader: raw CSVs -> the prepared events table described in docs/DATA_CONTRACT.md, plus its checks.

Row numbers in error messages: for CSV files they are 1-based data rows (the header is not
counted, so data row N is on file line N + 1); for parquet files and in-memory tables they are
0-based row positions. Every message says which convention it uses.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import DataError
from core.schema import (
    CATEGORY_TREE_COLUMNS,
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_PROPERTY_COLUMNS,
    ITEM_PROPERTY_FILES,
    RAW_EVENT_COLUMNS,
    UNKNOWN_CATEGORY,
)

logger = logging.getLogger(__name__)

EVENTS_FILE = "events.csv"
CATEGORY_TREE_FILE = "category_tree.csv"
CATEGORY_PROPERTY = "categoryid"
DEFAULT_BLOCK_SIZE = 1 << 20  # 1 MiB blocks: measured fastest and smallest (peak RSS grows with it)
MAX_SHOWN = 5

_INT_COLUMNS = ("timestamp", "visitorid", "itemid")
_INT_RE = r"^-?[0-9]+$"
_DIGITS_RE = r"^[0-9]+$"
_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_CSV_ROWS = "1-based data rows, header not counted"
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


# --------------------------------------------------------------------------- error messages


def _show(value: object) -> str:
    """One offending value, quoted and truncated so messages stay short."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _rows_text(rows: Sequence[int] | np.ndarray, values: Sequence[object], convention: str, total: int) -> str:
    """'first offending rows (convention): row 3 = 'abc', ... (N in all)'."""
    shown = ", ".join(f"row {int(r)} = {_show(v)}" for r, v in zip(rows[:MAX_SHOWN], values[:MAX_SHOWN]))
    return f"first offending rows ({convention}): {shown} ({total} offending row(s) in all)"


def _bad_values_error(
    source: str, column: str, problem: str, rows: Sequence[int] | np.ndarray, values: Sequence[object],
    convention: str, total: int, fix: str,
) -> DataError:
    """A DataError naming the file, the column, the first offending rows and the fix."""
    return DataError(
        f"{source}: column '{column}' {problem}; {_rows_text(rows, values, convention, total)}. "
        f"Fix: {fix}"
    )


def _near_matches(missing: Iterable[str], found: Sequence[str]) -> list[str]:
    """Suggestions like "'visitorId' -> 'visitorid'" for misnamed columns."""
    hints = []
    by_fold = {f.strip().casefold(): f for f in found}
    for col in missing:
        if col.casefold() in by_fold:
            hints.append(f"'{by_fold[col.casefold()]}' -> '{col}'")
            continue
        close = difflib.get_close_matches(col, list(found), n=1, cutoff=0.75)
        if close:
            hints.append(f"'{close[0]}' -> '{col}'")
    return hints


def _check_columns(source: str, found: Sequence[str], expected: Sequence[str]) -> None:
    """Raise a DataError when expected columns are missing, with near-match suggestions."""
    missing = [c for c in expected if c not in found]
    if not missing:
        return
    hints = _near_matches(missing, found)
    hint = f" Did you mean: {', '.join(hints)}?" if hints else ""
    raise DataError(
        f"{source}: missing column(s) {missing}; found columns {list(found)}; expected columns "
        f"{list(expected)} (names are case-sensitive).{hint} Fix: rename the header so it holds "
        f"exactly the expected column names."
    )


# --------------------------------------------------------------------------- CSV helpers


def _csv_header(path: Path) -> list[str]:
    """The header of a CSV file; a DataError when the file is empty or has no header."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes). Fix: re-export or re-download it.")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), [])
    if not any(h.strip() for h in header):
        raise DataError(
            f"{path}: the first line is blank, so there is no header. Fix: the first line must be "
            f"the column names."
        )
    return header


def _require_file(path: Path, what: str) -> None:
    """Raise a DataError when a required file is missing."""
    if not path.is_file():
        raise DataError(f"{path}: {what} not found. Fix: provide the file or correct the path.")


def _string_options(columns: Sequence[str]) -> pacsv.ConvertOptions:
    """Read columns as raw strings: no null tokens, so '' stays '' and can be reported."""
    return pacsv.ConvertOptions(
        column_types={c: pa.string() for c in columns},
        include_columns=list(columns),
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )


def _bad_mask(values: pa.Array | pa.ChunkedArray, kind: str) -> np.ndarray:
    """Boolean mask of strings that are not a valid int / digits / float-or-null."""
    if kind == "int":
        ok = pc.match_substring_regex(values, _INT_RE)
    elif kind == "digits":
        ok = pc.match_substring_regex(values, _DIGITS_RE)
    else:  # float: a float literal or one of Arrow's null tokens (read as NaN)
        ok = pc.or_(
            pc.match_substring_regex(pc.utf8_trim_whitespace(values), _FLOAT_RE),
            pc.is_in(values, value_set=pa.array(pacsv.ConvertOptions().null_values, pa.string())),
        )
    return ~np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)


_KIND_TEXT = {
    "int": ("must hold integers (digits with an optional leading '-'); empty values are not allowed",
            "make every value a whole number without decimals, spaces or blanks"),
    "digits": ("must hold a category id made of digits only",
               "make every categoryid value a non-negative whole number"),
    "float": ("must hold numbers or be empty", "leave it empty or write a number"),
}


def _raise_bad_strings(
    source: str, column: str, values: pa.Array | pa.ChunkedArray, kind: str, row_offset: int = 0,
    rows_index: np.ndarray | None = None,
) -> None:
    """Raise a DataError for the first bad strings of a column (CSV 1-based data-row numbers)."""
    bad = _bad_mask(values, kind)
    if not bad.any():
        return
    idx = np.flatnonzero(bad)
    rows = (rows_index[idx] if rows_index is not None else idx) + row_offset + 1
    shown = values.take(pa.array(idx[:MAX_SHOWN])).to_pylist()
    problem, fix = _KIND_TEXT[kind]
    raise _bad_values_error(source, column, problem, rows, shown, _CSV_ROWS, int(bad.sum()), fix)


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
            str(path), "event", f"must be one of {list(EVENT_TYPES)}", idx + 1,
            event.take(pa.array(idx[:MAX_SHOWN])).to_pylist(), _CSV_ROWS, int(bad.sum()),
            "drop those rows or map them to one of the known event types (lower case)",
        )
    df = pd.DataFrame({
        "timestamp": table.column("timestamp").to_numpy().astype(np.int64, copy=False),
        "visitorid": table.column("visitorid").to_numpy().astype(np.int64, copy=False),
        "event": pd.Categorical.from_codes(
            codes.to_numpy(zero_copy_only=False).astype(np.int8), categories=list(EVENT_TYPES)
        ),
        "itemid": table.column("itemid").to_numpy().astype(np.int64, copy=False),
        "transactionid": table.column("transactionid").to_numpy(zero_copy_only=False).astype(np.float64),
    })
    return df, table.num_rows


# --------------------------------------------------------------------------- item properties


def read_category_snapshots(path: str | Path, *, block_size: int | None = None) -> pd.DataFrame:
    """Stream an item_properties CSV and keep its categoryid rows: timestamp, itemid, categoryid.

    Reads block by block (memory bounded by the block size, not the ~900 MB file); every column
    is read as a string and only the categoryid rows are converted, so other properties' values
    never matter. Rows stay in file order.
    """
    path = Path(path)
    _require_file(path, "the item properties file")
    header = _csv_header(path)
    _check_columns(str(path), header, ITEM_PROPERTY_COLUMNS)
    read_opts = pacsv.ReadOptions(block_size=block_size or DEFAULT_BLOCK_SIZE)
    parts: dict[str, list[np.ndarray]] = {"timestamp": [], "itemid": [], "categoryid": []}
    offset = 0  # data rows before the current batch
    try:
        reader = pacsv.open_csv(path, read_options=read_opts,
                                convert_options=_string_options(ITEM_PROPERTY_COLUMNS))
        for batch in reader:
            mask = pc.equal(batch.column("property"), CATEGORY_PROPERTY)
            rows = np.asarray(pc.indices_nonzero(mask).to_numpy(), dtype=np.int64)
            if len(rows):
                sub = batch.filter(mask)
                for col, kind, out in (("timestamp", "int", "timestamp"), ("itemid", "int", "itemid"),
                                       ("value", "digits", "categoryid")):
                    values = sub.column(col)
                    _raise_bad_strings(str(path), col, values, kind, offset, rows)
                    parts[out].append(pc.cast(values, pa.int64()).to_numpy())
            offset += batch.num_rows
    except pa.ArrowInvalid as exc:
        raise DataError(
            f"{path}: the CSV cannot be parsed or converted near data row {offset + 1} ({_CSV_ROWS}) "
            f"({exc}). Fix: repair the file."
        ) from exc
    if offset == 0:
        raise DataError(f"{path}: the file has a header but no data rows. Fix: provide the rows "
                        f"or remove the file (it is optional).")
    return pd.DataFrame({
        k: (np.concatenate(v) if v else np.empty(0, np.int64)).astype(np.int64, copy=False)
        for k, v in parts.items()
    })


# --------------------------------------------------------------------------- as-of join


def asof_categories(
    ev_ts: np.ndarray, ev_item: np.ndarray, snap_ts: np.ndarray, snap_item: np.ndarray,
    snap_cat: np.ndarray,
) -> np.ndarray:
    """Category of each event: latest snapshot at or before it, else the item's earliest, else -1.

    Snapshots of one item that share a timestamp: the last one in file (input) order wins, both
    for the as-of match and for the earliest-snapshot fallback. Output is aligned with the events
    (same length and order; nothing duplicated or dropped).
    """
    ev_ts = np.asarray(ev_ts, dtype=np.int64)
    ev_item = np.asarray(ev_item, dtype=np.int64)
    snap_ts = np.asarray(snap_ts, dtype=np.int64)
    snap_item = np.asarray(snap_item, dtype=np.int64)
    snap_cat = np.asarray(snap_cat, dtype=np.int64)
    if len(ev_ts) != len(ev_item) or not (len(snap_ts) == len(snap_item) == len(snap_cat)):
        raise DataError("asof_categories: event arrays and snapshot arrays must have equal lengths")
    out = np.full(len(ev_ts), UNKNOWN_CATEGORY, dtype=np.int64)
    if len(snap_ts) == 0 or len(ev_ts) == 0:
        return out

    # Stable sort by (item, timestamp); among equal keys keep only the last in input order.
    order = np.lexsort((snap_ts, snap_item))
    s_item, s_ts, s_cat = snap_item[order], snap_ts[order], snap_cat[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (s_item[1:] != s_item[:-1]) | (s_ts[1:] != s_ts[:-1])
    s_item, s_ts, s_cat = s_item[last], s_ts[last], s_cat[last]

    # Dense codes so one sorted int64 key (item code, timestamp rank) serves every item at once.
    items = np.unique(s_item)
    times = np.unique(s_ts)
    s_code = np.searchsorted(items, s_item)
    width = np.int64(len(times) + 1)
    s_key = s_code * width + np.searchsorted(times, s_ts, side="right")

    e_code = np.searchsorted(items, ev_item)
    known = e_code < len(items)
    known[known] = items[e_code[known]] == ev_item[known]
    e_code, e_ts = e_code[known], ev_ts[known]
    # Rank = number of distinct snapshot times <= the event time, so "at or before" matches.
    e_key = e_code * width + np.searchsorted(times, e_ts, side="right")
    pos = np.searchsorted(s_key, e_key, side="right") - 1
    group_start = np.searchsorted(s_code, e_code, side="left")
    before_first = pos < group_start  # event precedes every snapshot of its item
    pos[before_first] = group_start[before_first]
    out[known] = s_cat[pos]
    return out


# --------------------------------------------------------------------------- load_raw


def read_category_tree(path: str | Path) -> pd.DataFrame:
    """Read category_tree.csv: categoryid int64, parentid Int64 (NA for roots)."""
    path = Path(path)
    _require_file(path, "the category tree file")
    header = _csv_header(path)
    _check_columns(str(path), header, CATEGORY_TREE_COLUMNS)
    try:
        table = pacsv.read_csv(path, convert_options=_string_options(CATEGORY_TREE_COLUMNS))
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: the CSV cannot be parsed ({exc}). Fix: repair the file.") from exc
    if table.num_rows == 0:
        raise DataError(f"{path}: the file has a header but no data rows. Fix: provide the rows "
                        f"or remove the file.")
    cat, parent = table.column("categoryid"), table.column("parentid")
    _raise_bad_strings(str(path), "categoryid", cat, "digits")
    parent_null = pc.equal(pc.utf8_trim_whitespace(parent), "")
    parent_filled = pc.if_else(parent_null, "0", parent)
    try:
        _raise_bad_strings(str(path), "parentid", parent_filled, "digits")
    except DataError as exc:
        raise DataError(f"{exc} (an empty parentid marks a root)") from None
    parent_ids = pd.array(pc.cast(parent_filled, pa.int64()).to_numpy(), dtype="Int64")
    parent_ids[np.asarray(parent_null.to_numpy(zero_copy_only=False), dtype=bool)] = pd.NA
    return pd.DataFrame({"categoryid": pc.cast(cat, pa.int64()).to_numpy().astype(np.int64),
                         "parentid": parent_ids})


def load_raw_with_report(
    raw_dir: str | Path, *, block_size: int | None = None
) -> tuple[pd.DataFrame, LoadReport]:
    """Load a RetailRocket directory into the prepared events table and its LoadReport."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir}: the raw data directory does not exist. Fix: pass the folder "
                        f"that holds {EVENTS_FILE}.")
    events_path = raw_dir / EVENTS_FILE
    if not events_path.is_file():
        present = sorted(p.name for p in raw_dir.iterdir())[:20]
        raise DataError(f"{events_path}: the required file {EVENTS_FILE} is missing; the folder "
                        f"holds {present}. Fix: put the RetailRocket {EVENTS_FILE} there.")
    events, rows_read = read_raw_events(events_path)
    dup = events.duplicated(keep="first").to_numpy()
    if dup.any():
        events = events.loc[~dup].reset_index(drop=True)

    snaps = [read_category_snapshots(raw_dir / name, block_size=block_size)
             for name in ITEM_PROPERTY_FILES if (raw_dir / name).is_file()]
    snap = pd.concat(snaps, ignore_index=True) if snaps else None
    n_snap = 0 if snap is None else len(snap)
    if snap is None:
        logger.warning("%s: no item properties files, every categoryid is %d", raw_dir, UNKNOWN_CATEGORY)
        cats = np.full(len(events), UNKNOWN_CATEGORY, dtype=np.int64)
    else:
        cats = asof_categories(events["timestamp"].to_numpy(), events["itemid"].to_numpy(),
                               snap["timestamp"].to_numpy(), snap["itemid"].to_numpy(),
                               snap["categoryid"].to_numpy())
    events["categoryid"] = cats
    events = events[list(EVENT_COLUMNS)]

    tree_path = raw_dir / CATEGORY_TREE_FILE
    if tree_path.is_file():  # optional; checked so a broken tree is reported here, not later
        logger.info("%s: %d categories", tree_path, len(read_category_tree(tree_path)))

    report = LoadReport(
        rows_read=rows_read,
        duplicates_dropped=int(dup.sum()),
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
    num = pd.to_numeric(s, errors="coerce").astype("float64") if not pd.api.types.is_float_dtype(
        s.dtype) else s.astype("float64")
    vals = num.to_numpy()
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(vals) | (vals != np.round(vals)) | (np.abs(vals) > 2.0**63 - 1)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise _bad_values_error(
            source, col, "must hold whole numbers (no NaN, no fraction)", idx,
            s.iloc[idx[:MAX_SHOWN]].tolist(), _POS_ROWS, int(bad.sum()),
            "drop or repair those rows; ids and timestamps are int64",
        )
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.to_numpy(dtype=np.int64, na_value=0)
    if pd.api.types.is_float_dtype(s.dtype):
        return vals.astype(np.int64)
    # Strings: parse exactly (a float round-trip would lose precision beyond 2**53).
    return pd.to_numeric(s, errors="raise").astype(np.int64).to_numpy()


def validate_events(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check and coerce a prepared events table; returns EVENT_COLUMNS with contract dtypes."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    _check_columns(source, [str(c) for c in df.columns], EVENT_COLUMNS)
    if len(df) == 0:
        raise DataError(f"{source}: the events table has no rows. Fix: provide events.")
    out = {col: _coerce_int(df, col, source) for col in ("timestamp", "visitorid", "itemid", "categoryid")}

    cat = out["categoryid"]
    bad = cat < UNKNOWN_CATEGORY
    if bad.any():
        idx = np.flatnonzero(bad)
        raise _bad_values_error(
            source, "categoryid", f"must be >= 0 or {UNKNOWN_CATEGORY} (unknown)", idx,
            cat[idx[:MAX_SHOWN]].tolist(), _POS_ROWS, int(bad.sum()),
            f"use {UNKNOWN_CATEGORY} for an unknown category",
        )

    ev = df["event"]
    ev_str = ev.astype("string") if not isinstance(ev.dtype, pd.CategoricalDtype) else ev
    codes = pd.Categorical(ev_str, categories=list(EVENT_TYPES)).codes
    bad = codes < 0
    if bad.any():
        idx = np.flatnonzero(bad)
        raise _bad_values_error(
            source, "event", f"must be one of {list(EVENT_TYPES)}", idx,
            ev.iloc[idx[:MAX_SHOWN]].tolist(), _POS_ROWS, int(bad.sum()),
            "drop those rows or map them to a known event type",
        )

    txn = df["transactionid"]
    txn_num = pd.to_numeric(txn, errors="coerce").astype("float64")
    bad = (txn_num.isna() & txn.notna()).to_numpy()
    if bad.any():
        idx = np.flatnonzero(bad)
        raise _bad_values_error(
            source, "transactionid", "must be numeric or NaN", idx, txn.iloc[idx[:MAX_SHOWN]].tolist(),
            _POS_ROWS, int(bad.sum()), "leave it NaN or store the numeric transaction id",
        )
    result = pd.DataFrame({
        "timestamp": out["timestamp"],
        "visitorid": out["visitorid"],
        "event": pd.Categorical.from_codes(codes, categories=list(EVENT_TYPES)),
        "itemid": out["itemid"],
        "transactionid": txn_num.to_numpy(),
        "categoryid": cat,
    }, index=df.index)
    result.attrs = dict(df.attrs)
    return result


def read_events(path: str | Path) -> pd.DataFrame:
    """Read a prepared events parquet file and validate it."""
    path = Path(path)
    _require_file(path, "the prepared events parquet file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable parquet file ({exc}). Fix: rebuild it with "
                        f"write_events or `python -m core build`.") from exc
    return validate_events(table.to_pandas(), str(path))


def write_events(df: pd.DataFrame, path: str | Path) -> None:
    """Write prepared events as parquet (zstd, no index) after validating them."""
    path = Path(path)
    clean = validate_events(df, "write_events input").reset_index(drop=True)
    clean.attrs = {}  # attrs would be serialised into parquet metadata; the report is not data
    path.parent.mkdir(parents=True, exist_ok=True)
    clean.to_parquet(path, compression="zstd", index=False)


def fingerprint(df: pd.DataFrame) -> str:
    """16 hex chars of sha256 over the row hashes of the event columns (order-sensitive)."""
    _check_columns("fingerprint input", [str(c) for c in df.columns], EVENT_COLUMNS)
    hashes = pd.util.hash_pandas_object(df[list(EVENT_COLUMNS)], index=False).to_numpy()
    return hashlib.sha256(np.ascontiguousarray(hashes, dtype="<u8").tobytes()).hexdigest()[:16]
