"""Item categories: categoryid snapshots of item_properties, their as-of join to events, and the tree."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.base import arrays
from core.base.errors import DataError
from core.base.schema import CATEGORY_TREE_COLUMNS, ITEM_PROPERTY_COLUMNS, UNKNOWN_CATEGORY
from core.reading.csv_checks import (
    _CSV_ROWS,
    _check_columns,
    _csv_header,
    _raise_bad_strings,
    _require_file,
    _string_options,
)

CATEGORY_PROPERTY = "categoryid"
# Bytes per scan chunk: two threads of 32 MiB chunks keep the scan's memory small
# (benchmarks/bench_properties.py); smaller chunks cost per-chunk overhead, larger ones memory.
DEFAULT_BLOCK_SIZE = 1 << 25
SCAN_THREADS = 2
_IN_FLIGHT = 2 * SCAN_THREADS  # chunks read ahead of the one being collected (bounds memory)
_NL, _CR, _COMMA, _QUOTE = (ord(c) for c in '\n\r,"')
_PATTERN = np.frombuffer(CATEGORY_PROPERTY.encode(), np.uint8)
_EMPTY = pa.table({c: pa.array([], pa.string()) for c in ("timestamp", "itemid", "value")})


# --------------------------------------------------------------------------- item properties


@dataclass
class _Chunk:
    """What one chunk of lines holds: its row count and its categoryid rows (strings)."""

    n_rows: int  # data rows (non-empty lines) in the chunk
    rows: np.ndarray  # chunk-relative 0-based rows of the categoryid rows
    table: pa.Table  # their timestamp, itemid and value, as strings
    bad_row: int | None = None  # chunk-relative row of the first line that does not parse
    bad_text: str = ""
    error: str = ""


class _Lines(NamedTuple):
    """A chunk of whole lines: buf[begin:end], each line ending with a line break."""

    buf: bytearray
    begin: int
    end: int

    def array(self) -> np.ndarray:
        """The chunk's bytes as a uint8 array (no copy)."""
        return np.frombuffer(self.buf, np.uint8, count=self.end - self.begin, offset=self.begin)

    def holds(self, byte: bytes) -> bool:
        """Whether the chunk holds this byte (memchr speed)."""
        return self.buf.find(byte, self.begin, self.end) >= 0


def _line_chunks(path: Path, size: int, spare: list[bytearray]) -> Iterator[_Lines]:
    """The file after its header line, in chunks of whole lines (each ends with a line break).

    Each chunk is one read into a buffer from ``spare`` (the caller hands back the buffers of
    the chunks it is done with: fresh memory for every read pays page faults on every chunk of
    the real files); the partial line at a chunk's end is read again with the next one.
    """
    with open(path, "rb") as fh:
        pos, header_done = 0, False
        while True:
            buf = spare.pop() if spare and len(spare[-1]) >= size else bytearray(size)
            n = fh.readinto(buf)
            if not n:
                return
            first = 0
            if not header_done:
                breaks = [i for i in (buf.find(b"\n", 0, n), buf.find(b"\r", 0, n)) if i >= 0]
                first = min(breaks, default=-1) + 1
            cut = max(buf.rfind(b"\n", 0, n), buf.rfind(b"\r", 0, n)) + 1
            if n < len(buf):  # the end of the file: its last line may lack a line break
                if first or header_done:
                    if cut < n:
                        buf[n], cut = _NL, n + 1
                    if cut > first:
                        yield _Lines(buf, first, cut)
                return
            if cut <= first:  # no line break after the header in this read: read more at once
                size *= 2
                fh.seek(pos)
                continue
            header_done = True
            yield _Lines(buf, first, cut)
            pos += cut
            fh.seek(pos)


def _line_bounds(a: np.ndarray, raw: _Lines) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, the line break) of every non-empty line of a chunk.

    \\n, \\r and \\r\\n all end a line and empty lines are skipped, as pyarrow's CSV reader does.
    """
    breaks = a == _NL
    if raw.holds(b"\r"):
        breaks |= a == _CR
    ends = np.flatnonzero(breaks)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    keep = ends > starts
    if keep.all():
        return starts, ends
    return starts[keep], ends[keep]


def _property_fields(
    a: np.ndarray, raw: _Lines, starts: np.ndarray, ends: np.ndarray, n_cols: int, col: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain lines (no quote, exactly n_cols - 1 commas: split on commas alone) and their field ``col``.

    Returns the plain mask and, for every line, the field's start and end (meaningful on plain
    lines only).
    """
    commas = np.flatnonzero(a == _COMMA)
    k, n = n_cols - 1, len(starts)
    if len(commas) == k * n:  # the usual case: check that each line holds its own k commas
        grid = commas.reshape(n, k)
        plain = (grid[:, 0] >= starts) & (grid[:, -1] < ends)
        lo = starts if col == 0 else grid[:, col - 1] + 1
        hi = ends if col == k else grid[:, col]
    else:
        first = np.searchsorted(commas, starts)
        plain = np.searchsorted(commas, ends) - first == k
        lo, hi = starts.copy(), ends.copy()
        at = np.flatnonzero(plain)
        if col > 0:
            lo[at] = commas[first[at] + col - 1] + 1
        if col < k:
            hi[at] = commas[first[at] + col]
    if raw.holds(b'"'):  # quoted fields: their lines go to the CSV parser
        quotes = np.flatnonzero(a == _QUOTE)
        plain &= np.searchsorted(quotes, ends) == np.searchsorted(quotes, starts)
    return plain, lo, hi


def _field_is(a: np.ndarray, lo: np.ndarray, hi: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """Whether each field a[lo:hi] equals pattern (vectorised over fields, looped over its bytes)."""
    hit = hi - lo == len(pattern)  # a field of another length never reads past its line
    idx = np.flatnonzero(hit)
    for j, byte in enumerate(pattern):
        ok = a[lo[idx] + j] == byte
        idx, hit[idx[~ok]] = idx[ok], False
    return hit


def _gather_lines(a: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> bytes:
    """The given lines joined, each ending with a newline: a small CSV for the parser."""
    lengths = ends - starts + 1
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    out = a[np.arange(int(lengths.sum()), dtype=np.int64) + shift]
    out[np.cumsum(lengths) - 1] = _NL
    return out.tobytes()


def _scan_chunk(buf: _Lines, header: list[str], prop_col: int) -> _Chunk:
    """The categoryid rows of one chunk, parsing only the lines that can be one.

    A line split on its commas alone (no quote, one comma fewer than the columns) is a
    categoryid row exactly when its property field's bytes are 'categoryid': only those lines and
    the irregular ones (quotes, a wrong field count) go to pyarrow's CSV parser, which gives the
    exact values and names a line that does not parse.
    """
    a = buf.array()
    starts, ends = _line_bounds(a, buf)
    plain, lo, hi = _property_fields(a, buf, starts, ends, len(header), prop_col)
    pick = np.flatnonzero(~plain | _field_is(a, lo, hi, _PATTERN))
    if not len(pick):
        return _Chunk(len(starts), pick, _EMPTY)
    invalid: list[pacsv.InvalidRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        """Keep the first line that does not parse and skip it (reported by the caller)."""
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(_gather_lines(a, starts[pick], ends[pick])),
            read_options=pacsv.ReadOptions(column_names=header, use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=_string_options(ITEM_PROPERTY_COLUMNS),
        )
    except pa.ArrowInvalid as exc:  # e.g. bytes that are not UTF-8 in a line it had to parse
        return _Chunk(len(starts), pick[:0], _EMPTY, int(pick[0]), error=str(exc))
    if invalid:
        bad = invalid[0]
        row = int(pick[bad.number - 1]) if bad.number else int(pick[0])
        text = f"expected {bad.expected_columns} columns, got {bad.actual_columns}"
        return _Chunk(len(starts), pick[:0], _EMPTY, row, bad.text[:80], text)
    mask = pc.equal(table.column("property"), CATEGORY_PROPERTY)
    rows = pick[np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)]
    return _Chunk(len(starts), rows, table.select(["timestamp", "itemid", "value"]).filter(mask))


def _scan_file(path: Path, pool: ThreadPoolExecutor, block_size: int) -> list[_Chunk]:
    """Every chunk of one file scanned on the pool, in file order (a few chunks in flight)."""
    header = _csv_header(path)
    _check_columns(str(path), header, ITEM_PROPERTY_COLUMNS)
    prop_col = header.index("property")
    pending: deque[tuple[bytearray, Future[_Chunk]]] = deque()
    done: list[_Chunk] = []
    spare: list[bytearray] = []
    for lines in _line_chunks(path, block_size, spare):
        pending.append((lines.buf, pool.submit(_scan_chunk, lines, header, prop_col)))
        if len(pending) >= _IN_FLIGHT:
            buf, future = pending.popleft()
            done.append(future.result())
            spare.append(buf)  # scanned: its bytes may be overwritten by the next read
    done.extend(f.result() for _, f in pending)
    return done


def _snapshots(path: Path, chunks: list[_Chunk]) -> pd.DataFrame:
    """One file's categoryid rows checked (messages name file, column, 1-based data rows) and typed."""
    offsets = np.cumsum([0] + [c.n_rows for c in chunks])
    for c, offset in zip(chunks, offsets[:-1]):
        if c.bad_row is not None:
            what = f" = {c.bad_text!r}" if c.bad_text else ""
            raise DataError(
                f"{path}: the CSV cannot be parsed or converted at data row {offset + c.bad_row + 1}{what} "
                f"({_CSV_ROWS}) ({c.error}). Fix: repair the file."
            )
    if offsets[-1] == 0:
        raise DataError(
            f"{path}: the file has a header but no data rows. Fix: provide the rows "
            f"or remove the file (it is optional)."
        )
    rows = np.concatenate([c.rows + o for c, o in zip(chunks, offsets[:-1])])
    tables = [c.table for c in chunks if c.table.num_rows]
    out: dict[str, np.ndarray] = {}
    for col, kind, name in (
        ("timestamp", "int", "timestamp"),
        ("itemid", "int", "itemid"),
        ("value", "digits", "categoryid"),
    ):
        values = pa.chunked_array([t.column(col) for t in tables], pa.string())
        _raise_bad_strings(str(path), col, values, kind, 0, rows)
        out[name] = pc.cast(values, pa.int64()).to_numpy().astype(np.int64, copy=False)
    return pd.DataFrame(out)


def read_category_files(paths: Sequence[str | Path], *, block_size: int | None = None) -> pd.DataFrame:
    """The categoryid rows of item_properties CSVs: timestamp, itemid, categoryid, in file then row order.

    The files are read in chunks of whole lines (memory bounded by the chunk size, not the
    ~900 MB of the real files), two chunks at a time on two threads, one file after the other
    with no pause between them. Only the lines that can be categoryid rows are parsed, so other
    properties' values never matter (nor are they checked); a line that does not parse as a CSV
    row of the header's columns is reported wherever it is.
    """
    files = [Path(p) for p in paths]
    for path in files:
        _require_file(path, "the item properties file")
        _check_columns(str(path), _csv_header(path), ITEM_PROPERTY_COLUMNS)
    with ThreadPoolExecutor(max_workers=SCAN_THREADS, thread_name_prefix="properties") as pool:
        frames = [_snapshots(path, _scan_file(path, pool, block_size or DEFAULT_BLOCK_SIZE)) for path in files]
    if not frames:
        return pd.DataFrame({k: np.empty(0, np.int64) for k in ("timestamp", "itemid", "categoryid")})
    return pd.concat(frames, ignore_index=True)


def read_category_snapshots(path: str | Path, *, block_size: int | None = None) -> pd.DataFrame:
    """One item_properties CSV's categoryid rows: timestamp, itemid, categoryid (read_category_files)."""
    return read_category_files([path], block_size=block_size)


# --------------------------------------------------------------------------- as-of join


def asof_categories(
    ev_ts: np.ndarray,
    ev_item: np.ndarray,
    snap_ts: np.ndarray,
    snap_item: np.ndarray,
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
    # Events in (item, time) order make the binary searches below walk forward through the
    # snapshots, which is much faster than searching in file order; results go back in place.
    ev_order = arrays.stable_order(ev_item, ev_ts)
    ev_ts, ev_item = ev_ts[ev_order], ev_item[ev_order]

    # Stable sort by (item, timestamp); among equal keys keep only the last in input order.
    order = arrays.stable_order(snap_item, snap_ts)
    s_item, s_ts, s_cat = snap_item[order], snap_ts[order], snap_cat[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (s_item[1:] != s_item[:-1]) | (s_ts[1:] != s_ts[:-1])
    s_item, s_ts, s_cat = s_item[last], s_ts[last], s_cat[last]

    # Dense codes so one sorted int64 key (item code, timestamp rank) serves every item at once.
    items = arrays.unique(s_item)
    times = arrays.unique(s_ts)
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
    found = np.full(len(ev_ts), UNKNOWN_CATEGORY, dtype=np.int64)
    found[known] = s_cat[pos]
    out[ev_order] = found
    return out


# --------------------------------------------------------------------------- category tree


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
        raise DataError(f"{path}: the file has a header but no data rows. Fix: provide the rows or remove the file.")
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
    return pd.DataFrame({"categoryid": pc.cast(cat, pa.int64()).to_numpy().astype(np.int64), "parentid": parent_ids})


def category_paths(tree: pd.DataFrame | None) -> dict[int, str] | None:
    """categoryid -> 'root › … › parent' of a category tree table; None without a usable tree."""
    if tree is None or not {"categoryid", "parentid"} <= set(tree.columns):
        return None
    parent = dict(zip(tree["categoryid"].astype("int64"), pd.to_numeric(tree["parentid"], errors="coerce")))
    paths: dict[int, str] = {}
    for cat in parent:
        chain: list[str] = []
        node = parent.get(cat)
        while node is not None and not pd.isna(node) and len(chain) < 20:  # 20: a guard against cycles
            chain.append(str(int(node)))
            node = parent.get(int(node))
        paths[int(cat)] = " › ".join(reversed(chain))
    return paths
