"""AppTest of every dashboard page and widget path, with and without built artifacts.

The real widgets are driven: the features file goes through st.file_uploader, the ranking
views through the st.data_editor's edit state, and each download button's file is built by the
callable the page hands it. tests/test_browser.py drives the same widgets in Chromium.
"""

from __future__ import annotations

import ast
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.base import schema
from core.store import artifacts as A
from core.store import model_files
from core.store.manifest import file_entry
from core.userfiles.export import parquet_bytes
from dashboard.format import built_date

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")
PAGES = ["pages/overview.py", "pages/ranking.py", "pages/anomaly.py", "pages/cleaning_kpis.py"]
TIMEOUT = 60
# Every test here runs the whole app (entry point, navigation, a page) in AppTest.
pytestmark = pytest.mark.e2e


@pytest.fixture
def downloads(monkeypatch) -> dict[str, tuple[str, object]]:
    """file name -> (mime type, the callable that builds the file) of each deferred download
    button the page renders; calling it builds the bytes a click would download."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    made: dict[str, tuple[str, object]] = {}
    real = MediaFileManager.add_deferred

    def record(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        made[file_name] = (mimetype, data_callable)
        return real(self, data_callable, mimetype, coordinates, file_name=file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", record)
    return made


def only(downloads: dict, prefix: str, suffix: str) -> tuple[str, object]:
    """The one download whose file name starts and ends so (the threshold sits between)."""
    names = [n for n in downloads if n.startswith(prefix) and n.endswith(suffix)]
    assert len(names) == 1, (prefix, list(downloads))
    return downloads[names[0]]


def open_page(page: str) -> AppTest:
    """Run the app, then switch to a page."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at.switch_page(page).run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def frame(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first st.dataframe shown that has these columns."""
    for element in at.dataframe:
        if set(columns) <= set(element.value.columns):
            return element.value
    raise AssertionError(f"no dataframe with columns {columns}")


def texts(elements) -> str:
    """The text of the elements as a reader sees it (markdown escapes removed)."""
    return re.sub(r"\\(.)", r"\1", "\n".join(str(e.value) for e in elements))


def demo_features(artifact_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(artifact_dir / schema.USER_FEATURES_FILE)


def metric(at: AppTest, label: str) -> str:
    """The value of the one metric with this label."""
    (value,) = [m.value for m in at.metric if m.label == label]
    return value


def charts(at: AppTest) -> list:
    """The Altair/Vega-Lite charts shown."""
    return list(at.get("vega_lite_chart"))


MIME = {"csv": "text/csv", "parquet": "application/octet-stream"}


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    """Upload a file through the features file_uploader."""
    mime = MIME.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    return at.file_uploader(key="features_file").set_value((name, data, mime)).run()


def set_views(at: AppTest, table: dict[str, list]) -> AppTest:
    """Replace the rows of the views editor through its edit state: delete every row it shows,
    add these (missing values as None)."""
    editor = at.data_editor[0]
    rows = [dict(zip(table, values, strict=True)) for values in zip(*table.values(), strict=True)]
    at.session_state[editor.key] = {
        "edited_rows": {},
        "added_rows": rows,
        "deleted_rows": list(range(len(editor.value))),
    }
    return at.run()


def edit_cell(at: AppTest, row: int, column: str, value) -> AppTest:
    """Change one cell of the views editor through its edit state."""
    editor = at.data_editor[0]
    at.session_state[editor.key] = {"edited_rows": {row: {column: value}}, "added_rows": [], "deleted_rows": []}
    return at.run()


def ms_mode(at: AppTest) -> AppTest:
    """Switch the editor to timestamps in Unix milliseconds."""
    return at.toggle(key="views_in_ms").set_value(True).run()


# --------------------------------------------------------------------------- without artifacts


@pytest.mark.parametrize("page", PAGES)
def test_every_page_explains_missing_artifacts(dashboard_empty, page):
    at = open_page(page)
    no_exception(at)
    assert not at.error
    shown = texts(at.info) + texts(at.warning) + texts(at.sidebar.warning) + texts(at.caption)
    assert "python -m core build" in shown


def test_sidebar_without_artifacts_says_no_build(dashboard_empty):
    at = open_page(PAGES[0])
    assert "No build found" in texts(at.sidebar.warning)
    assert "none (rule fallback)" in texts(at.sidebar.markdown)


def test_ranking_without_model_falls_back_to_rule_and_says_why(dashboard_empty):
    at = open_page("pages/ranking.py")
    warnings = texts(at.warning)
    reason = A.load_artifacts(dashboard_empty).ranking_fallback_reason()  # the API's words too
    assert reason.startswith("model artifact not loaded: no valid manifest.json")
    assert "No verified ranking model" in warnings and f"fallback: {reason}" in warnings
    assert "count + recency rule" in warnings
    assert at.dataframe  # the fixed example was ranked


def test_tampered_model_is_named_on_the_ranking_page(built_artifact_dir, monkeypatch, tmp_path):
    import shutil

    copy = tmp_path / "arts"
    shutil.copytree(built_artifact_dir, copy)
    model = next(copy.glob(schema.RANKING_MODEL_PREFIX + "*" + schema.MODEL_SUFFIX))
    with open(model, "ab") as handle:
        handle.write(b"x")
    monkeypatch.setenv(A.ARTIFACT_DIR_ENV, str(copy))
    at = open_page("pages/ranking.py")
    no_exception(at)
    assert f"model artifact refused: {model.name} sha256 differs from manifest" in texts(at.warning)


def test_anomaly_without_detector_still_validates(dashboard_empty):
    at = open_page("pages/anomaly.py")
    assert "No verified anomaly detector" in texts(at.warning)
    at = upload(at, "f.csv", b"visitorid,events\n1,2\n")
    no_exception(at)
    assert "Missing required column" in texts(at.error)
    at.button(key="use_demo").click().run()
    assert "not built" in texts(at.error)


def test_tampered_artifact_fails_the_manifest_check(built_artifact_dir, monkeypatch, tmp_path):
    import shutil

    copy = tmp_path / "arts"
    shutil.copytree(built_artifact_dir, copy)
    with open(copy / schema.OPERATING_POINT, "a") as handle:
        handle.write(" ")
    monkeypatch.setenv(A.ARTIFACT_DIR_ENV, str(copy))
    at = open_page(PAGES[0])
    no_exception(at)
    assert "Manifest check failed" in texts(at.sidebar.error)
    assert any("sha256" in str(e.value) for e in at.sidebar.markdown)


def test_a_rebuild_or_another_artifact_dir_is_picked_up_without_a_restart(
    dashboard_empty, built_artifact_dir, monkeypatch
):
    at = open_page(PAGES[0])
    assert "No build found" in texts(at.sidebar.warning)
    monkeypatch.setenv(A.ARTIFACT_DIR_ENV, str(built_artifact_dir))  # the cache key changes
    at.run()
    no_exception(at)
    assert "Manifest check passed" in texts(at.sidebar.success)


# --------------------------------------------------------------------------- pages/ and the guard


def test_pages_folder_holds_only_guarded_pages():
    """Legacy multipage mode lists every pages/*.py as a page, so nothing else lives there,
    and each page's first statement after its imports is the entry-point guard."""
    scripts = sorted(p.name for p in (ROOT / "pages").glob("*.py"))
    assert scripts == sorted(Path(p).name for p in PAGES)
    for name in scripts:
        body = [
            n
            for n in ast.parse((ROOT / "pages" / name).read_text()).body[1:]  # after the docstring
            if not isinstance(n, (ast.Import, ast.ImportFrom))
        ]
        assert ast.unparse(body[0]) == "entry_point_guard(__file__)", name


def test_a_page_started_on_its_own_says_how_to_start_the_dashboard(dashboard_empty):
    at = AppTest.from_file(str(ROOT / "pages" / "overview.py"), default_timeout=TIMEOUT).run()
    no_exception(at)
    assert "streamlit run streamlit_app.py" in texts(at.error)
    assert not at.title  # the page itself did not run


# --------------------------------------------------------------------------- overview


def test_best_test_row_matches_served_names():
    from core.ranking.select import best_test_row

    rows = pd.DataFrame(
        {
            "ranker": ["hgb", "hgb", "hgb", "rf"],
            "split": ["validation", "test", "test", "test"],
            "candidate_set": ["history", "history", "history + Markov top-5", "history"],
            "top1": [0.1, 0.2, 0.3, 0.4],
        }
    )
    assert best_test_row(rows, "rf")["top1"] == 0.4
    assert best_test_row(rows, "hgb_markov5")["top1"] == 0.3
    assert best_test_row(rows.drop(columns="candidate_set").iloc[:2], "hgb_markov5")["top1"] == 0.2
    assert best_test_row(rows, "lightgbm") is None and best_test_row(rows, None) is None


def test_sidebar_shows_the_verified_build(dashboard_built):
    at = open_page(PAGES[0])
    no_exception(at)
    arts = A.load_artifacts(dashboard_built)
    assert "Manifest check passed" in texts(at.sidebar.success)
    side = texts(at.sidebar.markdown)
    assert (
        arts.ranking_model_name in side
        and built_date(arts.manifest["built_at"]) in side
        and arts.manifest["built_at"] not in side
    )


def test_overview_shows_dataset_and_headline_kpis(dashboard_built):
    at = open_page("pages/overview.py")
    no_exception(at)
    labels = {m.label: m.value for m in at.metric}
    for label in [
        "Events",
        "Visitors",
        "Items",
        "Categories",
        "Top-1, all test cases",
        "Top-3, all test cases",
        "Coverage",
        "Flagged share",
        "Users flagged",
        "Events removed",
    ]:
        assert label in labels and labels[label] not in ("", "–"), label
    summary = A.load_artifacts(dashboard_built).read_json(schema.DATASET_SUMMARY)
    assert labels["Events"] == f"{summary['events']:,}"
    assert "test cases" in texts(at.caption)
    metrics = A.load_artifacts(dashboard_built).read_json(schema.RANKING_METRICS_JSON)
    served = metrics["best"]
    row = next(r for r in metrics["rankers"] if r["split"] == "test" and r["ranker"] == served)
    # the headline is over all cases (what a visitor experiences); covered-only figures are secondary
    assert labels["Top-1, all test cases"] == f"{100 * row['top1_all']:.1f}%"
    assert f"covered cases (next category among the candidates): top-1 {100 * row['top1']:.1f}%" in texts(at.caption)
    assert "GroupShuffleSplit" not in texts(at.caption) and f"({served})" in texts(at.caption)
    assert metrics["served_model"]["why"] in texts(at.markdown)
    shown = frame(at, "ranker", "top-1, all cases")
    assert {"count + recency rule (rule)", "recency (last viewed first) (recency)"} <= set(shown["ranker"])
    assert len(charts(at)) == 3  # one full-width chart per event type


@pytest.mark.parametrize("page", PAGES)
def test_every_page_says_the_build_is_synthetic(dashboard_built, page):
    at = open_page(page)
    no_exception(at)
    banner = [w.value for w in at.warning if "Synthetic data" in w.value]
    source = A.load_artifacts(dashboard_built).manifest["data"]["source"]
    assert source.startswith("demo generator")
    assert len(banner) == 1 and "python -m core build --raw-dir" in banner[0] and "RetailRocket" in banner[0]


def test_a_build_from_real_files_shows_no_synthetic_banner(built_artifact_dir, monkeypatch, tmp_path):
    real = tmp_path / "real"
    shutil.copytree(built_artifact_dir, real)
    manifest = json.loads((real / schema.MANIFEST).read_text())
    manifest["data"]["source"] = "RetailRocket files"
    (real / schema.MANIFEST).write_text(json.dumps(manifest))
    monkeypatch.setenv(A.ARTIFACT_DIR_ENV, str(real))
    at = open_page(PAGES[0])
    no_exception(at)
    assert not [w for w in at.warning if "Synthetic data" in w.value]


def test_overview_leaves_out_partial_edge_days(dashboard_built):
    at = open_page("pages/overview.py")
    daily = A.load_artifacts(dashboard_built).read_table(schema.DAILY_ACTIVITY)
    cut = sorted(daily.loc[daily["partial"], "date"].unique())
    assert cut, "the demo log starts and ends mid-day"
    caption = texts(at.caption)
    assert "Left out: " + ", ".join(cut) in caption


# --------------------------------------------------------------------------- ranking


def test_ranking_uses_the_model_on_the_real_example(dashboard_built):
    at = open_page("pages/ranking.py")
    no_exception(at)
    name = A.load_artifacts(dashboard_built).ranking_model_name
    assert f"Ranked by the served ranker **{name}**" in texts(at.success)
    assert A.load_artifacts(dashboard_built).served("ranking_model")["reason"] in texts(at.info)  # why served
    table = frame(at, "rank", "categoryid", "score")
    assert list(table.columns) == ["rank", "categoryid", "parent categories", "why", "score"] and len(table) <= 5
    assert table["score"].is_monotonic_decreasing
    assert table["why"].str.match(r"^(first|second|third|#\d+): ").all()  # plain words per category
    assert (table["parent categories"].str.len() > 0).all()  # the build keeps the category tree
    caption = texts(at.caption)
    assert "not a probability" in caption  # the score is explained
    assert "with their parent categories" in caption


def test_top_k_slider_changes_the_number_of_categories(dashboard_built):
    at = ms_mode(open_page("pages/ranking.py"))
    set_views(at, {"timestamp": [1_000 * i for i in range(6)], "categoryid": [1, 2, 3, 4, 5, 6], "itemid": [None] * 6})
    at.slider(key="top_k").set_value(2).run()
    assert len(frame(at, "rank", "categoryid", "score")) == 2
    at.slider(key="top_k").set_value(6).run()
    assert len(frame(at, "rank", "categoryid", "score")) == 6


@pytest.mark.parametrize(
    "table, words",
    [
        ({"timestamp": [0, 1000], "categoryid": [3, -5]}, "row 1: categoryid is negative"),
        ({"timestamp": [0, 1000, 2000, None], "categoryid": [3, -4, 5, 6]}, "row 1: categoryid is negative"),
        ({"timestamp": [0, 1000], "categoryid": [3, 4], "itemid": [-1, 2]}, "row 0: itemid is negative"),
        ({"timestamp": list(range(1001)), "categoryid": [1] * 1001}, "1001 rows, at most 1000"),
    ],
)
def test_editor_validation_errors_name_the_row(dashboard_built, table, words):
    at = ms_mode(open_page("pages/ranking.py"))
    set_views(at, table)
    no_exception(at)
    assert words in texts(at.error)


@pytest.mark.parametrize(
    "table, words",
    [
        ({"timestamp": [0, None], "categoryid": [3, 4]}, "row 1 (no timestamp)"),
        ({"timestamp": [0, 1000, 2000], "categoryid": [3, 4, None]}, "row 2 (no categoryid)"),
    ],
)
def test_a_half_entered_row_is_marked_and_the_rest_is_ranked(dashboard_built, table, words):
    at = ms_mode(open_page("pages/ranking.py"))
    set_views(at, table)
    no_exception(at)
    assert not at.error
    assert words in texts(at.warning) and "incomplete" in texts(at.warning)
    assert 3 in set(frame(at, "rank", "categoryid", "score")["categoryid"])


def test_top_k_beyond_the_candidates_says_why_fewer_are_shown(dashboard_built):
    at = ms_mode(open_page("pages/ranking.py"))
    set_views(at, {"timestamp": [0, 1000, 2000], "categoryid": [3, 4, 5], "itemid": [None] * 3})
    assert at.slider(key="top_k").value == 5
    shown = frame(at, "rank", "categoryid", "score")
    if len(shown) < 5:  # no suggested categories from this build's model
        assert f"Only {len(shown)} candidate categories exist" in texts(at.caption)
    at.slider(key="top_k").set_value(1).run()
    assert "candidate categor" not in texts(at.caption).replace("Only 1 candidate", "")


def test_views_outside_the_window_are_shown_as_not_used(dashboard_built):
    at = ms_mode(open_page("pages/ranking.py"))
    day = 24 * 3_600_000
    set_views(at, {"timestamp": [0, 2 * day, 2 * day + 1000], "categoryid": [3, 4, 5], "itemid": [None] * 3})
    used = frame(at, "time", "used")
    assert used["used"].tolist()[0].startswith("not used: over 24 hours") and used["used"].tolist()[1:] == ["used"] * 2
    assert 3 not in set(frame(at, "rank", "categoryid", "score")["categoryid"])


def test_suggested_categories_are_marked_and_their_placeholders_blank(dashboard_built, monkeypatch):
    import core.ranking.serve

    real = core.ranking.serve.rank

    def with_suggestion(views, model=None, top_k=3):  # as a model with Markov candidates answers
        result = real(views, model, top_k)
        extra = result.ranking.iloc[[-1]].assign(
            categoryid=999, score=-1.0, cnt=0, share=0.0, is_last=0, last_gap_min=1440.0, pos_from_end=100
        )
        result.ranking = pd.concat([result.ranking, extra], ignore_index=True).assign(
            rank=lambda d: range(1, len(d) + 1)
        )
        return result

    monkeypatch.setattr(core.ranking.serve, "rank", with_suggestion)
    at = open_page("pages/ranking.py")
    no_exception(at)
    features = frame(at, "last_gap_min", "pos_from_end", "source")
    row = features[features["categoryid"] == 999].iloc[0]
    assert row["source"] == "suggested (not viewed)" and pd.isna(row["last_gap_min"]) and pd.isna(row["pos_from_end"])
    assert set(features.loc[features["categoryid"] != 999, "source"]) == {"viewed"}
    assert "the visitor never viewed it" in texts(at.caption)


def test_switching_to_pasted_csv_carries_the_edited_table(dashboard_built):
    at = ms_mode(open_page("pages/ranking.py"))
    set_views(at, {"timestamp": [1433152800000, 1433152860000], "categoryid": [7, 8], "itemid": [None, None]})
    at.radio(key="views_mode").set_value("Pasted CSV").run()
    no_exception(at)
    assert at.text_area(key="views_csv").value.splitlines() == [
        "timestamp,categoryid",
        "1433152800000,7",
        "1433152860000,8",
    ]
    assert set(frame(at, "rank", "categoryid", "score")["categoryid"]) == {7, 8}
    at.text_area(key="views_csv").input("timestamp,categoryid\n1433152800000,9\n1433152860000,10\n").run()
    at.radio(key="views_mode").set_value("Table").run()  # and back: the pasted views fill the table
    no_exception(at)
    assert at.data_editor[0].value["categoryid"].tolist() == [9, 10]


def test_switching_timestamp_mode_keeps_the_table(dashboard_built):
    at = ms_mode(open_page("pages/ranking.py"))
    set_views(at, {"timestamp": [1433152800000, 1433152860000], "categoryid": [7, 8], "itemid": [None, None]})
    before = frame(at, "rank", "categoryid", "score")
    assert {7, 8} <= set(before["categoryid"])  # plus Markov candidates
    at.toggle(key="views_in_ms").set_value(False).run()
    no_exception(at)
    assert at.data_editor[0].value["categoryid"].tolist() == [7, 8]  # the edited rows, now as dates
    pd.testing.assert_frame_equal(frame(at, "rank", "categoryid", "score"), before)
    at.toggle(key="views_in_ms").set_value(True).run()
    assert at.data_editor[0].value["timestamp"].tolist() == [1433152800000, 1433152860000]
    pd.testing.assert_frame_equal(frame(at, "rank", "categoryid", "score"), before)


def test_datetime_mode_validation_error(dashboard_built):
    at = open_page("pages/ranking.py")
    assert not at.toggle(key="views_in_ms").value  # date/time cells
    edit_cell(at, 1, "categoryid", -3)
    no_exception(at)
    assert "row 1: categoryid is negative" in texts(at.error)
    edit_cell(at, 1, "timestamp", None)  # half-entered: marked, the other rows ranked
    assert "row 1 (no timestamp)" in texts(at.warning) and not at.error


def test_pasted_csv_accepts_dates_and_names_non_numeric_rows(dashboard_built):
    at = open_page("pages/ranking.py")
    at.radio(key="views_mode").set_value("Pasted CSV").run()
    at.text_area(key="views_csv").input("timestamp,categoryid\n2015-06-01 10:00,12\n2015-06-01 10:05,13\n").run()
    no_exception(at)
    assert not at.error
    assert set(frame(at, "rank", "categoryid", "score")["categoryid"]) == {12, 13}
    at.text_area(key="views_csv").input("timestamp,categoryid\n1433152800000,12\n1433152800001,twelve\n").run()
    assert "line 3: categoryid is not a number" in texts(at.error)  # spreadsheet lines: header = line 1
    assert "0-based" not in texts(at.error)
    at.text_area(key="views_csv").input("timestamp,categoryid\nyesterday,12\n").run()
    assert "timestamp is neither a date and time nor Unix milliseconds (value yesterday)" in texts(at.error)
    at.text_area(key="views_csv").input("").run()
    assert "empty" in texts(at.error)


def test_reset_restores_the_example(dashboard_built):
    at = ms_mode(open_page("pages/ranking.py"))
    set_views(at, {"timestamp": [0, 1], "categoryid": [3, -5]})
    assert at.error
    at.button(key="reset_views").click().run()
    no_exception(at)
    assert not at.error


def test_sampler_draws_a_real_visitor_and_reports_hit_or_miss(dashboard_built):
    at = open_page("pages/ranking.py")
    first = texts(at.markdown)
    at.button(key="sample").click().run()
    no_exception(at)
    assert at.session_state["sample_seed"] == 2
    outcome = texts(at.success) + texts(at.warning) + texts(at.info)
    assert any(
        words in outcome
        for words in ("Hit: the actual next category", "Miss: the actual next category", "Not a candidate: the actual")
    )
    views = frame(at, "role")
    assert "next view (to predict)" in set(views["role"])
    assert texts(at.markdown) != first  # another visitor (or at least another seed)
    # moving the target view re-ranks the earlier history
    for _ in range(10):  # find a visitor with several cases, then move the target view
        if at.select_slider:
            break
        at.button(key="sample").click().run()
    slider = at.select_slider[0]
    slider.set_value(int(slider.options[0])).run()
    no_exception(at)
    assert frame(at, "role")["role"].tolist().count("history (used)") >= 1


def test_a_served_baseline_is_named_with_the_rules_reason(built_artifact_dir, monkeypatch, tmp_path):
    """A build whose serving rule chose a baseline: the page ranks with it and says why."""
    from core.ranking.models import fit_ranker

    served = tmp_path / "served_baseline"
    shutil.copytree(built_artifact_dir, served)
    manifest = json.loads((served / schema.MANIFEST).read_text())
    old = manifest["served"]["ranking_model"]["file"]
    (served / old).unlink()
    del manifest["files"][old]
    name = f"{schema.RANKING_MODEL_PREFIX}recency{schema.MODEL_SUFFIX}"
    (served / name).write_bytes(model_files.dump_model(fit_ranker("recency", pd.DataFrame({"case_id": [0]}))))
    manifest["files"][name] = file_entry(served / name)
    reason = "The baseline recency is served: the best learned ranker, rf, does not beat it (made up for this test)"
    manifest["served"]["ranking_model"] = {
        "file": name,
        "name": "recency",
        "ranker": "recency",
        "candidates": "history",
        "reason": reason,
    }
    (served / schema.MANIFEST).write_text(json.dumps(manifest))
    monkeypatch.setenv(A.ARTIFACT_DIR_ENV, str(served))
    at = ms_mode(open_page("pages/ranking.py"))
    set_views(at, {"timestamp": [0, 1_000, 2_000], "categoryid": [5, 5, 7], "itemid": [None] * 3})
    no_exception(at)
    assert reason in texts(at.info) and "Served ranker: recency." in texts(at.info)
    assert "Ranked by the served ranker **recency**" in texts(at.success)
    assert frame(at, "rank", "categoryid", "score")["categoryid"].tolist() == [7, 5]  # most recent first


def hand_events_csv() -> bytes:
    """The hand-made events of tests/test_evaluate_command.py as CSV bytes."""
    from test_evaluate_command import hand_events

    return hand_events().to_csv(index=False).encode()


def test_ranking_page_evaluates_uploaded_events_with_intervals_and_a_case_download(dashboard_built, downloads):
    at = open_page("pages/ranking.py")
    at.file_uploader(key="eval_file").set_value(("mine.csv", hand_events_csv(), "text/csv")).run()
    no_exception(at)
    served = A.load_artifacts(dashboard_built).ranking_model_name
    shown = frame(at, "ranker", "top-1, all cases").set_index("ranker")
    names = {n.removesuffix(" (served)") for n in shown.index}
    assert {"rule", "recency", "last_category", served} <= names
    rule = shown.loc["rule" if served != "rule" else "rule (served)"]
    # hand-computed in tests/test_evaluate_command.py: 2 of 6 cases hit at rank 1, 3 of 6 covered
    assert rule["top-1, all cases"].startswith("33.3% (") and rule["coverage"].startswith("50.0% (")
    assert rule["top-1, covered cases"].startswith("66.7% (")
    assert shown.loc[f"{served} (served)", "top-1 all cases, minus served"] == "–"
    assert "visitor-bootstrap 95% interval" in texts(at.caption)
    assert "**6 cases**" in texts(at.markdown)
    _, build = only(downloads, "mine_cases_", ".csv")
    cases = pd.read_csv(io.BytesIO(build()))
    assert len(cases) == 6 and {"visitorid", "true_categoryid", "candidate", "hit_top1", "rank_1"} <= set(cases)
    assert cases["candidate"].tolist() == [True, False, True, False, False, True]


def test_ranking_page_explains_events_it_cannot_evaluate(dashboard_built):
    at = open_page("pages/ranking.py")
    raw = pd.read_csv(io.BytesIO(hand_events_csv())).drop(columns="categoryid").to_csv(index=False).encode()
    at.file_uploader(key="eval_file").set_value(("raw.csv", raw, "text/csv")).run()
    no_exception(at)
    assert "no categoryid column" in texts(at.error) and "python -m core build --raw-dir" in texts(at.error)


# --------------------------------------------------------------------------- anomaly


def test_demo_features_are_scored_with_the_frozen_operating_point(dashboard_built, downloads):
    at = open_page("pages/anomaly.py")
    at.button(key="use_demo").click().run()
    no_exception(at)
    features = demo_features(dashboard_built)
    labels = {m.label: m.value for m in at.metric}
    assert labels["Rows"] == f"{len(features):,}"
    scored = pd.read_parquet(dashboard_built / schema.SCORED_USERS)
    assert labels["Flagged"] == f"{int(scored['is_anomaly'].sum()):,}"
    flagged = frame(at, "why")
    assert flagged["anomaly_score"].is_monotonic_decreasing
    assert flagged["why"].str.contains("σ").all()
    assert at.download_button(key="dl_csv").label == "Scored rows as CSV"
    assert at.download_button(key="dl_parquet").label == "Scored rows as parquet"
    stem = schema.USER_FEATURES_FILE.rsplit(".", 1)[0]
    threshold = A.load_artifacts(dashboard_built).detector.threshold_
    # the file name says detector, policy, point and threshold
    tag = f"isolation_forest_keep-buyers_frozen_t{threshold:.4f}"
    assert labels["% of scored users"] == f"{100 * int(scored['is_anomaly'].sum()) / len(features):.1f}%"
    mime, build_csv = downloads[f"{stem}_scored_{tag}.csv"]
    assert mime == "text/csv"
    _, build_parquet = downloads[f"{stem}_scored_{tag}.parquet"]
    csv_data, parquet_data = build_csv(), build_parquet()  # built on click, not kept in the session
    assert "anomaly_downloads" not in at.session_state
    back = pd.read_csv(io.BytesIO(csv_data), float_precision="round_trip")
    assert len(back) == len(features)
    pd.testing.assert_frame_equal(back[features.columns], features, check_dtype=False)
    back_pq = pd.read_parquet(io.BytesIO(parquet_data))
    pd.testing.assert_frame_equal(back_pq[features.columns], features)
    assert back_pq["is_anomaly"].tolist() == scored["is_anomaly"].tolist()
    assert set(back_pq["detector"]) == {"isolation_forest"} and set(back_pq["policy"]) == {"keep visitors who bought"}
    assert set(back_pq["threshold"]) == {A.load_artifacts(dashboard_built).detector.threshold_}
    assert set(back_pq["mode"]) == {"frozen threshold"}
    assert {"line", "row"} & set(flagged.columns) == {"row"} and flagged["row"].min() >= 1  # parquet: 1-based rows


def test_share_slider_flags_that_share_of_the_batch(dashboard_built):
    at = open_page("pages/anomaly.py")
    at.button(key="use_demo").click().run()
    scores = at.session_state["anomaly_scores"]["scores"]
    at.radio(key="anomaly_mode").set_value("a share of this batch").run()
    at.slider(key="share_pct").set_value(10).run()
    no_exception(at)
    # the share only re-thresholds: the scores and the cost of every share are not recomputed
    assert at.session_state["anomaly_scores"]["scores"] is scores
    assert list(at.session_state["anomaly_scores"]["cost"]) == [True]
    n = len(demo_features(dashboard_built))
    kept_buyers = int(metric(at, "Flagged").replace(",", ""))
    at.toggle(key="protect_buyers").set_value(False).run()
    flagged = int(metric(at, "Flagged").replace(",", ""))
    assert abs(flagged - 0.10 * n) <= 0.005 * n + 2
    assert kept_buyers <= flagged  # the policy only ever unflags
    at.slider(key="share_pct").set_value(1).run()
    assert int(metric(at, "Flagged").replace(",", "")) < flagged
    assert sorted(at.session_state["anomaly_scores"]["cost"]) == [False, True]  # once per policy


def test_uploaded_csv_with_bad_rows_lists_them_and_keeps_every_row(dashboard_built, downloads):
    features = demo_features(dashboard_built).head(500).copy()
    features["events"] = features["events"].astype(object)
    features.loc[3, "events"] = "lots"
    features.loc[5, "view"] = -1
    features.loc[7, "night_share"] = np.inf
    features.loc[9, "visitorid"] = features.loc[8, "visitorid"]
    features["note"] = '=HYPERLINK("http://x")'
    at = open_page("pages/anomaly.py")
    at = upload(at, "features.csv", features.to_csv(index=False).encode())
    no_exception(at)
    problems = frame(at, "line", "problem")
    assert {5, 7, 9, 11} <= set(problems["line"])  # spreadsheet lines: header = line 1
    messages = texts(at.warning)
    assert "not numbers" in messages and "negative" in messages and "infinite" in messages
    assert "duplicate" in messages.lower() or ("repeat a visitorid" in messages and "note" in messages)
    assert at.file_uploader(key="features_file").value.name == "features.csv"
    back = pd.read_csv(
        io.BytesIO(only(downloads, "features_scored_isolation_forest_keep-buyers_frozen_t", ".csv")[1]())
    )
    assert len(back) == 500 and back["visitorid"].tolist() == features["visitorid"].tolist()
    assert back.loc[[3, 5, 7], "anomaly_score"].isna().all() and back.loc[[3, 5, 7], "is_anomaly"].isna().all()
    assert back["is_anomaly"].notna().sum() == 497
    assert back["note"].str.startswith("'=").all()  # formula neutralised


def test_detector_select_policy_toggle_and_cost_on_an_upload(dashboard_built, downloads):
    features = demo_features(dashboard_built)
    at = open_page("pages/anomaly.py")
    at = upload(at, "users.parquet", parquet_bytes(features))
    no_exception(at)
    box = at.selectbox(key="anomaly_detector")
    assert set(box.options) == {"isolation_forest", "robust_z", "hbos", "ecod"} and box.value == "isolation_forest"
    cost = texts(at.info) + texts(at.warning)
    assert "This operating point removes" in cost and "transactions" in cost and "buyers (0.0%)" in cost
    box.set_value("robust_z").run()
    no_exception(at)
    arts = A.load_artifacts(dashboard_built)
    assert metric(at, "Threshold") == f"{arts.detectors['robust_z'].threshold_:.4f}"
    at.toggle(key="protect_buyers").set_value(False).run()
    no_exception(at)
    cost = texts(at.info) + texts(at.warning)
    assert "This operating point removes" in cost
    flagged = frame(at, "why")
    assert flagged["why"].str.contains("σ").all()
    threshold = arts.detectors["robust_z"].threshold_
    assert f"users_scored_robust_z_all-visitors_frozen_t{threshold:.4f}.csv" in downloads
    back = pd.read_parquet(
        io.BytesIO(downloads[f"users_scored_robust_z_all-visitors_frozen_t{threshold:.4f}.parquet"][1]())
    )
    assert set(back["detector"]) == {"robust_z"} and set(back["policy"]) == {"flag buyers too"}
    # a low threshold that reaches buyers: the warning appears when flagged users hold > 5% of sales
    at.radio(key="anomaly_mode").set_value("a share of this batch").run()
    at.slider(key="share_pct").set_value(20).run()
    no_exception(at)
    from core.anomaly.policy import cleaning_cost, cost_sentence

    det = arts.detectors["robust_z"]
    want = cleaning_cost(features, det.score_samples(features), [0.2], protect_buyers=False).iloc[0]
    shown = texts(at.warning) if want["txn_warning"] else texts(at.info)
    assert cost_sentence(want) in shown
    assert ("more than 5% of all transactions" in shown) == bool(want["txn_warning"])


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("features.parquet", b"this is not parquet at all", "not a readable parquet"),
        ("features.csv", b"", "is empty"),
        ("features.csv", b"visitorid,events\n", "no rows"),
    ],
)
def test_bad_files_get_a_clear_error(dashboard_built, name, data, words):
    at = open_page("pages/anomaly.py")
    at = upload(at, name, data)
    no_exception(at)
    assert words in texts(at.error)
    assert not charts(at)


def test_missing_and_extra_columns_are_reported(dashboard_built):
    features = demo_features(dashboard_built).head(50).drop(columns=["night_share", "p95_gap_s"])
    features["colour"] = "red"
    at = open_page("pages/anomaly.py")
    at = upload(at, "f.parquet", parquet_bytes(features))
    no_exception(at)
    assert "night_share" in texts(at.error) and "p95_gap_s" in texts(at.error)
    assert "colour" in texts(at.warning)
    assert [b.label for b in at.download_button] == ["Template: features", "Template: raw events"]  # no scored rows


# --------------------------------------------------------------------------- cleaning KPIs


@pytest.mark.e2e  # renders every chart of the page (over 5 s)
def test_cleaning_kpis_page_shows_charts_captions_and_report(dashboard_built):
    at = open_page("pages/cleaning_kpis.py")
    no_exception(at)
    n_charts = len(charts(at))
    assert n_charts >= 3
    arts = A.load_artifacts(dashboard_built)
    if arts.status.get(schema.EVALUATION_JSON) == "ok" and arts.status.get(schema.DETECTOR_QUALITY_JSON) == "ok":
        assert n_charts == 6 and "like for like" in texts(at.caption)  # the difference has its own chart
        assert "spare buyers first" in texts(at.info) or "served detector" in texts(at.info)
        shown = " ".join(" ".join(map(str, d.value.columns)) for d in at.dataframe)
        assert not {"ci_low", "n_cases", "pr_auc"} & set(shown.split())  # display names only
        assert not [e for e in at.expander if "tables)" in e.label]
    assert "This operating point removes" in texts(at.info) + texts(at.warning)
    why = arts.read_json(schema.RANKING_METRICS_JSON)["served_model"]["why"]
    assert f"Served ranker: {arts.ranking_model_name}. {why}." in texts(at.caption)
    cost = frame(at, "operating point", "transactions removed")
    assert (
        len(cost) == 21
        and cost["keep buyers"].all()
        and (cost["buyers removed"] == 0).all()
        and "share of transactions removed" in cost
    )
    at.toggle(key="cost_protect").set_value(False).run()
    at.selectbox(key="cost_detector").set_value("robust_z").run()
    no_exception(at)
    cost = frame(at, "operating point", "transactions removed")
    assert set(cost["detector"]) == {"robust_z"} and not cost["keep buyers"].any()
    assert "different test populations" in texts(at.warning)
    assert "test cases" in texts(at.caption)
    assert "Labels:" in texts(at.caption)
    rankers = at.selectbox(key="ba_ranker").options
    at.selectbox(key="ba_ranker").set_value(rankers[-1]).run()
    no_exception(at)
    for box in at.selectbox:  # every filter of the same-population table
        box.set_value(box.options[-1]).run()
        no_exception(at)
    assert at.get("download_button")


def test_features_uploader_has_its_own_size_limit(dashboard_empty):
    at = open_page("pages/anomaly.py")
    uploader = at.file_uploader(key="features_file")
    assert uploader.proto.max_upload_size_mb == 150  # the widget's limit, under the server-wide cap
    assert sorted(uploader.allowed_type) == [".csv", ".parquet"]


def test_raw_events_upload_is_turned_into_features_and_scored(dashboard_built, downloads):
    events = pd.read_parquet(dashboard_built / schema.CLEAN_EVENTS).head(5_000).drop(columns="categoryid")
    at = open_page("pages/anomaly.py")
    at = upload(at, "raw.csv", events.to_csv(index=False).encode())
    no_exception(at)
    assert "5,000 raw events of" in texts(at.info)
    labels = {m.label: m.value for m in at.metric}
    assert labels["Rows"] == f"{events['visitorid'].nunique():,}"
    back = pd.read_parquet(
        io.BytesIO(only(downloads, "raw_scored_isolation_forest_keep-buyers_frozen_t", ".parquet")[1]())
    )
    from core.anomaly.features import user_features

    expected = user_features(events.assign(categoryid=-1))
    pd.testing.assert_frame_equal(back[expected.columns], expected)


def test_hostile_names_are_shown_as_plain_text(dashboard_built):
    features = demo_features(dashboard_built).head(50)
    features["![x](http://example.invalid/a.png)"] = "<img src=x>"
    features.loc[2, "night_share"] = 1.5
    at = open_page("pages/anomaly.py")
    at = upload(at, "**b** ![y](http://example.invalid/b.png).csv", features.to_csv(index=False).encode())
    no_exception(at)
    raw = "\n".join(str(e.value) for e in [*at.warning, *at.error, *at.info, *at.markdown])
    assert "](http" not in raw and "![" not in raw  # every markdown character escaped
    assert "![x](http://example.invalid/a.png)" in texts(at.warning)  # shown as typed
    assert any("**b** ![y]" in str(t.value) for t in at.text)  # the file name as plain text
    assert "night_share = 1.5" in texts(at.warning) and "line 4" in texts(at.warning)
    assert frame(at, "line", "problem")["line"].tolist() == [4]


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("features.csv", b"\x1f\x8b\x08\x00gz", "gzip-compressed"),
        ("features.csv", b"visitorid,events,events\n1,2,3\n", "repeats the column name 'events'"),
        ("features.parquet", parquet_bytes(pd.DataFrame({"visitorid": [1], "events": [True]})), "'events' is boolean"),
    ],
)
def test_hostile_files_are_refused_on_the_page(dashboard_built, name, data, words):
    at = open_page("pages/anomaly.py")
    at = upload(at, name, data)
    no_exception(at)
    assert words in texts(at.error)
    assert "anomaly_scores" not in at.session_state


def test_removing_the_file_releases_the_table(dashboard_built):
    at = open_page("pages/anomaly.py")
    at = upload(at, "f.parquet", parquet_bytes(demo_features(dashboard_built).head(100)))
    assert "anomaly_input" in at.session_state and "anomaly_scores" in at.session_state
    held = at.session_state["anomaly_input"], at.session_state["anomaly_scores"]
    at = at.file_uploader(key="features_file").set_value(None).run()
    no_exception(at)
    assert "anomaly_input" not in at.session_state and "anomaly_scores" not in at.session_state
    assert held == ({}, {})  # emptied too: anything still holding them no longer holds the table


@pytest.mark.parametrize("page", PAGES)
def test_every_page_has_the_glossary_and_no_code_references(dashboard_built, page):
    at = open_page(page)
    no_exception(at)
    assert [e for e in at.expander if e.label == "What the terms mean"]
    shown = texts(at.caption) + texts(at.markdown) + texts(at.info) + texts(at.warning)
    for code in ("docs/", "DATA_CONTRACT", "core.", ".py", "GroupShuffleSplit"):
        assert code not in shown, code


def test_drift_section_sits_above_the_operating_point_and_goes_into_the_downloads(dashboard_built, downloads):
    features = demo_features(dashboard_built)
    at = open_page("pages/anomaly.py")
    at = upload(at, "sample.parquet", parquet_bytes(features.sample(3000, random_state=3)))
    no_exception(at)
    headers = [h.value for h in at.header]
    assert headers.index("Drift against the training users") < headers.index("3 · Operating point")
    assert metric(at, "Verdict") == "no drift"
    assert "Drift verdict: no drift" in texts(at.success)
    assert "known category" not in texts(at.info)
    at = upload(at, "heavy.parquet", parquet_bytes(features[features["events"] >= 5]))
    no_exception(at)
    assert metric(at, "Verdict") == "drift"
    assert "largest PSI" in texts(at.warning)
    psi = frame(at, "feature", "psi", "band")
    assert psi.iloc[0]["band"] == "drift" and "events" in set(psi.loc[psi["band"] == "drift", "feature"])
    name, build = only(downloads, "heavy_scored_", ".parquet")
    data = build()
    import pyarrow.parquet as pq

    meta = pq.read_metadata(io.BytesIO(data)).metadata
    report = json.loads(meta[b"drift_report"])
    assert report["verdict"] == "drift" and "events" in report["drifted_features"]
    back = pd.read_parquet(io.BytesIO(data))
    assert set(back["drift"]) == {"drift"}


def raw_upload_case(artifact_dir: Path, tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """A raw-events CSV of 3,000 demo visitors with 5 exact duplicate events, and its distinct events."""
    from tests.test_score_command import raw_events

    raw, distinct = raw_events(artifact_dir)
    path = tmp_path / "events.csv"
    raw.to_csv(path, index=False)
    return path, distinct


def test_raw_upload_cleaned_download_and_the_score_command_give_the_same_files(dashboard_built, downloads, tmp_path):
    from core.__main__ import main

    path, distinct = raw_upload_case(dashboard_built, tmp_path)
    at = open_page("pages/anomaly.py")
    at = upload(at, "events.csv", path.read_bytes())
    no_exception(at)
    assert "5 exact duplicate events were dropped" in texts(at.info)
    assert "No event of this file has a known category" in texts(at.info)  # the CSV has no categoryid
    # the committed events are the build's cleaned ones: a share of this batch flags some of them
    at.radio(key="anomaly_mode").set_value("a share of this batch").run()
    at.slider(key="share_pct").set_value(5).run()
    downloads.clear()
    at.run()
    _, scored_csv = only(downloads, "events_scored_", ".csv")
    _, clean_csv = only(downloads, "events_cleaned_", ".csv")
    _, clean_pq = only(downloads, "events_cleaned_", ".parquet")
    out, clean = tmp_path / "out.csv", tmp_path / "clean.csv"
    argv = ["score", str(path), str(out), "--share", "0.05", "--cleaned-events", str(clean)]
    argv += ["--artifacts", str(dashboard_built)]
    assert main(argv) == 0
    assert scored_csv() == out.read_bytes()  # the command's OUT is the page's download
    assert clean_csv() == clean.read_bytes()
    cleaned = pd.read_parquet(io.BytesIO(clean_pq()))
    scored = pd.read_csv(out)
    flagged = set(scored.loc[scored["is_anomaly"] == True, "visitorid"])  # noqa: E712
    assert flagged and not set(cleaned["visitorid"]) & flagged
    assert len(cleaned) == int((~distinct["visitorid"].isin(flagged)).sum())
    assert scored["events"].sum() == len(distinct)


def test_fit_on_batch_search_paging_and_evidence_of_a_flagged_visitor(dashboard_built, downloads, tmp_path):
    from core.__main__ import main

    path, _ = raw_upload_case(dashboard_built, tmp_path)
    at = open_page("pages/anomaly.py")
    at = upload(at, "events.csv", path.read_bytes())
    at.radio(key="anomaly_mode").set_value("a detector fitted on this batch").run()
    at.slider(key="share_pct").set_value(5).run()
    no_exception(at)
    assert "fitted on 3,000 scorable users of this batch (seed 42)" in texts(at.caption)
    _, build = only(downloads, "events_scored_isolation_forest_keep-buyers_fit5_t", ".parquet")
    back = pd.read_parquet(io.BytesIO(build()))
    assert set(back["mode"]) == {"fitted on this batch, top 5%"}
    assert set(back["fit_seed"]) == {42} and set(back["fit_rows"]) == {3000}
    out = tmp_path / "fit.parquet"
    assert (
        main(["score", str(path), str(out), "--share", "0.05", "--fit-on-batch", "--artifacts", str(dashboard_built)])
        == 0
    )
    pd.testing.assert_frame_equal(pd.read_parquet(out), back)
    # every flagged user is in the table (one page here), and a search finds one
    flagged = frame(at, "why")
    n_flagged = int(metric(at, "Flagged").replace(",", ""))
    assert len(flagged) == n_flagged
    target = int(flagged["visitorid"].iloc[3])
    at.text_input(key="flagged_search").set_value(str(target)).run()
    no_exception(at)
    assert frame(at, "why")["visitorid"].tolist() == [target]
    at.text_input(key="flagged_search").set_value("12x").run()
    assert "whole number" in texts(at.warning)
    at.text_input(key="flagged_search").set_value("").run()
    # the drill-down: only the flagged visitors' events are kept, and the chosen one is charted
    at.selectbox(key="evidence_visitor").set_value(str(target)).run()
    no_exception(at)
    kept = at.session_state["anomaly_flagged_events"]["events"]
    assert set(kept["visitorid"]) <= set(flagged["visitorid"])
    shown = [t.value for t in at.text if t.value.startswith(f"Visitor {target}:")]
    assert shown and "Why:" in shown[0]
    assert len(charts(at)) >= 4  # histogram, timeline, hour profile, gaps


def test_labels_upload_measures_every_detector(dashboard_built, tmp_path):
    features = demo_features(dashboard_built)
    at = open_page("pages/anomaly.py")
    at = upload(at, "users.parquet", parquet_bytes(features))
    labels = pd.read_parquet(dashboard_built / schema.SCORED_USERS)[["visitorid", "is_anomaly"]].head(3000)
    csv = labels.rename(columns={"is_anomaly": "is_bot"}).to_csv(index=False)
    csv += "999999999999,1\n"  # not in the file
    assert "Template: labels" in {b.proto.label for b in at.get("download_button")}  # beside its uploader
    at.file_uploader(key="labels_file").set_value(("labels.csv", csv.encode(), "text/csv")).run()
    no_exception(at)
    table = frame(at, "detector", "PR-AUC [95% CI]")
    assert set(table["detector"]) == {"isolation_forest", "robust_z", "hbos", "ecod"}
    assert (table["labelled"] == 3000).all()
    assert "**1** visitorids are not in this file" in "\n".join(m.value for m in at.markdown)
    cost = frame(at, "known_bots_removed", "labelled_normal_removed")
    assert cost["known_bots_removed"].max() > 0
    bad = "visitorid,is_bot\n1,1\n1,0\n"
    at.file_uploader(key="labels_file").set_value(("bad.csv", bad.encode(), "text/csv")).run()
    no_exception(at)
    assert "repeats" in texts(at.error)


# --------------------------------------------------------------------------- reads right (issue 23)


def test_overview_task2_figures_come_from_one_population(dashboard_built):
    at = open_page("pages/overview.py")
    no_exception(at)
    arts = A.load_artifacts(dashboard_built)
    op = arts.read_json(schema.OPERATING_POINT)
    cost = arts.read_table(schema.CLEANING_COST_CSV)
    frozen = cost[(cost["point"] == "frozen") & (cost["protect_buyers"] == op["protect_buyers"])]
    frozen = frozen[frozen["detector"] == op["detector"]].iloc[0]
    labels = {m.label: m.value for m in at.metric}
    # the three headline figures: the same users, threshold and policy
    assert labels["Users flagged"] == f"{frozen['users_removed']:,}"
    assert labels["Events removed"] == f"{100 * frozen['events_removed_share']:.1f}%"
    assert labels["Flagged share"] == f"{100 * frozen['users_removed_share']:.1f}%"
    captions = texts(at.caption)
    assert f"{frozen['events_removed']:,} events removed" in captions
    assert "policy: keep visitors who bought" in captions
    audit = arts.read_table(schema.AUDIT_CSV)
    at_op = audit.iloc[(audit["share"] - op["share"]).abs().argmin()]
    assert "no buyer policy" in captions and f"flags {at_op['n_flagged']:,} users" in captions


def tied_features(artifact_dir: Path, n: int = 1_000, n_tied: int = 150) -> pd.DataFrame:
    """n demo users, of which n_tied are copies (new visitorids) of the most anomalous one:
    n_tied users with exactly the top score."""
    features = demo_features(artifact_dir).head(n).copy()
    scored = pd.read_parquet(artifact_dir / schema.SCORED_USERS)
    top = scored.loc[scored["anomaly_score"].idxmax(), "visitorid"]
    row = demo_features(artifact_dir).set_index("visitorid").loc[top]
    features.iloc[:n_tied, 1:] = row[features.columns[1:]].to_numpy()
    features["visitorid"] = np.arange(1, n + 1)
    features["transaction"] = features["transaction"].where(features.index >= n_tied, 0)
    return features


def test_ties_at_the_threshold_are_said_and_the_real_share_shown(dashboard_built):
    at = open_page("pages/anomaly.py")
    at = upload(at, "tied.parquet", parquet_bytes(tied_features(dashboard_built)))
    at.radio(key="anomaly_mode").set_value("a share of this batch").run()
    at.toggle(key="protect_buyers").set_value(False).run()
    at.slider(key="share_pct").set_value(10).run()
    no_exception(at)
    notes = texts(at.info)
    assert "Ties at the threshold: you asked for 10.0%" in notes
    assert "150 users (15.0% of the scored)" in notes and "share exactly that score" in notes
    labels = {m.label: m.value for m in at.metric}
    assert labels["Flagged"] == "150" and labels["% of scored users"] == "15.0%"
    # a share the ties do not straddle: no note
    at.slider(key="share_pct").set_value(20).run()
    no_exception(at)
    assert "Ties at the threshold" not in texts(at.info)


def test_one_format_per_kind_of_number():
    from dashboard.format import formatted

    frame = pd.DataFrame(
        {
            "share": [0.04],
            "threshold": [0.62848625],
            "users_removed": [5773],
            "users_removed_share": [0.040315],
            "pr_auc": [0.7251],
            "view_removed": [143197],
            "detector": ["rf"],
        }
    )
    html = formatted(frame).to_html()
    for shown in ("4.0%", "0.6285", "5,773", "72.5%", "143,197", "share of users removed", "views removed"):
        assert shown in html, shown
    assert "users_removed_share" not in html and "view_removed" not in html


def test_every_template_is_read_back_as_its_kind():
    from core.anomaly.validation import validate_features
    from core.userfiles.templates import TEMPLATES, template_csv
    from core.userfiles.uploads import read_upload

    assert set(TEMPLATES) == {"features", "raw events", "labels", "ranking events"}
    name, data = template_csv("features")
    features = read_upload(name, data)
    assert features.kind == "features" and validate_features(features.features).ok
    name, data = template_csv("raw events")
    events = read_upload(name, data)
    assert events.kind != "features" and len(events.features) == 3
    ranking = pd.read_csv(io.BytesIO(template_csv("ranking events")[1]))
    assert list(ranking.columns) == ["timestamp", "visitorid", "event", "itemid", "transactionid", "categoryid"]
    labels = pd.read_csv(io.BytesIO(template_csv("labels")[1]))
    assert list(labels.columns) == ["visitorid", "is_bot"] and set(labels["visitorid"]) == set(
        features.features["visitorid"]
    )


def test_uploader_offers_templates(dashboard_built):
    at = open_page("pages/anomaly.py")
    no_exception(at)
    buttons = [b.proto for b in at.get("download_button")]
    assert {b.label for b in buttons} >= {"Template: features", "Template: raw events"}
    at = open_page("pages/ranking.py")
    no_exception(at)
    assert "Template: ranking events" in {b.proto.label for b in at.get("download_button")}


@pytest.mark.parametrize(
    "page, terms",
    [
        ("pages/overview.py", ["top1_all", "rf", "robust_z", "frozen operating point"]),
        ("pages/ranking.py", ["logreg", "hgb", "top1_all"]),
        ("pages/anomaly.py", ["robust_z", "hbos", "ecod", "σ", "intensity", "tight_gaps", "night", "ties"]),
        ("pages/cleaning_kpis.py", ["rf", "PR-AUC", "Jaccard", "top1_all", "95% interval", "no buyer policy"]),
    ],
)
def test_each_page_explains_its_terms(dashboard_built, page, terms):
    at = open_page(page)
    no_exception(at)
    glossary = texts(next(e for e in at.expander if e.label == "What the terms mean").markdown)
    for term in terms:
        assert term in glossary, term


def test_cleaning_kpis_tabs_and_one_what_cleaning_removes(dashboard_built, downloads):
    at = open_page("pages/cleaning_kpis.py")
    no_exception(at)
    assert [t.label for t in at.tabs] == ["Ranking and cleaning", "Detector and its cost"]
    titles = [json.dumps(c.proto.spec) for c in charts(at)]
    assert sum("What cleaning removes" in t for t in titles) == 1
    assert "precision and recall are real" not in texts(at.caption)
    assert "no buyer policy" in texts(at.caption)


def test_raw_event_errors_name_spreadsheet_lines(dashboard_built):
    from core.userfiles.templates import raw_events_template

    events = raw_events_template().astype({"event": object})
    events.loc[4, "event"] = "click"  # the 5th data row: line 6 of the CSV (header = line 1)
    at = open_page("pages/anomaly.py")
    at = upload(at, "events.csv", events.to_csv(index=False).encode())
    no_exception(at)
    assert "line 6 = 'click'" in texts(at.error) and "0-based" not in texts(at.error)
