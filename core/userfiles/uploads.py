"""Reading uploaded tables safely: hostile and broken files are refused before they cost memory.

An upload is either a user-feature table (visitorid + the 16 features) or raw RetailRocket events
(timestamp, visitorid, event, itemid, transactionid[, categoryid]); raw events are turned into
features with the build's own ``core.anomaly.features.user_features``. Limits come from the dashboard's
1 GB memory budget (README, "Upload limits"): parquet files are checked on their footer (row count,
uncompressed size, column types) and CSV files on their line count, before anything is decoded.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import PurePath

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.base.errors import DataError
from core.base.schema import EVENT_COLUMNS, RAW_EVENT_COLUMNS, UNKNOWN_CATEGORY
from core.reading.csv_checks import renumbered

UPLOAD_EXTENSIONS: tuple[str, ...] = (".parquet", ".pq", ".csv")
# Sized against the 1 GB budget (README, "Upload limits"); benchmarks/bench_dashboard_upload.py checks them.
MAX_FEATURE_ROWS = 1_500_000  # RetailRocket has 1.41M visitors
MAX_EVENT_ROWS = 2_000_000  # the most raw events whose features fit the 1 GB budget (docs/PERFORMANCE.md)
MAX_COLUMNS = 64
MAX_UNCOMPRESSED_MB = 400  # decoded parquet size: 1.5M feature rows are ~210 MB, 2M events ~100 MB
MAX_UPLOAD_MB = 150  # a 1.5M-row features CSV is ~140 MB; its bytes sit next to the table while read
MAX_HEADER_BYTES = 1 << 16
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
MAGIC = {
    b"\x1f\x8b": "gzip-compressed",
    b"PK\x03\x04": "a zip archive (or an Excel .xlsx workbook)",
    b"PAR1": "a parquet file",
    b"\xff\xfe": "UTF-16 text",
    b"\xfe\xff": "UTF-16 text",
    b"BZh": "bzip2-compressed",
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
}
REPEATED_NAME = re.compile(r"(.+)\.(\d+)")


@dataclass
class Upload:
    """A read upload: the feature table to validate and score, what the file was, and notes."""

    features: pd.DataFrame
    kind: str  # "features" or "events"
    n_events: int = 0
    notes: list[str] = field(default_factory=list)
    events: bytes | None = None  # raw uploads: the prepared, de-duplicated events (core.userfiles.export.pack_events)
    duplicates_dropped: int = 0


def _what_it_is(data: bytes) -> str | None:
    """'gzip-compressed', 'a zip archive', ... from the magic bytes; None for anything else."""
    for magic, what in MAGIC.items():
        if data.startswith(magic):
            return what
    return None


def _check_names(name: str, names: list[str]) -> None:
    """Refuse repeated, pandas-renamed repeated (events.1) and too many column names."""
    if len(names) > MAX_COLUMNS:
        raise DataError(
            f"{name!r} has {len(names)} columns; at most {MAX_COLUMNS} are accepted. "
            "Upload visitorid and the 16 features (or the raw event columns) only."
        )
    seen: set[str] = set()
    for col in names:  # a loop over the header, not the rows
        if col in seen:
            raise DataError(
                f"{name!r} repeats the column name {col!r}; each column must appear once. Remove or rename the copy."
            )
        seen.add(col)
    for col in names:
        match = REPEATED_NAME.fullmatch(col)
        if match and match.group(1) in seen:
            raise DataError(
                f"{name!r} has both {match.group(1)!r} and {col!r}: {col!r} is how pandas renames a "
                f"repeated {match.group(1)!r} column. Keep one of them."
            )


def kind_of(names: list[str]) -> str:
    """'events' for raw RetailRocket events (an event and a timestamp column), else 'features'."""
    return "events" if {"event", "timestamp"} <= set(names) else "features"


def _row_limit(name: str, kind: str, n_rows: int, limits: bool = True) -> None:
    """Refuse more rows than the memory budget allows for this kind of table (unless ``limits`` is off)."""
    limit = MAX_EVENT_ROWS if kind == "events" else MAX_FEATURE_ROWS
    if limits and n_rows > limit:
        what = "events" if kind == "events" else "feature rows"
        raise DataError(
            f"{name!r} has {n_rows:,} {what}; the dashboard accepts at most {limit:,} "
            "(its memory budget is 1 GB). Split the file, or score it with the API in batches."
        )


_REFUSED_TYPES = (
    (pa.types.is_boolean, "boolean (true/false)"),
    (pa.types.is_temporal, "a date, time or duration"),
    (
        lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t),
        "binary (bytes)",
    ),
    (lambda t: pa.types.is_nested(t), "nested (list, struct or map)"),
)


def _refused_type(t: pa.DataType) -> str | None:
    """Why an Arrow column type cannot hold a count, a rate or an id; None when it can."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    for test, what in _REFUSED_TYPES:
        if test(t):
            return what
    return None


def _check_types(name: str, schema: pa.Schema) -> None:
    """Refuse columns whose type is not numbers or text, naming each of them."""
    bad = [(f.name, why) for f in schema if (why := _refused_type(f.type)) is not None]
    if bad:
        listed = "; ".join(f"{col!r} is {why}" for col, why in bad)
        raise DataError(
            f"{name!r}: {listed}. Every column must hold numbers (ids, counts, rates) or, for raw "
            "events, text event names; convert them (timestamps as Unix milliseconds) and re-upload."
        )


def _is_text(t: pa.DataType) -> bool:
    """True for a string column (plain or dictionary-encoded)."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _fixed_bytes_per_row(schema: pa.Schema) -> int:
    """Decoded bytes per row of every column but the text values: a dictionary-encoded column of
    one repeated number is tiny on disk but 8 bytes a row once read."""
    total = 0
    for f in schema:  # a loop over the columns, not the rows
        t = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        total += 8 if _is_text(t) else max(t.bit_width // 8, 1)  # a text cell: its offset / pointer
    return total


def _text_bytes(table: pa.Table) -> int:
    """Bytes of the text columns' values once their dictionaries are expanded."""
    total = 0
    for col in table.columns:
        if not pa.types.is_dictionary(col.type):
            continue
        for chunk in col.chunks:  # a dictionary's value lengths, taken by its indices, summed
            lengths = pc.take(pc.binary_length(chunk.dictionary), chunk.indices)
            total += pc.sum(lengths).as_py() or 0
    return total


def _check_decoded(name: str, size: int) -> None:
    """Refuse a table larger than MAX_UNCOMPRESSED_MB once decoded."""
    if size > MAX_UNCOMPRESSED_MB * 2**20:
        raise DataError(
            f"{name!r} expands to {size / 2**20:,.0f} MB when decoded; at most {MAX_UNCOMPRESSED_MB} MB "
            "are accepted. Drop unused columns, or split the file."
        )


def _pandas_metadata_ok(table: pa.Table) -> str | None:
    """None when the table's pandas metadata converts; else why it does not (tried on no rows)."""
    if b"pandas" not in (table.schema.metadata or {}):
        return None
    try:
        table.schema.empty_table().to_pandas()
    except Exception as exc:  # hostile metadata fails in json, pyarrow or pandas, with any error
        return type(exc).__name__
    return None


def _read_parquet(name: str, data: bytes, limits: bool = True) -> tuple[pd.DataFrame, str, list[str]]:
    """The table of a parquet upload, its footer checked before any page is decoded.

    Text columns are read as dictionaries, so a column of one long value repeated (a dictionary
    bomb: 58 KB on disk, 1 GB decoded) is measured before it is expanded. Page checksums are
    verified when the file has them.
    """
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        meta, schema = pf.metadata, pf.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"{name!r} is not a readable parquet file ({exc}). It may be truncated or not parquet "
            "at all: write it again with DataFrame.to_parquet(), or upload a CSV."
        ) from exc
    _check_names(name, list(schema.names))
    _check_types(name, schema)
    kind = kind_of(list(schema.names))
    _row_limit(name, kind, meta.num_rows, limits)
    footer = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    fixed = meta.num_rows * _fixed_bytes_per_row(schema)
    if limits:
        _check_decoded(name, max(footer, fixed))
    text = [f.name for f in schema if _is_text(f.type)]
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), read_dictionary=text, page_checksum_verification=True)
        table = pf.read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{name!r} has a readable footer but its data is damaged ({exc}). Write it again.") from exc
    if limits:
        _check_decoded(name, fixed + _text_bytes(table))
    for col in text:
        if not (kind == "events" and col == "event"):  # event names stay a dictionary: four short strings
            i = table.schema.get_field_index(col)
            table = table.set_column(i, col, table.column(i).cast(table.schema.field(i).type.value_type))
    notes = []
    why = _pandas_metadata_ok(table)
    if why is not None:
        table = table.replace_schema_metadata({k: v for k, v in table.schema.metadata.items() if k != b"pandas"})
        notes.append(
            f"{name}: its pandas metadata is damaged ({why}), so it was ignored and the columns were "
            "read as stored (no index, Arrow types)."
        )
    try:
        # one block per column and no consolidation copy: faster, and no second copy of the table
        return table.to_pandas(split_blocks=True, self_destruct=True), kind, notes
    except (pa.ArrowException, ValueError, TypeError, KeyError) as exc:
        raise DataError(f"{name!r} could not be converted to a table ({exc}). Write it again.") from exc


def _header(name: str, data: bytes) -> tuple[list[str], str, list[str]]:
    """(column names, delimiter, notes) from the first line of a CSV upload."""
    if b"\x00" in data[:MAX_HEADER_BYTES]:
        raise DataError(f"{name!r} contains NUL bytes, so it is not a text CSV. Save it as UTF-8 CSV.")
    # the header ends at the first \n or \r: files saved by old Mac software end lines in \r only
    ends = [i for i in (data.find(b"\n", 0, MAX_HEADER_BYTES), data.find(b"\r", 0, MAX_HEADER_BYTES)) if i >= 0]
    end = min(ends, default=-1)
    if end < 0 and len(data) > MAX_HEADER_BYTES:
        raise DataError(f"{name!r}: the first line is longer than {MAX_HEADER_BYTES // 1024} KB; that is not a header.")
    try:
        text = data[: end if end >= 0 else len(data)].decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name!r} is not UTF-8 text ({exc}). Save it as UTF-8 CSV.") from exc
    if not text.strip():
        raise DataError(f"{name!r} has no header line; the first line must name the columns.")
    counts = {d: text.count(d) for d in DELIMITERS}
    delim = "," if counts[","] else max(counts, key=counts.__getitem__)
    notes = [] if delim == "," or not counts[delim] else [f"{name} is {DELIMITERS[delim]}-separated; read it as such."]
    try:
        names = [c.strip() for c in next(csv.reader([text], delimiter=delim))]
    except csv.Error as exc:
        raise DataError(f"{name!r}: the header line cannot be read as CSV ({exc}). Save it as UTF-8 CSV.") from exc
    return names, delim, notes


def _text_if_mixed(df: pd.DataFrame) -> None:
    """Object columns mixing numbers and text (chunks typed apart) become text, empty cells kept."""
    for col in [c for c in df.columns if pd.api.types.is_object_dtype(df[c].dtype)]:  # columns, not rows
        if pd.api.types.infer_dtype(df[col], skipna=True) not in ("string", "empty"):
            df[col] = df[col].where(df[col].isna(), df[col].astype(str))


def _read_csv(name: str, data: bytes, limits: bool = True) -> tuple[pd.DataFrame, str, list[str]]:
    """The table of a CSV upload; the row count is checked on the raw line count before parsing."""
    names, delim, notes = _header(name, data)
    _check_names(name, names)
    kind = kind_of(names)
    # lines end in \n, \r\n or \r alone (pandas reads all three)
    n_ends = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    n_lines = n_ends + (0 if data.endswith((b"\n", b"\r")) else 1)
    _row_limit(name, kind, n_lines - 1, limits)  # a quoted newline can only overcount
    limit = MAX_EVENT_ROWS if kind == "events" else MAX_FEATURE_ROWS
    try:
        with warnings.catch_warnings():
            # more fields than header names would silently become an index or be cut off
            warnings.simplefilter("error", pd.errors.ParserWarning)
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # mixed chunks are made text below
            # low_memory parses in chunks: a lower peak on a large features CSV
            df = pd.read_csv(
                io.BytesIO(data),
                sep=delim,
                low_memory=True,
                index_col=False,
                nrows=limit + 1 if limits else None,
                encoding="utf-8-sig",
                skipinitialspace=True,
                dtype={"event": "category"} if kind == "events" else None,
            )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{name!r} has no header and no rows; upload a CSV with a header.") from exc
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"{name!r} could not be parsed as CSV ({exc}). Save it as UTF-8 CSV with a header row "
            "and one value per column on every line."
        ) from exc
    _row_limit(name, kind, len(df), limits)
    _text_if_mixed(df)
    _check_types(name, pa.Schema.from_pandas(df.iloc[:0], preserve_index=False))
    return df, kind, notes


def read_table(name: str, data: bytes, limits: bool = True) -> tuple[pd.DataFrame, str, list[str]]:
    """(table, kind, notes) of an uploaded CSV or parquet file; a DataError says what is wrong.

    ``limits=False`` (the ``score`` command) lifts the dashboard's row and size limits."""
    suffix = PurePath(name or "").suffix.lower()
    if suffix not in UPLOAD_EXTENSIONS:
        raise DataError(f"{name!r} has the extension {suffix or '(none)'!r}; upload a .parquet or .csv file.")
    if not data:
        raise DataError(f"{name!r} is empty (0 bytes); export the table again and re-upload.")
    what = _what_it_is(data)
    if suffix == ".csv" and what is not None:
        raise DataError(
            f"{name!r} is named .csv but is {what}. Decompress it (or save it as UTF-8 CSV) and "
            "upload the .csv file itself."
            if what != "a parquet file"
            else f"{name!r} is named .csv but is a parquet file. Rename it to .parquet and re-upload."
        )
    if suffix != ".csv" and what not in (None, "a parquet file"):
        raise DataError(f"{name!r} is named {suffix} but is {what}. Decompress it and upload the parquet file itself.")
    if suffix == ".csv":
        df, kind, notes = _read_csv(name, data, limits)
    else:
        df, kind, notes = _read_parquet(name, data, limits)
    if len(df) == 0:
        raise DataError(f"{name!r} has a header but no rows; there is nothing to score.")
    return df, kind, notes


def prepared_events(name: str, events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(prepared events, exact duplicates dropped) of raw events, validated and de-duplicated
    with the raw loader's own rule (categoryid -1 = unknown when absent)."""
    from core.reading.data import drop_exact_duplicates, validate_events

    missing = [c for c in RAW_EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise DataError(
            f"{name!r} looks like raw events but lacks {', '.join(missing)}; raw events need "
            f"{', '.join(RAW_EVENT_COLUMNS)} (and optionally categoryid)."
        )
    if "categoryid" not in events.columns:
        events = events.assign(categoryid=UNKNOWN_CATEGORY)
    try:
        checked = validate_events(events[list(EVENT_COLUMNS)], name)
    except DataError as exc:  # the rows as the analyst finds them in the uploaded file
        raise DataError(renumbered(str(exc), csv_file=not name.lower().endswith(".parquet"))) from exc
    return drop_exact_duplicates(checked.reset_index(drop=True))


def features_from_events(name: str, events: pd.DataFrame) -> pd.DataFrame:
    """The 16 user features of raw events, prepared as the raw loader prepares them."""
    from core.anomaly.features import user_features

    return user_features(prepared_events(name, events)[0])


def read_upload(name: str, data: bytes, limits: bool = True) -> Upload:
    """A feature table from an uploaded features or raw-events file, every row kept, in order.

    Raw events also come back prepared and packed (``Upload.events``), for the cleaned download."""
    from core.anomaly.features import user_features
    from core.userfiles.export import pack_events

    df, kind, notes = read_table(name, data, limits)
    if kind == "features":
        return Upload(df, kind, notes=notes)
    n_events = len(df)
    events, n_dup = prepared_events(name, df)
    del df
    features = user_features(events)
    packed = pack_events(events)
    del events
    notes.append(
        f"{name} holds {n_events:,} raw events of {len(features):,} visitors; {n_dup:,} exact duplicate "
        "events were dropped (the build's loader rule), and the 16 features were computed with the build's "
        "user_features (categoryid -1 = unknown when the file has none)."
    )
    return Upload(features, kind, n_events=n_events, notes=notes, events=packed, duplicates_dropped=n_dup)
