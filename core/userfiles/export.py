"""UI-free helpers of the dashboard: safe downloads, views tables, the sampler.

Nothing here imports Streamlit, so every helper is unit-tested without a browser. Uploads are read
by ``core.userfiles.uploads``. Scoring is not
here: the dashboard calls ``core.anomaly.scoring.score`` (chunks, progress, de-duplication) like the API,
and the HTML/JSON report building is ``core.userfiles.report``.
"""

from __future__ import annotations

import io
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from core.base.errors import DataError
from core.base.schema import VIEW_COLUMNS

log = logging.getLogger(__name__)

# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
CSV_ROWS_PER_THREAD = 100_000
# Rows per slice of a scored download: ~15 MB of CSV or one parquet row group each, a few alive
# at a time; larger row groups compress a little better but raise the build's peak memory.
DOWNLOAD_SLICE_ROWS = 100_000
# Object columns pandas' .str accessor takes (others hold no text, so no formula).
STR_ACCESSOR_KINDS = frozenset({"string", "empty", "bytes", "mixed", "mixed-integer"})


# --------------------------------------------------------------------------- downloads


def _is_text(series: pd.Series) -> bool:
    """True for columns a spreadsheet reads as text: object, string, or categorical of them."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return _is_text(pd.Series(series.cat.categories))
    return pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)


def _neutral_name(name: object) -> str:
    """A header name a spreadsheet will not run as a formula."""
    text = str(name)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of df whose header names and text (or bytes) cells starting with = + - @ TAB or CR get a
    leading single quote; bytes cells are decoded as UTF-8 first, since a CSV holds text anyway."""
    out = df.copy(deep=False)
    for col in out.columns:
        series = out[col]
        if not _is_text(series):
            continue
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred not in STR_ACCESSOR_KINDS:  # e.g. an object column of numbers only
            continue
        if inferred in ("bytes", "mixed"):
            decoded = series.str.decode("utf-8", errors="replace")
            series = decoded.where(decoded.notna(), series)
            out[col] = series
        # .str on an object column gives NaN for non-strings: those cells are left alone.
        mask = series.str.startswith(FORMULA_PREFIXES).eq(True)
        if mask.any():
            series = series.astype(object).copy()
            series[mask] = "'" + series[mask].astype(str)
            out[col] = series
    out.columns = [_neutral_name(c) for c in out.columns]
    return out


def _slices(df: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    """Row slices of df (views, not copies); one empty slice for an empty df, for the header."""
    for lo in range(0, max(len(df), 1), rows):
        yield df.iloc[lo : lo + rows]


def _csv_part(part: pd.DataFrame, header: bool) -> bytes:
    """One slice as formula-safe CSV (pyarrow's C++ writer: exact shortest float repr, much faster
    than DataFrame.to_csv, and it releases the GIL)."""
    sink = io.BytesIO()
    options = pa_csv.WriteOptions(include_header=header, quoting_style="needed")
    pa_csv.write_csv(pa.Table.from_pandas(neutralise_formulas(part), preserve_index=False), sink, options)
    return sink.getvalue()


def csv_from_slices(slices: Iterable[pd.DataFrame], threads: int | None = None) -> bytes:
    """UTF-8 CSV of consecutive row slices of one table (header from the first), safe against
    spreadsheet formula injection: the same bytes as one pass over the whole table.

    Only a few slices exist at a time (encoded in threads, written in order), so building a
    200 MB CSV costs the 200 MB and not a second, Arrow copy of the table as well.
    """
    sink = io.BytesIO()
    workers = max(1, threads or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[bytes]] = deque()
        for i, part in enumerate(slices):
            pending.append(pool.submit(_csv_part, part, i == 0))
            if len(pending) > workers:
                sink.write(pending.popleft().result())
        while pending:
            sink.write(pending.popleft().result())
    return sink.getvalue()


def csv_bytes(df: pd.DataFrame, threads: int | None = None) -> bytes:
    """UTF-8 CSV of df (no index), safe against spreadsheet formula injection."""
    return csv_from_slices(_slices(df, CSV_ROWS_PER_THREAD), threads)


def parquet_from_slices(
    slices: Iterable[pd.DataFrame],
    schema: pa.Schema,
    metadata: dict[str, str] | None = None,
    compression: str = "snappy",
) -> bytes:
    """Parquet (snappy) of consecutive row slices of one table, one row group each, no index.

    ``schema`` types every slice alike (a text column empty in one slice is not typed null
    there); ``metadata`` is added to the file's key-value metadata.
    """
    if metadata:
        extra = {k.encode(): v.encode() for k, v in metadata.items()}
        schema = schema.with_metadata({**(schema.metadata or {}), **extra})
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, schema, compression=compression, write_page_checksum=True) as writer:
        for part in slices:
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))
    return sink.getvalue()


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """Parquet (snappy: pandas' default, and twice as fast to write as zstd) of df, no index,
    with page checksums so a corrupted copy is caught on read."""
    sink = io.BytesIO()
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, sink, compression="snappy", write_page_checksum=True)
    return sink.getvalue()


def with_scores(features: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """The uploaded rows, all of them and in order, plus the score and flag columns; an unscored
    row (NaN score) gets an empty flag, not False."""
    out = features.reset_index(drop=True).copy(deep=False)
    scores = scored["anomaly_score"].to_numpy(np.float64)
    out["anomaly_score"] = scores
    flags = pd.array(scored["is_anomaly"].to_numpy(dtype=bool), dtype="boolean")
    flags[np.isnan(scores)] = pd.NA
    out["is_anomaly"] = flags
    return out


def scored_slices(
    features: pd.DataFrame,
    scores: np.ndarray,
    flags: np.ndarray,
    constants: dict[str, object],
    rows: int = DOWNLOAD_SLICE_ROWS,
) -> Iterator[pd.DataFrame]:
    """The scored download a slice of rows at a time: every uploaded row in order, its score and
    flag (``with_scores``), and one column per constant (detector, policy, ...).

    The whole table never exists: its constant text columns alone would repeat on every row.
    """
    for lo in range(0, max(len(features), 1), rows):
        hi = lo + rows
        part = with_scores(
            features.iloc[lo:hi], pd.DataFrame({"anomaly_score": scores[lo:hi], "is_anomaly": flags[lo:hi]})
        )
        for col, value in constants.items():
            part[col] = value
        yield part


def scored_csv_bytes(
    features: pd.DataFrame, scores: np.ndarray, flags: np.ndarray, constants: dict[str, object]
) -> bytes:
    """The scored download as formula-safe CSV, built a slice at a time (``scored_slices``)."""
    return csv_from_slices(scored_slices(features, scores, flags, constants))


def scored_parquet_bytes(
    features: pd.DataFrame,
    scores: np.ndarray,
    flags: np.ndarray,
    constants: dict[str, object],
    metadata: dict[str, str] | None = None,
) -> bytes:
    """The scored download as parquet, a row group per slice; the constants are also in the
    file's key-value metadata (as text), with ``metadata`` (e.g. the drift report) beside them."""
    return parquet_from_slices(
        scored_slices(features, scores, flags, constants),
        scored_schema(features, constants),
        {**{k: str(v) for k, v in constants.items()}, **(metadata or {})},
    )


def scored_schema(features: pd.DataFrame, constants: dict[str, object]) -> pa.Schema:
    """The Arrow schema of ``scored_slices``: feature types inferred on every row, not one slice."""
    whole = pa.Schema.from_pandas(features, preserve_index=False)
    n = min(len(features), 1)
    head = pa.Schema.from_pandas(
        next(scored_slices(features.iloc[:n], np.full(n, np.nan), np.zeros(n, bool), constants)), preserve_index=False
    )
    return pa.schema([whole.field(f.name) if f.name in whole.names else f for f in head], metadata=head.metadata)


# --------------------------------------------------------------------------- events of a raw upload


def pack_events(events: pd.DataFrame) -> bytes:
    """Prepared events as in-memory parquet (zstd, a row group per DOWNLOAD_SLICE_ROWS): a few
    times smaller than the table, and read back a row group at a time (``event_slices``)."""
    schema = pa.Schema.from_pandas(events.iloc[:0], preserve_index=False)
    return parquet_from_slices(_slices(events, DOWNLOAD_SLICE_ROWS), schema, compression="zstd")


def _packed(packed: bytes) -> pq.ParquetFile:
    """The packed events' parquet reader."""
    return pq.ParquetFile(pa.BufferReader(packed))


def event_slices(
    packed: bytes, drop: np.ndarray | None = None, keep: np.ndarray | None = None
) -> Iterator[pd.DataFrame]:
    """The packed events a row group at a time, in upload order, without the events of the
    visitorids in ``drop`` or with only those in ``keep``."""
    pf = _packed(packed)
    for i in range(pf.num_row_groups):
        part = pf.read_row_group(i).to_pandas()
        if drop is not None:
            part = part[~np.isin(part["visitorid"].to_numpy(), drop)]
        if keep is not None:
            part = part[np.isin(part["visitorid"].to_numpy(), keep)]
        yield part.reset_index(drop=True)


def events_of(packed: bytes, visitorids: np.ndarray) -> pd.DataFrame:
    """Only these visitors' events (upload order): the drill-down keeps no other event in memory."""
    return pd.concat(list(event_slices(packed, keep=np.asarray(visitorids))), ignore_index=True)


def cleaned_csv_bytes(packed: bytes, flagged_visitorids: np.ndarray) -> bytes:
    """The cleaned events (every event of a flagged visitor removed) as formula-safe CSV, in slices."""
    return csv_from_slices(event_slices(packed, drop=np.asarray(flagged_visitorids)))


def cleaned_parquet_bytes(
    packed: bytes, flagged_visitorids: np.ndarray, metadata: dict[str, str] | None = None
) -> bytes:
    """The cleaned events as parquet, a row group per slice, with ``metadata`` (how they were cleaned)."""
    schema = _packed(packed).schema_arrow
    return parquet_from_slices(event_slices(packed, drop=np.asarray(flagged_visitorids)), schema, metadata)


# --------------------------------------------------------------------------- views for ranking


def datetimes_to_ms(values: pd.Series) -> pd.Series:
    """Unix ms (Python ints) of datetimes, naive ones read as UTC; missing stays None."""
    ts = pd.to_datetime(pd.Series(values).reset_index(drop=True), utc=True, errors="coerce")
    out = pd.Series([None] * len(ts), dtype=object)
    ok = ts.notna()
    if ok.any():
        ms = (ts[ok] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
        out[ok] = [int(v) for v in ms.to_numpy()]
    return out


def _integral_cells(values: pd.Series) -> pd.Series:
    """Object cells: integral numbers (or digit strings) as int, blanks as None, the rest as typed."""
    values = pd.Series(values).reset_index(drop=True)
    text = values.astype("string").str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    out = values.astype(object).copy()
    is_int = numeric.notna() & np.isfinite(numeric.astype("float64")) & (numeric % 1 == 0)
    out[is_int] = [int(v) for v in numeric[is_int]]
    other_num = numeric.notna() & ~is_int
    out[other_num] = numeric[other_num].astype(object)
    out[text.isna() | (text == "")] = None
    return out


def ms_to_datetimes(values: pd.Series | Sequence[int]) -> pd.Series:
    """Naive UTC datetimes from Unix ms (the editor shows them as dates and times)."""
    return pd.to_datetime(pd.Series(values, dtype="float64"), unit="ms").dt.floor("ms")


def _parse_timestamp_cells(values: pd.Series) -> pd.Series:
    """Per cell: a number is ms, a date/time string is converted to ms, anything else is kept."""
    out = _integral_cells(values)
    text = pd.Series(values).reset_index(drop=True).astype("string").str.strip()
    is_text = pd.Series([isinstance(v, str) for v in out], dtype=bool)
    if is_text.any():
        dates = pd.to_datetime(text[is_text], utc=True, errors="coerce", format="mixed")
        parsed = dates.notna()
        out[parsed[parsed].index] = datetimes_to_ms(dates[parsed]).to_numpy()
    return out


def views_from_editor(table: pd.DataFrame, timestamps_in_ms: bool) -> pd.DataFrame:
    """The editor's rows as views for ``core.ranking.serve.rank``; nothing dropped, nothing coerced away."""
    views = pd.DataFrame(index=range(len(table)))
    for col in VIEW_COLUMNS:
        if col not in table.columns:
            continue
        values = table[col].reset_index(drop=True)
        if col == "timestamp" and not timestamps_in_ms:
            if pd.api.types.is_datetime64_any_dtype(values):
                values = datetimes_to_ms(values)
            else:
                values = _parse_timestamp_cells(values)
        else:
            values = _integral_cells(values)
        views[col] = values
    if "itemid" in views.columns and views["itemid"].isna().all():
        views = views.drop(columns="itemid")  # itemid is optional: an empty column means "not given"
    return views


def complete_rows(views: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[int]]:
    """The rows with a timestamp and a category, a note per half-entered row left out, and the
    row numbers of the rows kept.

    Blank rows (the editor's fresh row) are dropped without a word; rows with other problems
    (a negative id, text) stay, so the ranking error names them.
    """
    present = views.reindex(columns=list(VIEW_COLUMNS)).notna()
    blank = ~present.any(axis=1)
    incomplete = ~blank & ~(present["timestamp"] & present["categoryid"])
    notes = [
        f"row {i} (no {' and no '.join(c for c in ('timestamp', 'categoryid') if not present.at[i, c])})"
        for i in views.index[incomplete]
    ]
    kept = ~blank & ~incomplete
    return views.loc[kept].reset_index(drop=True), notes, [int(i) for i in views.index[kept]]


def views_from_csv_text(text: str) -> pd.DataFrame:
    """Pasted CSV views (header: timestamp,categoryid[,itemid]; ms or date/time stamps)."""
    if not text.strip():
        raise DataError("The pasted text is empty: paste a header line and at least one view.")
    try:
        raw = pd.read_csv(io.StringIO(text.strip()), dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"The pasted text is not CSV ({exc}).") from exc
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in ("timestamp", "categoryid") if c not in raw.columns]
    if missing:
        raise DataError(
            f"The pasted CSV has no column {', '.join(missing)}; the header must be timestamp,categoryid[,itemid]."
        )
    views = pd.DataFrame({"timestamp": _parse_timestamp_cells(raw["timestamp"])})
    for col in ("categoryid", "itemid"):
        if col in raw.columns:
            views[col] = _integral_cells(raw[col])
    return views
