"""Unit tests of core.userfiles.export: safe CSV, parquet, uploads, views tables, sampler.

Scoring (chunks, progress, de-duplication) is core.anomaly.scoring.score: see tests/test_anomaly.py.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.base.errors import DataError
from core.ranking.serve import rank
from core.userfiles import export as E
from core.userfiles import uploads as U

# --------------------------------------------------------------------------- formula injection


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("x")'])
def test_text_cells_starting_with_a_formula_prefix_are_quoted(cell):
    out = E.neutralise_formulas(pd.DataFrame({"name": [cell, "plain"]}))
    assert out["name"].tolist() == ["'" + cell, "plain"]


def test_numbers_and_non_text_columns_are_untouched():
    df = pd.DataFrame({"x": [-1.5, 2.0], "n": [-3, 4], "b": [True, False], "t": pd.to_datetime(["2015-01-01", None])})
    pd.testing.assert_frame_equal(E.neutralise_formulas(df), df)


def test_object_column_with_mixed_types_only_touches_strings():
    out = E.neutralise_formulas(pd.DataFrame({"m": ["-x", -1, None, "ok"]}))
    assert out["m"].tolist()[:2] == ["'-x", -1] and out["m"].tolist()[3] == "ok"


def test_string_and_categorical_dtypes_are_neutralised():
    df = pd.DataFrame({"s": pd.array(["=a", "b"], dtype="string"), "c": pd.Categorical(["@c", "d"])})
    out = E.neutralise_formulas(df)
    assert list(out["s"]) == ["'=a", "b"] and list(out["c"]) == ["'@c", "d"]


def test_neutralise_does_not_modify_the_input():
    df = pd.DataFrame({"name": ["=1"]})
    E.neutralise_formulas(df)
    assert df["name"].iloc[0] == "=1"


def test_csv_bytes_round_trip_keeps_every_row_and_value():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"visitorid": np.arange(1000), "x": rng.random(1000), "flag": rng.random(1000) > 0.5})
    df.loc[3, "x"] = np.nan
    back = pd.read_csv(io.BytesIO(E.csv_bytes(df)), float_precision="round_trip")
    assert back["visitorid"].tolist() == df["visitorid"].tolist()
    np.testing.assert_array_equal(back["x"].to_numpy(), df["x"].to_numpy())  # exact float round trip
    assert back["flag"].astype(str).str.lower().tolist() == df["flag"].astype(str).str.lower().tolist()


def test_threaded_csv_bytes_equal_one_pass():
    df = pd.DataFrame({"visitorid": np.arange(250_000), "x": np.linspace(0, 1, 250_000), "t": "=a"})
    assert E.csv_bytes(df, threads=3) == E.csv_bytes(df, threads=1)
    assert E.csv_bytes(df, threads=3).count(b"visitorid") == 1


def test_csv_bytes_are_injection_safe():
    text = E.csv_bytes(pd.DataFrame({"a": ["=cmd|' /C calc'!A0", "ok"]})).decode()
    assert "'=cmd" in text and "\n=cmd" not in text and ",=cmd" not in text


def test_parquet_bytes_round_trip():
    df = pd.DataFrame({"visitorid": [5, 1], "anomaly_score": [0.1, np.nan]}, index=[10, 11])
    back = pd.read_parquet(io.BytesIO(E.parquet_bytes(df)))
    pd.testing.assert_frame_equal(back, df.reset_index(drop=True))


def test_with_scores_keeps_all_rows_in_order():
    feats = pd.DataFrame({"visitorid": [9, 3, 7]}, index=[5, 6, 7])
    scored = pd.DataFrame({"anomaly_score": [0.2, np.nan, 0.9], "is_anomaly": [False, False, True]})
    out = E.with_scores(feats, scored)
    assert out["visitorid"].tolist() == [9, 3, 7]
    assert out["is_anomaly"].dtype == "boolean"  # nullable: the unscored row's flag is empty, not False
    assert out["is_anomaly"].isna().tolist() == [False, True, False] and out["is_anomaly"].iloc[2]
    back = pd.read_csv(io.BytesIO(E.csv_bytes(out)), keep_default_na=False)
    assert back["is_anomaly"].astype(str).tolist() == ["False", "", "True"] or back["is_anomaly"].tolist() == [
        "false",
        "",
        "true",
    ]


def _scored_example() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict[str, object]]:
    """Seven rows: a text column empty in the first rows, a formula, an unscored row."""
    feats = pd.DataFrame(
        {
            "visitorid": [9, 3, 7, 1, 2, 5, 4],
            "events": [1, 2, 3, 4, 5, 6, 7],
            "note": [None, None, None, "=cmd", "ok", None, "x"],
        },
        index=range(10, 17),
    )
    scores = np.array([0.2, np.nan, 0.9, 0.1, 0.5, 0.7, 0.3])
    flags = scores > 0.6
    constants = {
        "detector": "robust_z",
        "policy": "flag buyers too",
        "threshold": 0.6000000000000001,
        "mode": "top 30% of this batch",
    }
    return feats, scores, flags, constants


def test_scored_csv_streamed_in_slices_equals_the_whole_table():
    feats, scores, flags, constants = _scored_example()
    whole = E.with_scores(feats, pd.DataFrame({"anomaly_score": scores, "is_anomaly": flags})).assign(**constants)
    streamed = E.csv_from_slices(E.scored_slices(feats, scores, flags, constants, rows=3), threads=2)
    assert streamed == E.csv_bytes(whole) == E.scored_csv_bytes(feats, scores, flags, constants)
    back = pd.read_csv(io.BytesIO(streamed), keep_default_na=False)
    assert back["visitorid"].tolist() == [9, 3, 7, 1, 2, 5, 4]
    assert back["note"].tolist() == ["", "", "", "'=cmd", "ok", "", "x"]
    assert back["anomaly_score"].iloc[1] == "" and back["is_anomaly"].iloc[1] == ""
    assert set(back["detector"]) == {"robust_z"} and set(back["threshold"]) == {0.6000000000000001}


def test_scored_parquet_streamed_in_slices_keeps_types_and_provenance():
    feats, scores, flags, constants = _scored_example()
    data = E.parquet_from_slices(
        E.scored_slices(feats, scores, flags, constants, rows=3),
        E.scored_schema(feats, constants),
        {"detector": "robust_z"},
    )
    back = pd.read_parquet(io.BytesIO(data))
    whole = E.with_scores(feats, pd.DataFrame({"anomaly_score": scores, "is_anomaly": flags})).assign(**constants)
    pd.testing.assert_frame_equal(back, pd.read_parquet(io.BytesIO(E.parquet_bytes(whole))))
    assert back["note"].tolist()[3:5] == ["=cmd", "ok"]  # typed as text although the first slice is empty
    assert back["is_anomaly"].isna().tolist() == [False, True, False, False, False, False, False]
    assert pq.read_metadata(io.BytesIO(data)).metadata[b"detector"] == b"robust_z"
    meta = pq.read_metadata(io.BytesIO(E.scored_parquet_bytes(feats, scores, flags, constants))).metadata
    assert float(meta[b"threshold"]) == constants["threshold"] and meta[b"mode"] == b"top 30% of this batch"


def test_scored_downloads_of_an_empty_table_have_the_header():
    feats, scores, flags, constants = _scored_example()
    empty = feats.iloc[:0]
    header = pd.read_csv(io.BytesIO(E.scored_csv_bytes(empty, scores[:0], flags[:0], constants)))
    assert len(header) == 0 and list(header.columns) == [
        "visitorid",
        "events",
        "note",
        "anomaly_score",
        "is_anomaly",
        "detector",
        "policy",
        "threshold",
        "mode",
    ]
    back = pd.read_parquet(io.BytesIO(E.scored_parquet_bytes(empty, scores[:0], flags[:0], constants)))
    assert len(back) == 0 and "detector" in back.columns


# --------------------------------------------------------------------------- uploads


def test_read_csv_and_parquet_uploads():
    df = pd.DataFrame({"visitorid": [1, 2], "events": [3, 4]})
    pd.testing.assert_frame_equal(U.read_table("f.csv", df.to_csv(index=False).encode())[0], df)
    pd.testing.assert_frame_equal(U.read_table("F.PARQUET", E.parquet_bytes(df))[0], df)


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("f.xlsx", b"abc", "extension"),
        ("features", b"abc", "extension"),
        ("f.csv", b"", "empty"),
        ("f.parquet", b"", "empty"),
        ("f.parquet", b"PAR1 this is not parquet", "not a readable parquet"),
        ("f.csv", b"visitorid,events\n", "no rows"),
        ("f.csv", b"\n\n", "no header"),
        ("f.csv", b"a,b\n1,2,3,4\n", "could not be parsed"),
        ("f.csv", b"a,b\n1,2\n1,2,3,4\n", "could not be parsed"),
        ("f.csv", b"\xff\xfe\x00bad", "UTF-16"),
    ],
)
def test_bad_uploads_raise_a_data_error_that_says_what_is_wrong(name, data, words):
    with pytest.raises(DataError, match=words):
        U.read_table(name, data)


def test_truncated_parquet_is_refused():
    data = E.parquet_bytes(pd.DataFrame({"visitorid": range(100)}))
    with pytest.raises(DataError, match="parquet"):
        U.read_table("f.parquet", data[: len(data) // 2])


# --------------------------------------------------------------------------- views


def test_datetimes_to_ms_and_back():
    ms = E.datetimes_to_ms(pd.Series(pd.to_datetime(["2015-06-01 10:00:00.123", None])))
    assert ms.tolist() == [1433152800123, None]
    assert E.ms_to_datetimes([1433152800123]).iloc[0] == pd.Timestamp("2015-06-01 10:00:00.123")


def test_tz_aware_datetimes_are_converted_to_utc_ms():
    ts = pd.Series(pd.to_datetime(["2015-06-01 12:00"]).tz_localize("Europe/Paris"))
    assert E.datetimes_to_ms(ts).tolist() == [1433152800000]


def test_views_from_editor_datetime_and_ms_modes():
    table = pd.DataFrame(
        {"timestamp": pd.to_datetime(["2015-06-01 10:00", None]), "categoryid": [1.0, None], "itemid": [None, None]}
    )
    views = E.views_from_editor(table, timestamps_in_ms=False)
    assert views.to_dict("records") == [
        {"timestamp": 1433152800000, "categoryid": 1},
        {"timestamp": None, "categoryid": None},
    ]
    table = pd.DataFrame({"timestamp": [1433152800000, 5], "categoryid": [3, -2], "itemid": [7, None]})
    views = E.views_from_editor(table, timestamps_in_ms=True)
    assert views.to_dict("records")[1] == {"timestamp": 5, "categoryid": -2, "itemid": None}


def test_views_from_csv_text_accepts_ms_and_dates_and_keeps_bad_cells():
    views = E.views_from_csv_text("timestamp,categoryid,itemid\n2015-06-01 10:00,12,\n1433152800123,abc,5\n,3.5,4")
    assert views["timestamp"].tolist() == [1433152800000, 1433152800123, None]
    assert views["categoryid"].tolist() == [12, "abc", 3.5]
    assert views["itemid"].tolist() == [None, 5, 4]


@pytest.mark.parametrize("text, words", [("", "empty"), ("a,b\n1,2", "no column")])
def test_views_from_csv_text_errors(text, words):
    with pytest.raises(DataError, match=words):
        E.views_from_csv_text(text)


def test_views_feed_core_ranking_with_row_named_errors():
    good = E.views_from_csv_text("timestamp,categoryid\n1433152800000,12\n1433152860000,13\n1433152920000,12")
    assert rank(good, None, 2).ranking["categoryid"].tolist() == [12, 13]
    bad = E.views_from_csv_text("timestamp,categoryid\n1433152800000,12\n1433152860000,abc")
    with pytest.raises(DataError, match="row 1"):
        rank(bad, None, 2)
