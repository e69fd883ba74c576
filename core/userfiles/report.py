"""The dashboard's downloadable report: tables out of metrics JSON, and one self-contained HTML file.

Nothing here imports Streamlit; charts arrive as vega-lite specs (or Altair charts).
"""

from __future__ import annotations

import html
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler

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

# The dashboard's theme (.streamlit/config.toml): primary #2563eb, text #1f2430, panels #f3f5f9.
# The page is as wide as a laptop window at most; wide tables scroll inside it, charts shrink.
REPORT_CSS = """
body{font-family:"Source Sans Pro",system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;
margin:2em auto;padding:0 1.2em;color:#1f2430;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:2em;padding-bottom:.2em;
border-bottom:2px solid #2563eb}h3{font-size:1em;margin:1.2em 0 .2em}
.summary{background:#f3f5f9;border-left:4px solid #2563eb;padding:.6em 1.2em;border-radius:4px}
.summary li{margin:.3em 0}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em;display:block;max-width:100%;overflow-x:auto}
td,th{border-bottom:1px solid #e2e6ee;padding:.3em .6em;text-align:left;white-space:nowrap}
th{background:#f3f5f9;font-weight:600}
.note{background:#fff7e0;border-left:4px solid #f59e0b;padding:.5em 1em;border-radius:4px}
.caption{color:#5b6272;font-size:.9em}figure{margin:1em 0}figure svg{max-width:100%;height:auto}
"""


REPORT_CHART_WIDTH = 760  # px: fits the 960-px page with the axis and legend beside it


@dataclass
class ReportBlock:
    """One piece of a report: a heading, a paragraph, a chart or a table."""

    # "summary" (one finding, gathered into the list at the top) | "heading" | "subheading" |
    # "text" | "note" | "chart" | "table"
    kind: str
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
    findings = [b for b in blocks if b.kind == "summary"]
    if findings:
        body.append(
            "<h2>Summary</h2><ul class='summary'>"
            + "".join(f"<li>{html.escape(str(b.content))}</li>" for b in findings)
            + "</ul>"
        )
    for i, block in enumerate(blocks):
        if block.kind == "summary":
            continue
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
            if inline_svg and spec.get("width") in (None, "container"):
                spec = {**spec, "width": REPORT_CHART_WIDTH}  # no container to stretch to in a file
            body.append(f"<figure>{_chart_html(spec, i, inline_svg)}</figure>")
        elif block.kind == "table":
            body.append(_table_html(block.content))
        else:
            raise ValueError(f"unknown report block kind {block.kind!r}")
        if block.caption:
            body.append(f"<p class='caption'>{html.escape(block.caption)}</p>")
    return "<!DOCTYPE html><html><head>" + "".join(head) + "</head><body>" + "\n".join(body) + "</body></html>"


def _table_html(table: pd.DataFrame | Styler) -> str:
    """A table as HTML: a Styler (the dashboard's formatted table) with its formats and no index,
    a plain frame with four significant digits."""
    if isinstance(table, Styler):
        return table.hide(axis="index").to_html()
    return table.to_html(index=False, border=0, na_rep="", float_format=_fmt)


def _fmt(x: float) -> str:
    """Four significant decimals for report tables."""
    return f"{x:.4g}"
