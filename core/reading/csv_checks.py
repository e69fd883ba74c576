"""CSV reading helpers and the DataError messages that name the file, column, rows and fix."""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.base.errors import DataError

MAX_SHOWN = 5

_INT_RE = r"^-?[0-9]+$"
_DIGITS_RE = r"^[0-9]+$"
_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_CSV_ROWS = "1-based data rows, header not counted"


# --------------------------------------------------------------------------- error messages


def _show(value: object) -> str:
    """One offending value, quoted and truncated so messages stay short."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _rows_text(rows: Sequence[int] | np.ndarray, values: Sequence[object], convention: str, total: int) -> str:
    """'first offending rows (convention): row 3 = 'abc', ... (N in all)'."""
    shown = ", ".join(f"row {int(r)} = {_show(v)}" for r, v in zip(rows[:MAX_SHOWN], values[:MAX_SHOWN]))
    return f"first offending rows ({convention}): {shown} ({total} offending row(s) in all)"


def renumbered(message: str, csv_file: bool) -> str:
    """A message of ``_rows_text`` about 0-based positions of an uploaded table, renumbered as the
    analyst finds the rows: lines as in a spreadsheet for a CSV file (header = line 1), rows
    counted from 1 for a parquet file. Other messages are returned as they are."""
    head = "first offending rows (0-based row positions): "
    if head not in message:
        return message
    before, rest = message.split(head, 1)
    shown, _, tail = rest.partition(" (")
    word, first, convention = (
        ("line", 2, "lines as in a spreadsheet, header = line 1") if csv_file else ("row", 1, "rows counted from 1")
    )
    shown = re.sub(r"\brow (\d+) = ", lambda m: f"{word} {int(m.group(1)) + first} = ", shown)
    return f"{before}first offending {word}s ({convention}): {shown} ({tail}"


def _bad_values_error(
    source: str,
    column: str,
    problem: str,
    rows: Sequence[int] | np.ndarray,
    values: Sequence[object],
    convention: str,
    total: int,
    fix: str,
) -> DataError:
    """A DataError naming the file, the column, the first offending rows and the fix."""
    return DataError(
        f"{source}: column '{column}' {problem}; {_rows_text(rows, values, convention, total)}. Fix: {fix}"
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
            f"{path}: the first line is blank, so there is no header. Fix: the first line must be the column names."
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
    "int": (
        "must hold integers (digits with an optional leading '-'); empty values are not allowed",
        "make every value a whole number without decimals, spaces or blanks",
    ),
    "digits": (
        "must hold a category id made of digits only",
        "make every categoryid value a non-negative whole number",
    ),
    "float": ("must hold numbers or be empty", "leave it empty or write a number"),
}


def _raise_bad_strings(
    source: str,
    column: str,
    values: pa.Array | pa.ChunkedArray,
    kind: str,
    row_offset: int = 0,
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
