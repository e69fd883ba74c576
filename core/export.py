"""UI-free helpers of the dashboard: reading uploads, safe downloads, views tables, HTML reports.

Nothing here imports Streamlit, so every helper is unit-tested without a browser. Scoring is not
here: the dashboard calls ``core.anomaly.score`` (chunks, progress, de-duplication) like the API.
"""

from __future__ import annotations

import html
import importlib.util
import io
import json
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from core.errors import DataError

log = logging.getLogger(__name__)

# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
UPLOAD_EXTENSIONS: tuple[str, ...] = (".parquet", ".pq", ".csv")
CSV_ROWS_PER_THREAD = 100_000
VIEW_COLUMNS: tuple[str, ...] = ("timestamp", "categoryid", "itemid")


# --------------------------------------------------------------------------- downloads


def _is_text(series: pd.Series) -> bool:
    """True for columns a spreadsheet reads as text: object, string, or categorical of them."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return _is_text(pd.Series(series.cat.categories))
    return pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of df whose text cells starting with = + - @ TAB or CR get a leading single quote."""
    out = df.copy(deep=False)
    for col in out.columns:
        series = out[col]
        if not _is_text(series):
            continue
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        # .str on an object column gives NaN for non-strings: those cells are left alone.
        mask = series.str.startswith(FORMULA_PREFIXES).eq(True)
        if mask.any():
            series = series.astype(object).copy()
            series[mask] = "'" + series[mask].astype(str)
            out[col] = series
    return out


def csv_bytes(df: pd.DataFrame, threads: int | None = None) -> bytes:
    """UTF-8 CSV of df (no index), safe against spreadsheet formula injection.

    pyarrow's C++ writer (exact shortest float repr, 10x faster than DataFrame.to_csv), run on
    row slices in threads — it releases the GIL — and joined: the same bytes as one pass.
    """
    table = pa.Table.from_pandas(neutralise_formulas(df), preserve_index=False)
    n_parts = max(1, min(threads or os.cpu_count() or 1, table.num_rows // CSV_ROWS_PER_THREAD))
    bounds = np.linspace(0, table.num_rows, n_parts + 1).astype(int)

    def part(i: int) -> bytes:
        sink = io.BytesIO()
        options = pa_csv.WriteOptions(include_header=i == 0, quoting_style="needed")
        pa_csv.write_csv(table.slice(bounds[i], bounds[i + 1] - bounds[i]), sink, options)
        return sink.getvalue()

    if n_parts == 1:
        return part(0)
    with ThreadPoolExecutor(max_workers=n_parts) as pool:
        return b"".join(pool.map(part, range(n_parts)))


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """Parquet (snappy: pandas' default, and twice as fast to write as zstd) of df, no index."""
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink, compression="snappy")
    return sink.getvalue()


def with_scores(features: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """The uploaded rows, all of them and in order, plus the score and flag columns."""
    out = features.reset_index(drop=True).copy(deep=False)
    out["anomaly_score"] = scored["anomaly_score"].to_numpy()
    out["is_anomaly"] = scored["is_anomaly"].to_numpy(dtype=bool)
    return out


# --------------------------------------------------------------------------- uploads


def read_table_upload(name: str, data: bytes) -> pd.DataFrame:
    """A features table from uploaded bytes; DataError says what is wrong and how to fix it."""
    suffix = PurePath(name or "").suffix.lower()
    if suffix not in UPLOAD_EXTENSIONS:
        raise DataError(
            f"{name!r} has the extension {suffix or '(none)'!r}; upload a .parquet or .csv file "
            "with one row per visitorid and the 16 user feature columns."
        )
    if not data:
        raise DataError(f"{name!r} is empty (0 bytes); export the features again and re-upload.")
    if suffix in (".parquet", ".pq"):
        try:
            # one block per column and no consolidation copy: 8x faster on 1.4M rows
            df = pq.read_table(io.BytesIO(data)).to_pandas(split_blocks=True, self_destruct=True)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(
                f"{name!r} is not a readable parquet file ({exc}). It may be truncated or not "
                "parquet at all: write it again with DataFrame.to_parquet(), or upload a CSV."
            ) from exc
    else:
        try:
            with warnings.catch_warnings():
                # more fields than header names would silently become an index or be cut off
                warnings.simplefilter("error", pd.errors.ParserWarning)
                df = pd.read_csv(io.BytesIO(data), low_memory=False, index_col=False)
        except pd.errors.EmptyDataError as exc:
            raise DataError(f"{name!r} has no header and no rows; upload a CSV with a header.") from exc
        except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError, ValueError) as exc:
            raise DataError(
                f"{name!r} could not be parsed as CSV ({exc}). Save it as UTF-8 CSV with a header "
                "row and comma separators."
            ) from exc
    if len(df) == 0:
        raise DataError(f"{name!r} has columns but no rows; there is nothing to score.")
    return df


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
    """The editor's rows as views for ``core.ranking.rank``; nothing dropped, nothing coerced away."""
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
            f"The pasted CSV has no column {', '.join(missing)}; the header must be "
            "timestamp,categoryid[,itemid]."
        )
    views = pd.DataFrame({"timestamp": _parse_timestamp_cells(raw["timestamp"])})
    for col in ("categoryid", "itemid"):
        if col in raw.columns:
            views[col] = _integral_cells(raw[col])
    return views


# --------------------------------------------------------------------------- generic JSON tables


def json_tables(obj: Any, title: str = "") -> list[tuple[str, pd.DataFrame]]:
    """Every table inside a metrics JSON: lists of records become tables, scalars a key/value one."""
    tables: list[tuple[str, pd.DataFrame]] = []
    if isinstance(obj, list):
        if obj and all(isinstance(r, dict) for r in obj):
            flat = pd.json_normalize(obj)
            tables.append((title or "records", flat))
        elif obj:
            tables.append((title or "values", pd.DataFrame({"value": obj})))
        return tables
    if not isinstance(obj, dict):
        return [(title or "value", pd.DataFrame({"value": [obj]}))]
    scalars = {k: v for k, v in obj.items() if not isinstance(v, (dict, list))}
    if scalars:
        tables.append(
            (title or "summary", pd.DataFrame({"key": list(scalars), "value": [str(v) for v in scalars.values()]}))
        )
    for key, value in obj.items():
        if isinstance(value, (dict, list)):
            tables.extend(json_tables(value, f"{title} / {key}" if title else str(key)))
    return tables


# --------------------------------------------------------------------------- HTML report

REPORT_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1f2430}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}th{background:#f3f4f6}
h3{font-size:1em;margin:1.2em 0 .2em}
.note{background:#fff7e0;border-left:4px solid #f0b429;padding:.5em 1em}
.caption{color:#555;font-size:.9em}figure{margin:1em 0}
"""


@dataclass
class ReportBlock:
    """One piece of a report: a heading, a paragraph, a chart or a table."""

    kind: str  # "heading" | "subheading" | "text" | "note" | "chart" | "table"
    content: Any
    caption: str = ""


def svg_renderer_available() -> bool:
    """True when vl-convert-python is installed, so charts can be inlined as SVG (no CDN)."""
    return importlib.util.find_spec("vl_convert") is not None


def _chart_html(spec: dict[str, Any], index: int, inline_svg: bool) -> str:
    """A chart as inline SVG (self-contained) or as a vega-embed call on its JSON spec."""
    if inline_svg:
        import vl_convert  # optional dependency, checked by svg_renderer_available

        return vl_convert.vegalite_to_svg(spec)
    spec_json = json.dumps(spec).replace("</", "<\\/")
    return (
        f'<div id="chart{index}"></div><script type="text/javascript">'
        f'vegaEmbed("#chart{index}", {spec_json}, {{"actions": false}});</script>'
    )


def html_report(title: str, blocks: Sequence[ReportBlock], inline_svg: bool | None = None) -> str:
    """A single HTML file with the page's text, tables and charts.

    With vl-convert-python installed the charts are inline SVG and the file needs nothing else.
    Without it the charts are vega-lite specs drawn by vega-embed from a CDN (the file then needs
    internet for the charts; the tables and text never do), and the report says so.
    """
    inline_svg = svg_renderer_available() if inline_svg is None else inline_svg
    head = [f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{REPORT_CSS}</style>"]
    body = [f"<h1>{html.escape(title)}</h1>"]
    if not inline_svg:
        head.append(
            '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>'
            '<script src="https://cdn.jsdelivr.net/npm/vega-lite@5"></script>'
            '<script src="https://cdn.jsdelivr.net/npm/vega-embed@6"></script>'
        )
        body.append(
            "<p class='note'>The charts in this report are drawn by vega-embed loaded from a CDN, "
            "so they need an internet connection; the tables below each chart hold the same "
            "numbers and work offline. Install vl-convert-python for a fully self-contained "
            "report with inline SVG charts.</p>"
        )
    for i, block in enumerate(blocks):
        if block.kind == "heading":
            body.append(f"<h2>{html.escape(str(block.content))}</h2>")
        elif block.kind == "subheading":
            body.append(f"<h3>{html.escape(str(block.content))}</h3>")
        elif block.kind == "text":
            body.append(f"<p>{html.escape(str(block.content))}</p>")
        elif block.kind == "note":
            body.append(f"<p class='note'>{html.escape(str(block.content))}</p>")
        elif block.kind == "chart":
            spec = block.content if isinstance(block.content, dict) else block.content.to_dict()
            body.append(f"<figure>{_chart_html(spec, i, inline_svg)}</figure>")
        elif block.kind == "table":
            body.append(block.content.to_html(index=False, border=0, na_rep="", float_format=_fmt))
        else:
            raise ValueError(f"unknown report block kind {block.kind!r}")
        if block.caption:
            body.append(f"<p class='caption'>{html.escape(block.caption)}</p>")
    return (
        "<!DOCTYPE html><html><head>" + "".join(head) + "</head><body>" + "\n".join(body)
        + "</body></html>"
    )


def _fmt(x: float) -> str:
    """Four significant decimals for report tables."""
    return f"{x:.4g}"
