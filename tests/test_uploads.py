"""Uploads: hostile and broken files refused with a message, every accepted file keeps its rows in
order, every rule of the contract's valid feature rows, and the API applying the same validator."""

from __future__ import annotations

import bz2
import gzip
import io
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import skip_or_fail

from core.anomaly.features import user_features
from core.anomaly.validation import validate_features
from core.base.errors import DataError
from core.base.schema import USER_FEATURES
from core.userfiles import uploads as U
from core.userfiles.export import csv_bytes, parquet_bytes, with_scores


def events_table(n: int = 400, seed: int = 3) -> pd.DataFrame:
    """Raw RetailRocket-like events (unsorted, with transactions and categories)."""
    rng = np.random.default_rng(seed)
    event = rng.choice(["view", "addtocart", "transaction"], n, p=[0.85, 0.1, 0.05])
    return pd.DataFrame(
        {
            "timestamp": 1_433_000_000_000 + rng.integers(0, 10**9, n),
            "visitorid": rng.integers(0, 60, n),
            "event": event,
            "itemid": rng.integers(0, 90, n),
            "transactionid": np.where(event == "transaction", rng.integers(0, 50, n), np.nan),
            "categoryid": rng.integers(-1, 12, n),
        }
    )


FEATURES = user_features(events_table())
CSV = FEATURES.to_csv(index=False).encode()


def pq_of(table: pa.Table | pd.DataFrame) -> bytes:
    """Parquet bytes of an Arrow table or a DataFrame."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def with_column(name: str, values: pa.Array) -> bytes:
    """The features parquet with one column replaced by an Arrow array of another type."""
    table = pa.Table.from_pandas(FEATURES.head(len(values)), preserve_index=False)
    return pq_of(table.set_column(table.schema.get_field_index(name), name, values))


def zipped(data: bytes) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as z:
        z.writestr("features.csv", data)
    return sink.getvalue()


N = 3
TS = pa.array(pd.to_datetime(["2015-06-01", "2015-06-02", "2015-06-03"]))
HEADER = ",".join(["visitorid", *USER_FEATURES])
EV = events_table(20)

BAD_FILES = [
    ("f.xlsx", b"abc", "extension"),
    ("features", b"abc", "extension"),
    ("f.csv", b"", "is empty"),
    ("f.parquet", b"", "is empty"),
    ("f.csv", b"visitorid,events\n", "no rows"),
    ("f.csv", (HEADER + "\r\n").encode(), "no rows"),
    ("f.parquet", pq_of(FEATURES.head(0)), "no rows"),
    ("f.csv", b"\n\n", "no header line"),
    ("f.csv", gzip.compress(CSV), "gzip-compressed"),
    ("f.csv", zipped(CSV), "zip archive"),
    ("f.csv", bz2.compress(CSV), "bzip2"),
    ("f.csv", b"\x28\xb5\x2f\xfd" + CSV[:50], "zstd"),
    ("f.csv", pq_of(FEATURES), "Rename it to .parquet"),
    ("f.parquet", gzip.compress(pq_of(FEATURES)), "gzip-compressed"),
    ("f.parquet", zipped(CSV), "zip archive"),
    ("f.csv", "\ufeffvisitorid".encode("utf-16"), "UTF-16"),
    ("f.csv", b"visitorid,ev\x00ents\n1,2\n", "NUL bytes"),
    ("f.csv", "visitorid,événements\n1,2\n".encode("latin-1"), "not UTF-8"),
    ("f.csv", b"a" * (U.MAX_HEADER_BYTES + 10), "first line is longer"),
    ("f.parquet", b"PAR1 this is not parquet at all", "not a readable parquet"),
    ("f.parquet", b"just some text", "not a readable parquet"),
    ("f.parquet", pq_of(FEATURES)[: len(pq_of(FEATURES)) // 2], "not a readable parquet"),
    ("f.csv", b"a,b\n1,2,3,4\n", "could not be parsed"),
    ("f.csv", b"a,b\n1,2\n1,2,3,4\n", "could not be parsed"),
    ("f.csv", b'a,b\n"1,2\n', "could not be parsed"),
    ("f.csv", b"visitorid,events,events\n1,2,3\n", "repeats the column name 'events'"),
    ("f.csv", b"visitorid,events,events.1\n1,2,3\n", "how pandas renames a repeated 'events'"),
    ("f.csv", b"visitorid;events;events\n1;2;3\n", "repeats the column name 'events'"),
    ("f.parquet", pq_of(pa.table([[1], [2], [3]], names=["visitorid", "events", "events"])), "repeats the column"),
    ("f.parquet", pq_of(pa.table([[1], [2], [3]], names=["visitorid", "view", "view.2"])), "how pandas renames"),
    (
        "f.csv",
        (",".join(f"c{i}" for i in range(U.MAX_COLUMNS + 1)) + "\n" + ",".join("1" * (U.MAX_COLUMNS + 1))).encode(),
        "at most 64 are accepted",
    ),
    ("f.parquet", with_column("night_share", pa.array([True, False, True])), "'night_share' is boolean"),
    ("f.parquet", with_column("p95_gap_s", TS), "'p95_gap_s' is a date, time or duration"),
    ("f.parquet", with_column("p95_gap_s", pa.array(pd.to_timedelta([1, 2, 3], unit="s"))), "'p95_gap_s' is a date"),
    ("f.parquet", with_column("visitorid", pa.array(pd.to_datetime(["2015-06-01"] * 3).date)), "'visitorid' is a date"),
    ("f.parquet", with_column("events", pa.array([[1], [2, 3], []])), "'events' is nested"),
    ("f.parquet", with_column("view", pa.array([{"a": 1}] * 3)), "'view' is nested"),
    (
        "f.parquet",
        with_column("view", pa.array([[("a", 1)]] * 3, pa.map_(pa.string(), pa.int64()))),
        "'view' is nested",
    ),
    ("f.parquet", with_column("visitorid", pa.array([b"=1", b"2", b"3"])), "'visitorid' is binary"),
    (
        "f.parquet",
        with_column("uniq_cats", pa.array([True, None, False]).dictionary_encode()),
        "'uniq_cats' is boolean",
    ),
    (
        "f.csv",
        f"{HEADER},flag\n".encode() + b"\n".join(line + b",True" for line in CSV.splitlines()[1:4]) + b"\n",
        "'flag' is boolean",
    ),
    (
        "f.parquet",
        pq_of(pa.table({"visitorid": pa.array(np.zeros(U.MAX_FEATURE_ROWS + 1, np.int8))})),
        "1,500,001 feature rows",
    ),
    ("f.csv", b"visitorid,events\n" + b"1,1\n" * (U.MAX_FEATURE_ROWS + 1), "at most 1,500,000"),
    (
        "e.parquet",
        pq_of(
            pa.table(
                {
                    "timestamp": np.zeros(U.MAX_EVENT_ROWS + 1, np.int8),
                    "event": pa.array(["view"] * (U.MAX_EVENT_ROWS + 1)).dictionary_encode(),
                }
            )
        ),
        "2,000,001 events",
    ),
    ("e.csv", EV.drop(columns="itemid").to_csv(index=False).encode(), "lacks itemid"),
    ("e.csv", EV.assign(event=["view"] * 19 + ["click"]).to_csv(index=False).encode(), "must be one of"),
    ("e.csv", EV.assign(timestamp=EV["timestamp"] + 0.5).to_csv(index=False).encode(), "whole numbers"),
    ("e.csv", EV.assign(categoryid=-5).to_csv(index=False).encode(), "categoryid"),
    ("e.parquet", pq_of(EV.assign(timestamp=pd.to_datetime(EV["timestamp"], unit="ms"))), "'timestamp' is a date"),
    ("e.csv", EV.assign(transactionid="abc").to_csv(index=False).encode(), "transactionid"),
]


@pytest.mark.parametrize("name, data, words", BAD_FILES, ids=[f"{i}-{w[:30]}" for i, (_, _, w) in enumerate(BAD_FILES)])
def test_bad_file_is_refused_with_a_message(name, data, words):
    with pytest.raises(DataError, match=None) as info:
        U.read_upload(name, data)
    assert words in str(info.value), str(info.value)


def test_at_least_forty_bad_files():
    assert len(BAD_FILES) >= 40


def test_decoded_size_is_checked_on_the_footer(monkeypatch):
    monkeypatch.setattr(U, "MAX_UNCOMPRESSED_MB", 0)
    with pytest.raises(DataError, match="expands to"):
        U.read_upload("f.parquet", parquet_bytes(FEATURES))


ACCEPTED = [
    ("f.csv", CSV, ""),
    ("f.parquet", parquet_bytes(FEATURES), ""),
    ("f.pq", parquet_bytes(FEATURES), ""),
    ("F.CSV", CSV.replace(b"\n", b"\r\n"), ""),
    ("f.csv", CSV.rstrip(b"\n"), ""),
    ("f.csv", b"\xef\xbb\xbf" + CSV, ""),
    ("f.csv", FEATURES.to_csv(index=False, sep=";").encode(), "semicolon-separated"),
    ("f.csv", FEATURES.to_csv(index=False, sep="\t").encode(), "tab-separated"),
]


@pytest.mark.parametrize("name, data, note", ACCEPTED)
def test_accepted_features_keep_every_row_in_order(name, data, note):
    up = U.read_upload(name, data)
    assert up.kind == "features"
    pd.testing.assert_frame_equal(up.features, FEATURES, check_dtype=False)
    assert note in " ".join(up.notes)
    assert validate_features(up.features).ok


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("with_category", [True, False])
def test_raw_events_become_the_builds_features(fmt, with_category):
    events = events_table()
    if not with_category:
        events = events.drop(columns="categoryid")
    data = events.to_csv(index=False).encode() if fmt == "csv" else parquet_bytes(events)
    up = U.read_upload(f"events.{fmt}", data)
    expected = user_features(events if with_category else events.assign(categoryid=-1))
    assert up.kind == "events" and up.n_events == len(events)
    pd.testing.assert_frame_equal(up.features, expected)
    assert "raw events" in " ".join(up.notes)
    assert validate_features(up.features).ok


# --------------------------------------------------------------------------- rules of valid feature rows

ROW = 1  # the broken row's position: spreadsheet line 3


def broken(**changes) -> pd.DataFrame:
    """Three valid visitors with row ROW changed."""
    t = FEATURES.head(3).copy().astype(object)
    for col, value in changes.items():
        t.loc[ROW, col] = value
    return t


def first(col: str) -> object:
    return FEATURES.loc[ROW, col]


RULES = [
    ({"night_share": 1.5}, "night_share", "outside [0, 1]"),
    ({"short_gap_share": 1.01}, "short_gap_share", "outside [0, 1]"),
    ({"short_gap_share": -0.1}, "short_gap_share", "negative"),
    ({"events": first("events") + 1}, "events", "view + addtocart + transaction != events"),
    ({"events": 0, "view": 0, "addtocart": 0, "transaction": 0}, "events", "events < 1"),
    ({"uniq_items": 0, "uniq_item_ratio": 0.0}, "uniq_items", "1 <= uniq_items <= events"),
    ({"uniq_items": first("events") + 1}, "uniq_items", "1 <= uniq_items <= events"),
    ({"uniq_cats": first("events") + 1}, "uniq_cats", "0 <= uniq_cats <= events"),
    ({"n_sessions": 0}, "n_sessions", "1 <= n_sessions <= events"),
    ({"n_sessions": first("events") + 1}, "n_sessions", "1 <= n_sessions <= events"),
    ({"uniq_item_ratio": 0.123}, "uniq_item_ratio", "uniq_items / events"),
    ({"add_to_view_rate": 7.0}, "add_to_view_rate", "addtocart / max(view, 1)"),
    ({"txn_to_cart_rate": 3.0}, "txn_to_cart_rate", "transaction / max(addtocart, 1)"),
    ({"events_per_active_day": 0.5}, "events_per_active_day", "1 <= events_per_active_day"),
    ({"events_per_active_day": first("events") + 1}, "events_per_active_day", "<= events"),
    ({"sessions_per_day": 0.0}, "sessions_per_day", "0 < sessions_per_day"),
    ({"sessions_per_day": first("n_sessions") + 1}, "sessions_per_day", "<= n_sessions"),
    ({"cat_entropy": np.log2(max(first("uniq_cats"), 1)) + 0.01}, "cat_entropy", "log2(max(uniq_cats, 1))"),
    ({"p95_gap_s": -1.0}, "p95_gap_s", "negative"),
    (
        {
            "events": 1,
            "view": 1,
            "addtocart": 0,
            "transaction": 0,
            "uniq_items": 1,
            "uniq_cats": 0,
            "cat_entropy": 0.0,
            "n_sessions": 1,
            "events_per_active_day": 1.0,
            "sessions_per_day": 1.0,
            "uniq_item_ratio": 1.0,
            "add_to_view_rate": 0.0,
            "txn_to_cart_rate": 0.0,
            "p95_gap_s": 12.0,
        },
        "p95_gap_s",
        "events < 2",
    ),
    ({"view": first("view") + 0.5}, "view", "not whole numbers"),
    ({"visitorid": 1.5}, "visitorid", "not an integer visitorid"),
    ({"visitorid": 2**64}, "visitorid", "not an integer visitorid"),
    ({"visitorid": "abc"}, "visitorid", "not an integer visitorid"),
    ({"visitorid": None}, "visitorid", "not an integer visitorid"),
    ({"night_share": np.nan}, "night_share", "are empty"),
    ({"night_share": np.inf}, "night_share", "infinite"),
    ({"night_share": "lots"}, "night_share", "not numbers"),
]


@pytest.mark.parametrize("changes, column, words", RULES, ids=[f"{c}-{w[:20]}" for _, c, w in RULES])
def test_a_row_breaking_a_rule_is_named_and_not_scored(changes, column, words):
    t = broken(**changes)
    up = U.read_upload("f.csv", t.to_csv(index=False).encode())  # through a real file
    val = validate_features(up.features)
    text = " ".join(val.messages())
    assert f"Column '{column}'" in text and words in text and "line 3" in text, text
    assert val.scorable.tolist() == [True, False, True]
    scores = np.where(val.scorable, 0.5, np.nan)
    out = with_scores(up.features, pd.DataFrame({"anomaly_score": scores, "is_anomaly": val.scorable}))
    assert out["is_anomaly"].isna().tolist() == [False, True, False]  # empty flag, not False
    assert len(out) == 3


def test_rates_may_exceed_one_and_rounding_is_allowed():
    t = FEATURES.copy()
    t["uniq_item_ratio"] = t["uniq_item_ratio"] * (1 + 5e-10)
    t["night_share"] = np.where(t["night_share"] == 1, 1 + 5e-10, t["night_share"])
    assert validate_features(t).ok
    assert (FEATURES["add_to_view_rate"] <= 1).all() or validate_features(FEATURES).ok


def test_duplicates_are_reported_but_scored():
    t = FEATURES.head(3).copy()
    t.loc[2, "visitorid"] = t.loc[0, "visitorid"]
    val = validate_features(t)
    assert val.scorable.all() and "(also line 2)" in " ".join(val.messages())


def test_datetime_and_bool_frames_are_never_read_as_numbers():
    t = FEATURES.head(3).copy()
    t["p95_gap_s"] = pd.to_datetime(t["p95_gap_s"], unit="s")
    t["night_share"] = True
    val = validate_features(t)
    assert not val.scorable.any()


def test_csv_neutralises_header_names_and_bytes_cells():
    df = pd.DataFrame({"=HYPERLINK(1)": [1], "b": [b"@SUM(A1)"], "c": [b"ok"]})
    text = csv_bytes(df).decode()
    assert text.splitlines()[0].startswith("\"'=HYPERLINK") and "'@SUM(A1)" in text and "b'" not in text


# --------------------------------------------------------------------------- the API, same validator


@pytest.fixture(scope="module")
def client(light_artifact_dir):
    """The API over the committed build, its forests cut to a few trees: the validator is the subject."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(light_artifact_dir)) as c:
        if c.get("/health").json()["anomaly"] != "available":
            skip_or_fail("no built detector: run `python -m core build`")
        yield c


def test_api_refuses_the_rows_the_dashboard_does_not_score(client):
    users = FEATURES.head(3).to_dict("records")
    users[1]["events"] += 1  # view + addtocart + transaction != events
    resp = client.post("/anomaly", json={"users": users})
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert detail[0]["loc"] == ["body", "users", 1, "events"] and "view + addtocart" in detail[0]["msg"]
    ok = client.post("/anomaly", json={"users": FEATURES.head(3).to_dict("records")})
    assert ok.status_code == 200 and len(ok.json()["users"]) == 3


def test_text_late_in_a_long_csv_is_reported_not_crashed():
    t = pd.concat([FEATURES] * 800, ignore_index=True)  # longer than one parser chunk
    t["visitorid"] = np.arange(len(t))
    data = t.to_csv(index=False).encode()
    last = f"\n{len(t) - 1},".encode()
    at = data.rindex(last)
    data = data[: at + len(last)] + b"lots" + data[data.index(b",", at + len(last)) :]
    up = U.read_upload("f.csv", data)
    assert len(up.features) == len(t) and up.features["visitorid"].tolist() == t["visitorid"].tolist()
    text = " ".join(validate_features(up.features).messages())
    assert "Column 'events'" in text and f"line {len(t) + 1}" in text and "'lots'" in text
    csv_bytes(up.features)  # the download still builds
