"""Unit tests of core.userfiles.report: tables out of metrics JSON and the single-file HTML report."""

from __future__ import annotations

import altair as alt
import pandas as pd
import pytest
from conftest import skip_or_fail

from core.userfiles import report as R


def test_json_tables_find_records_and_scalars():
    tables = dict(R.json_tables({"best": "hgb", "rankers": [{"ranker": "a", "top1": 0.5}], "ci": {"lo": 0.1}}))
    assert tables["summary"]["key"].tolist() == ["best"]
    assert tables["rankers"]["top1"].tolist() == [0.5]
    assert tables["ci"]["value"].tolist() == ["0.1"]


def _blocks():
    chart = alt.Chart(pd.DataFrame({"a": ["x", "y"], "b": [1, 2]})).mark_bar().encode(x="a:N", y="b:Q")
    return [
        R.ReportBlock("heading", "Section <1>"),
        R.ReportBlock("chart", chart, "a caption"),
        R.ReportBlock("table", pd.DataFrame({"v": [0.123456, 2]})),
        R.ReportBlock("note", "note & more"),
    ]


def test_html_report_without_svg_renderer_embeds_specs_and_says_charts_need_a_cdn():
    page = R.html_report("T", _blocks(), inline_svg=False)
    assert "vegaEmbed(" in page and "cdn.jsdelivr.net" in page and "need an internet connection" in page
    assert "Section &lt;1&gt;" in page and "0.1235" in page and "note &amp; more" in page


def test_html_report_with_svg_renderer_is_self_contained():
    if not R.svg_renderer_available():  # requirements.txt pins vl-convert-python: CI must have it
        skip_or_fail("vl-convert-python is not installed (pip install -r requirements.txt)")
    page = R.html_report("T", _blocks())  # the default: inline SVG when the renderer is there
    assert page.count("<svg") == 1 and "</svg>" in page
    assert "<script" not in page and "need an internet connection" not in page
    assert "http" not in page.replace("http://www.w3.org", "")  # nothing to fetch


def test_unknown_report_block_is_an_error():
    with pytest.raises(ValueError):
        R.html_report("T", [R.ReportBlock("video", 1)], inline_svg=False)


def test_summary_blocks_come_first_and_the_page_is_fitted():
    from core.userfiles.report import ReportBlock, html_report

    page = html_report(
        "t",
        [ReportBlock("heading", "Section"), ReportBlock("summary", "finding <1>"), ReportBlock("text", "body")],
        inline_svg=False,
    )
    assert page.index("Summary") < page.index("finding &lt;1&gt;") < page.index("Section") < page.index("<p>body")
    assert "max-width:960px" in page and "#2563eb" in page
