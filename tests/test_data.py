"""Tests of core.reading.data on tiny hand-made RetailRocket-layout files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.base.errors import DataError
from core.base.schema import EVENT_COLUMNS, EVENT_TYPES
from core.reading import categories, data

HEADER = "timestamp,visitorid,event,itemid,transactionid"


def write(path: Path, text: str) -> Path:
    """Write text exactly as given (no newline added)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


# Unsorted, an extra column, two exact duplicates (rows 4 and 7 on the event columns), no
# trailing newline.
EVENTS = "\n".join(
    [
        HEADER + ",extra",
        "500,1,view,10,,a",
        "100,2,view,10,,b",
        "300,1,addtocart,20,,c",
        "500,1,view,10,,a2",
        "700,3,transaction,30,9.0,d",
        "200,2,view,40,,e",
        "300,1,addtocart,20,,c",
        "250,3,view,10,,f",
        "400,4,view,10,,g",
    ]
)
PROPS1 = (
    "\n".join(
        [
            "timestamp,itemid,property,value",
            "200,10,categoryid,1",
            "100,20,available,1",
            "400,10,categoryid,2",
            "300,20,790,n123.000",
            "300,20,categoryid,5",
        ]
    )
    + "\n"
)
PROPS2 = (
    "\n".join(
        [
            "timestamp,itemid,property,value",
            "600,10,categoryid,3",
            "300,20,categoryid,6",  # same item and timestamp as part1's "5": last in file order wins
        ]
    )
    + "\n"
)
TREE = "categoryid,parentid\n1,\n2,1\n3,1\n5,\n6,5\n"


@pytest.fixture()
def raw(tmp_path: Path) -> Path:
    d = tmp_path / "raw"
    write(d / "events.csv", EVENTS)
    write(d / "item_properties_part1.csv", PROPS1)
    write(d / "item_properties_part2.csv", PROPS2)
    write(d / "category_tree.csv", TREE)
    return d


def test_load_raw_full(raw: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="core.reading.data"):
        df = data.load_raw(raw)
    assert list(df.columns) == list(EVENT_COLUMNS)
    assert df["timestamp"].tolist() == [500, 100, 300, 700, 200, 250, 400]  # file order kept
    assert df["visitorid"].tolist() == [1, 2, 1, 3, 2, 3, 4]
    assert df["event"].tolist() == ["view", "view", "addtocart", "transaction", "view", "view", "view"]
    assert df["itemid"].tolist() == [10, 10, 20, 30, 40, 10, 10]
    # 500 -> snapshot@400=2; 100 precedes all -> earliest=1; 300 exactly at the item-20 snapshots
    # (5 then 6 in file order) -> 6; items 30, 40 have none -> -1; 250 -> @200=1; 400 exactly -> 2.
    assert df["categoryid"].tolist() == [2, 1, 6, -1, -1, 1, 2]
    np.testing.assert_array_equal(df["transactionid"].to_numpy(), [np.nan, np.nan, np.nan, 9.0, np.nan, np.nan, np.nan])
    assert list(df.index) == list(range(7))
    for col in ("timestamp", "visitorid", "itemid", "categoryid"):
        assert df[col].dtype == np.int64
    assert df["transactionid"].dtype == np.float64
    assert isinstance(df["event"].dtype, pd.CategoricalDtype)
    assert list(df["event"].cat.categories) == list(EVENT_TYPES)
    expected = {
        "rows_read": 9,
        "duplicates_dropped": 2,
        "events_kept": 7,
        "visitors": 4,
        "items": 4,
        "unknown_category_events": 2,
        "category_snapshots": 5,
    }
    assert df.attrs["load_report"] == expected
    assert "duplicates_dropped" in caplog.text


def test_load_raw_with_report(raw: Path) -> None:
    df, report = data.load_raw_with_report(raw)
    assert isinstance(report, data.LoadReport)
    assert report.as_dict() == df.attrs["load_report"]
    assert (report.rows_read, report.duplicates_dropped, report.events_kept) == (9, 2, 7)


def test_optional_files_absent(tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS)
    df, report = data.load_raw_with_report(tmp_path)
    assert df["categoryid"].tolist() == [-1] * 7
    assert report.as_dict() == {
        "rows_read": 9,
        "duplicates_dropped": 2,
        "events_kept": 7,
        "visitors": 4,
        "items": 4,
        "unknown_category_events": 7,
        "category_snapshots": 0,
    }


def test_only_part2_present(tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS)
    write(tmp_path / "item_properties_part2.csv", PROPS2)
    df, report = data.load_raw_with_report(tmp_path)
    # item 10 only has the snapshot @600 -> all item-10 events get 3 (earliest)
    assert df["categoryid"].tolist() == [3, 3, 6, -1, -1, 3, 3]
    assert report.category_snapshots == 2


def test_trailing_newline_and_crlf_same_result(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "events.csv", EVENTS)
    b = write(tmp_path / "b" / "events.csv", EVENTS.replace("\n", "\r\n") + "\r\n")
    da, db = data.load_raw(a.parent), data.load_raw(b.parent)
    pd.testing.assert_frame_equal(da, db)
    assert len(da) == 7


# ----------------------------------------------------------------------------- as-of join


def test_asof_categories_cases() -> None:
    snap_ts = np.array([400, 200, 600, 300, 300, 50])
    snap_item = np.array([10, 10, 10, 20, 20, 30])
    snap_cat = np.array([2, 1, 3, 5, 6, 9])
    ev_ts = np.array([100, 200, 399, 400, 10_000, 300, 299, 5, 1])
    ev_item = np.array([10, 10, 10, 10, 10, 20, 20, 99, 30])
    got = categories.asof_categories(ev_ts, ev_item, snap_ts, snap_item, snap_cat)
    assert got.dtype == np.int64
    assert got.tolist() == [1, 1, 1, 2, 3, 6, 6, -1, 9]


def test_asof_no_duplication_and_order() -> None:
    rng = np.random.default_rng(0)
    n = 500
    ev_item = rng.integers(0, 20, n)
    ev_ts = rng.integers(0, 1000, n)
    snap_item = rng.integers(0, 15, 80)
    snap_ts = rng.integers(0, 1000, 80)
    snap_cat = np.arange(80) + 100
    got = categories.asof_categories(ev_ts, ev_item, snap_ts, snap_item, snap_cat)
    assert len(got) == n
    # reference: one event at a time (test only)
    for i in range(n):
        m = snap_item == ev_item[i]
        if not m.any():
            assert got[i] == -1
            continue
        idx = np.flatnonzero(m)
        before = idx[snap_ts[idx] <= ev_ts[i]]
        if len(before):
            best = before[snap_ts[before] == snap_ts[before].max()][-1]
        else:
            best = idx[snap_ts[idx] == snap_ts[idx].min()][-1]
        assert got[i] == snap_cat[best], i


def test_asof_empty_snapshots() -> None:
    got = categories.asof_categories(
        np.array([1, 2]), np.array([3, 4]), np.array([], np.int64), np.array([], np.int64), np.array([], np.int64)
    )
    assert got.tolist() == [-1, -1]


# ----------------------------------------------------------------------------- streaming


def _many_props(n_items: int) -> tuple[str, list[tuple[int, int, int]]]:
    lines = ["timestamp,itemid,property,value"]
    expected = []
    for i in range(n_items):
        lines.append(f"{1000 + i},{i},888,{i * 7} 12 n3.0")
        lines.append(f"{2000 + i},{i},categoryid,{i % 13}")
        expected.append((2000 + i, i, i % 13))
    return "\n".join(lines) + "\n", expected


def test_streaming_many_blocks(tmp_path: Path) -> None:
    text, expected = _many_props(300)
    p = write(tmp_path / "item_properties_part1.csv", text)
    assert p.stat().st_size > 20 * 256
    snaps = categories.read_category_snapshots(p, block_size=256)
    assert list(snaps.columns) == ["timestamp", "itemid", "categoryid"]
    assert list(map(tuple, snaps.to_numpy().tolist())) == expected
    assert (snaps.dtypes == np.int64).all()


def test_streaming_bad_value_in_late_block_reports_global_row(tmp_path: Path) -> None:
    text, _ = _many_props(300)
    lines = text.splitlines()
    # data row 500 (lines[500], file line 501): a categoryid row with a non-digit value
    assert lines[500].split(",")[2] == "categoryid"
    lines[500] = lines[500].rsplit(",", 1)[0] + ",12x"
    p = write(tmp_path / "item_properties_part1.csv", "\n".join(lines) + "\n")
    write(tmp_path / "events.csv", EVENTS)
    with pytest.raises(DataError) as exc:
        data.load_raw(tmp_path, block_size=256)
    msg = str(exc.value)
    assert "item_properties_part1.csv" in msg and "'value'" in msg
    assert "row 500 = '12x'" in msg and "1-based" in msg
    assert p.exists()


def test_streaming_whole_load_matches_single_block(raw: Path) -> None:
    pd.testing.assert_frame_equal(data.load_raw(raw, block_size=64), data.load_raw(raw))


# ----------------------------------------------------------------------------- bad input


def _events_with(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    write(tmp_path / "events.csv", "\n".join([header] + rows) + "\n")
    return tmp_path


GOOD = ["1,1,view,1,", "2,1,view,2,", "3,2,view,3,"]


@pytest.mark.parametrize(
    ("rows", "column", "needle"),
    [
        (["1,1,view,1,", "2,abc,view,2,", "3,2,view,3,"], "visitorid", "row 2 = 'abc'"),
        (["1,1,view,1,", "2,1,view,2,", "1.5,2,view,3,"], "timestamp", "row 3 = '1.5'"),
        (["1,1,view,,", "2,1,view,2,", "3,2,view,3,"], "itemid", "row 1 = ''"),
        (["1,1,view,1,", "2,1,click,2,", "3,2,VIEW,3,"], "event", "row 2 = 'click', row 3 = 'VIEW'"),
        (["1,1,view,1,", "2,1,transaction,2,x1", "3,2,view,3,"], "transactionid", "row 2 = 'x1'"),
    ],
)
def test_bad_event_values(tmp_path: Path, rows: list[str], column: str, needle: str) -> None:
    d = _events_with(tmp_path, rows)
    with pytest.raises(DataError) as exc:
        data.load_raw(d)
    msg = str(exc.value)
    assert "events.csv" in msg
    assert f"'{column}'" in msg
    assert needle in msg
    assert "1-based data rows" in msg and "Fix:" in msg


def test_bad_values_at_most_five_shown(tmp_path: Path) -> None:
    rows = [f"{i},v{i},view,1," for i in range(8)]
    with pytest.raises(DataError) as exc:
        data.load_raw(_events_with(tmp_path, rows))
    msg = str(exc.value)
    assert "row 5 = 'v4'" in msg and "row 6" not in msg and "(8 offending row(s) in all)" in msg


def test_misnamed_column(tmp_path: Path) -> None:
    d = _events_with(tmp_path, ["1,1,view,1,"], header="timestamp,visitorId,event,itemid,transactionid")
    with pytest.raises(DataError) as exc:
        data.load_raw(d)
    msg = str(exc.value)
    assert "events.csv" in msg and "['visitorid']" in msg
    assert "'visitorId' -> 'visitorid'" in msg
    assert "found columns ['timestamp', 'visitorId', 'event', 'itemid', 'transactionid']" in msg


def test_missing_column(tmp_path: Path) -> None:
    d = _events_with(tmp_path, ["1,1,view,1"], header="timestamp,visitorid,event,itemid")
    with pytest.raises(DataError, match=r"events\.csv: missing column\(s\) \['transactionid'\]"):
        data.load_raw(d)


def test_empty_and_header_only(tmp_path: Path) -> None:
    write(tmp_path / "a" / "events.csv", "")
    with pytest.raises(DataError, match=r"events\.csv: the file is empty \(0 bytes\)"):
        data.load_raw(tmp_path / "a")
    write(tmp_path / "b" / "events.csv", HEADER + "\n")
    with pytest.raises(DataError, match=r"events\.csv: the file has a header but no data rows"):
        data.load_raw(tmp_path / "b")


def test_missing_file_and_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        data.load_raw(tmp_path / "nope")
    write(tmp_path / "item_properties_part1.csv", PROPS1)
    with pytest.raises(DataError, match=r"events\.csv is missing.*item_properties_part1\.csv"):
        data.load_raw(tmp_path)


def test_bad_property_timestamp_and_missing_property_column(tmp_path: Path) -> None:
    _events_with(tmp_path, GOOD)
    write(
        tmp_path / "item_properties_part2.csv", "timestamp,itemid,property,value\n1,1,categoryid,4\nxx,2,categoryid,5\n"
    )
    with pytest.raises(DataError) as exc:
        data.load_raw(tmp_path)
    msg = str(exc.value)
    assert "item_properties_part2.csv" in msg and "'timestamp'" in msg and "row 2 = 'xx'" in msg
    write(tmp_path / "item_properties_part2.csv", "timestamp,itemid,prop,value\n1,1,categoryid,4\n")
    with pytest.raises(DataError, match=r"item_properties_part2\.csv: missing column\(s\) \['property'\]"):
        data.load_raw(tmp_path)


def test_bad_rows_of_other_properties_are_ignored(tmp_path: Path) -> None:
    _events_with(tmp_path, GOOD)
    write(
        tmp_path / "item_properties_part1.csv", "timestamp,itemid,property,value\nzz,1,available,q\n5,1,categoryid,4\n"
    )
    df, report = data.load_raw_with_report(tmp_path)
    assert df["categoryid"].tolist() == [4, -1, -1]
    assert report.category_snapshots == 1


def test_category_tree(tmp_path: Path) -> None:
    tree = categories.read_category_tree(write(tmp_path / "category_tree.csv", TREE))
    assert tree["categoryid"].tolist() == [1, 2, 3, 5, 6]
    assert tree["categoryid"].dtype == np.int64
    assert str(tree["parentid"].dtype) == "Int64"
    assert tree["parentid"].isna().tolist() == [True, False, False, True, False]
    assert tree["parentid"].dropna().tolist() == [1, 1, 5]
    write(tmp_path / "category_tree.csv", "categoryid,parentid\n1,\n2,x\n")
    with pytest.raises(DataError) as exc:
        categories.read_category_tree(tmp_path / "category_tree.csv")
    assert "category_tree.csv" in str(exc.value) and "'parentid'" in str(exc.value)
    assert "row 2 = 'x'" in str(exc.value)


def test_bad_tree_in_raw_dir_raises(raw: Path) -> None:
    write(raw / "category_tree.csv", "categoryid,parentid\nabc,\n")
    with pytest.raises(DataError, match=r"category_tree\.csv.*'categoryid'.*row 1 = 'abc'"):
        data.load_raw(raw)


# ----------------------------------------------------------------------------- prepared events


def test_read_events_round_trip(raw: Path, tmp_path: Path) -> None:
    df = data.load_raw(raw)
    out = tmp_path / "x" / "events.parquet"
    data.write_events(df, out)
    back = data.read_events(out)
    plain = df.copy()
    plain.attrs = {}
    pd.testing.assert_frame_equal(back, plain)
    assert data.fingerprint(back) == data.fingerprint(df)


def test_corrupt_parquet(tmp_path: Path) -> None:
    p = write(tmp_path / "events.parquet", "this is not parquet at all")
    with pytest.raises(DataError, match=r"events\.parquet: not a readable parquet file"):
        data.read_events(p)
    with pytest.raises(DataError, match="not found"):
        data.read_events(tmp_path / "missing.parquet")


def _prepared(**over: object) -> pd.DataFrame:
    base = {
        "timestamp": [1, 2, 3],
        "visitorid": [7, 7, 8],
        "event": ["view", "addtocart", "view"],
        "itemid": [4, 5, 6],
        "transactionid": [np.nan, np.nan, np.nan],
        "categoryid": [1, -1, 2],
    }
    base.update(over)
    return pd.DataFrame(base)


def test_validate_events_coerces() -> None:
    df = data.validate_events(_prepared(visitorid=[7.0, 7.0, 8.0], extra=[0, 0, 0]), "mem")
    assert list(df.columns) == list(EVENT_COLUMNS)
    assert df["visitorid"].dtype == np.int64 and df["visitorid"].tolist() == [7, 7, 8]
    assert list(df["event"].cat.categories) == list(EVENT_TYPES)


@pytest.mark.parametrize(
    ("over", "column", "needle"),
    [
        ({"visitorid": [7.0, np.nan, 8.0]}, "visitorid", "row 1 = nan"),
        ({"timestamp": [1.0, 2.0, 3.5]}, "timestamp", "row 2 = 3.5"),
        ({"itemid": ["4", "x", "6"]}, "itemid", "row 1 = 'x'"),
        ({"event": ["view", "view", "click"]}, "event", "row 2 = 'click'"),
        ({"categoryid": [1, -2, 2]}, "categoryid", "row 1 = -2"),
    ],
)
def test_validate_events_errors(over: dict, column: str, needle: str, tmp_path: Path) -> None:
    p = tmp_path / "bad.parquet"
    _prepared(**over).to_parquet(p, index=False)
    with pytest.raises(DataError) as exc:
        data.read_events(p)
    msg = str(exc.value)
    assert "bad.parquet" in msg and f"'{column}'" in msg and needle in msg
    assert "0-based row positions" in msg


def test_validate_events_missing_and_empty() -> None:
    with pytest.raises(DataError, match=r"mem: missing column\(s\) \['categoryid'\]"):
        data.validate_events(_prepared().drop(columns="categoryid"), "mem")
    with pytest.raises(DataError, match="no rows"):
        data.validate_events(_prepared().iloc[:0], "mem")


def test_fingerprint() -> None:
    a = data.validate_events(_prepared(), "mem")
    fp = data.fingerprint(a)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert data.fingerprint(a.copy()) == fp
    b = a.copy()
    b.loc[2, "itemid"] = 99
    assert data.fingerprint(b) != fp
    assert data.fingerprint(a.iloc[::-1].reset_index(drop=True)) != fp


# ----------------------------------------------------------------------------- the chunked scan


def _old_reader(path: Path) -> pd.DataFrame:
    """The streaming reader before issue 22 (open_csv, 1 MiB blocks, every line parsed): the reference."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from core.base.schema import ITEM_PROPERTY_COLUMNS
    from core.reading.csv_checks import _CSV_ROWS, _raise_bad_strings, _string_options

    parts: dict[str, list[np.ndarray]] = {"timestamp": [], "itemid": [], "categoryid": []}
    offset = 0
    try:
        opts = pacsv.ReadOptions(block_size=1 << 20)
        for batch in pacsv.open_csv(path, read_options=opts, convert_options=_string_options(ITEM_PROPERTY_COLUMNS)):
            mask = pc.equal(batch.column("property"), "categoryid")
            rows = np.asarray(pc.indices_nonzero(mask).to_numpy(), dtype=np.int64)
            if len(rows):
                sub = batch.filter(mask)
                for col, kind, out in (
                    ("timestamp", "int", "timestamp"),
                    ("itemid", "int", "itemid"),
                    ("value", "digits", "categoryid"),
                ):
                    _raise_bad_strings(str(path), col, sub.column(col), kind, offset, rows)
                    parts[out].append(pc.cast(sub.column(col), pa.int64()).to_numpy())
            offset += batch.num_rows
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: the CSV cannot be parsed ({_CSV_ROWS}) ({exc})") from exc
    return pd.DataFrame({k: np.concatenate(v) if v else np.empty(0, np.int64) for k, v in parts.items()})


PROPS_TRICKY = [
    "timestamp,itemid,property,value",
    "200,10,categoryid,1",
    '100,20,888,"a,b,categoryid,c"',  # commas (and the word) inside a quoted value
    '150,21,"categoryid",7',  # a quoted property name is still categoryid
    '160,22,categoryid,"8"',
    "300,20,790,n123.000 categoryid",
    "",  # a blank line: skipped, not counted
    "400,10,categoryid,2",
    "410,11,xcategoryid,3",
    "420,12,categoryidx,4",
    "430,13,available,categoryid",
    "440,14,categoryid,0",
]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("trailing", [True, False])
@pytest.mark.parametrize("block_size", [16, 64, None])
def test_scan_matches_old_reader(tmp_path: Path, ending: str, trailing: bool, block_size: int | None) -> None:
    text = ending.join(PROPS_TRICKY) + (ending if trailing else "")
    p = write(tmp_path / "item_properties_part1.csv", text)
    got = categories.read_category_snapshots(p, block_size=block_size)
    pd.testing.assert_frame_equal(got, _old_reader(p))
    assert got.values.tolist() == [[200, 10, 1], [150, 21, 7], [160, 22, 8], [400, 10, 2], [440, 14, 0]]


def test_scan_other_column_order_and_extra_column(tmp_path: Path) -> None:
    lines = ["value,extra,property,itemid,timestamp", "5,x,categoryid,7,100", "6,y,888,8,200", "9,,categoryid,1,300"]
    p = write(tmp_path / "item_properties_part1.csv", "\n".join(lines))
    got = categories.read_category_snapshots(p, block_size=8)
    pd.testing.assert_frame_equal(got, _old_reader(p))
    assert got.values.tolist() == [[100, 7, 5], [300, 1, 9]]


def test_scan_random_files_match_old_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    props = np.array(["categoryid", "888", "available", '"categoryid"', "790"])
    for trial in range(8):
        n = 200  # about 6 KB: over 100 blocks of 50 bytes a file
        prop = props[rng.integers(0, len(props), n)]
        value = np.where(rng.random(n) < 0.2, '"1,2 n3.000"', rng.integers(0, 50, n).astype(str))
        value = np.where(np.char.find(prop, "categoryid") >= 0, rng.integers(0, 50, n).astype(str), value)
        lines = [
            f"{t},{i},{pr},{v}" for t, i, pr, v in zip(rng.integers(0, 10**12, n), rng.integers(0, 999, n), prop, value)
        ]
        ending = ["\n", "\r\n"][trial % 2]
        p = write(tmp_path / f"p{trial}.csv", ending.join(["timestamp,itemid,property,value", *lines]) + ending)
        expected = _old_reader(p)
        for block_size in (50, 333, 4096):
            pd.testing.assert_frame_equal(categories.read_category_snapshots(p, block_size=block_size), expected)


@pytest.mark.parametrize(
    ("line", "column", "needle"),
    [
        ("6,1,categoryid,12x", "value", "row 3 = '12x'"),
        ("6,1,categoryid,-4", "value", "row 3 = '-4'"),
        ("6,1,categoryid,", "value", "row 3 = ''"),
        ("6.5,1,categoryid,4", "timestamp", "row 3 = '6.5'"),
        ("6,a1,categoryid,4", "itemid", "row 3 = 'a1'"),
    ],
)
@pytest.mark.parametrize("block_size", [8, None])
def test_scan_bad_category_values_same_message_as_old_reader(
    tmp_path: Path, line: str, column: str, needle: str, block_size: int | None
) -> None:
    text = "\r\n".join(["timestamp,itemid,property,value", "1,1,categoryid,4", "2,2,888,x,y", line, "7,1,888,zz"])
    text = text.replace("2,2,888,x,y", '2,2,888,"x,y"')
    p = write(tmp_path / "item_properties_part2.csv", text)
    with pytest.raises(DataError) as old:
        _old_reader(p)
    with pytest.raises(DataError) as new:
        categories.read_category_snapshots(p, block_size=block_size)
    assert str(new.value) == str(old.value)
    msg = str(new.value)
    assert "item_properties_part2.csv" in msg and f"'{column}'" in msg and needle in msg and "1-based" in msg


@pytest.mark.parametrize("bad", ["5,1,888", "5,1,888,1,2", "5,1,888,a,b,c"])
def test_scan_line_that_does_not_parse_names_file_and_row(tmp_path: Path, bad: str) -> None:
    # A non-category line with a wrong field count: the old reader failed too; this one names the row.
    lines = ["timestamp,itemid,property,value"] + [f"{i},1,888,v" for i in range(30)] + [bad, "9,9,categoryid,3"]
    p = write(tmp_path / "item_properties_part1.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError):
        _old_reader(p)
    for block_size in (40, None):
        with pytest.raises(DataError) as exc:
            categories.read_category_snapshots(p, block_size=block_size)
        msg = str(exc.value)
        assert "item_properties_part1.csv" in msg and "at data row 31" in msg and "Fix:" in msg


def test_scan_both_files_in_file_order(raw: Path) -> None:
    files = [raw / "item_properties_part1.csv", raw / "item_properties_part2.csv"]
    got = categories.read_category_files(files, block_size=16)
    pd.testing.assert_frame_equal(got, pd.concat([_old_reader(f) for f in files], ignore_index=True))
    assert got["categoryid"].tolist() == [1, 2, 5, 3, 6]
    with pytest.raises(DataError, match="header but no data rows"):
        categories.read_category_files([write(raw / "empty.csv", "timestamp,itemid,property,value\r\n\r\n")])
