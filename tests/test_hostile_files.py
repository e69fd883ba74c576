"""Hostile files, round three (issue 21): uploads read as the anomaly page reads them
(``read_upload``, then the validator), artifacts as the dashboard and the API load them.

Each hostile file is built here; every test failed before its fix.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skops.io as sio
from test_uploads import CSV, EV, FEATURES

from core.anomaly.validation import validate_features
from core.base import schema as S
from core.base.errors import DataError
from core.store import artifacts, model_files, safe_read
from core.store.artifacts import load_artifacts
from core.store.manifest import MANIFEST_KEY_ENV, file_entry
from core.userfiles import uploads as U
from core.userfiles.export import parquet_bytes


@pytest.fixture
def copy_dir(tmp_path, light_artifact_dir) -> Path:
    """A copy of the committed artifacts, its forests cut to a few trees (conftest.light_artifact_dir)."""
    target = tmp_path / "arts"
    shutil.copytree(light_artifact_dir, target)
    return target


def _relist(path: Path, name: str, entry: dict | None = None) -> None:
    """Rewrite a file's manifest entry, as someone who can write the folder (no key set) would."""
    manifest = json.loads((path / S.MANIFEST).read_text())
    manifest["files"][name] = entry or file_entry(path / name)
    (path / S.MANIFEST).write_text(json.dumps(manifest))


# --------------------------------------------------------------------------- 1. CR-only line endings


def test_a_csv_with_cr_only_line_endings_is_read():
    up = U.read_upload("f.csv", CSV.replace(b"\n", b"\r"))
    pd.testing.assert_frame_equal(up.features, FEATURES, check_dtype=False)


def test_cr_only_lines_count_towards_the_row_limit():
    data = b"visitorid,events\r" + b"1,1\r" * (U.MAX_FEATURE_ROWS + 1)
    with pytest.raises(DataError, match="at most 1,500,000"):
        U.read_upload("f.csv", data)


# --------------------------------------------------------------------------- 2. broken pandas metadata


def _with_pandas_meta(change) -> bytes:
    """The features parquet with its pandas metadata changed by ``change(meta) -> bytes``."""
    table = pa.Table.from_pandas(FEATURES, preserve_index=False)
    meta = json.loads(table.schema.metadata[b"pandas"])
    raw = change(meta)
    sink = io.BytesIO()
    pq.write_table(table.replace_schema_metadata({b"pandas": raw}), sink)
    return sink.getvalue()


def _dumped(update):
    def change(meta):
        update(meta)
        return json.dumps(meta).encode()

    return change


def _column(meta, name):
    return next(c for c in meta["columns"] if c["name"] == name)


BROKEN_PANDAS_META = {
    "not json": lambda meta: b"not json",
    "index column nope": _dumped(lambda m: m.update(index_columns=["nope"])),
    "numpy_type Int64Blah": _dumped(lambda m: _column(m, "view").update(numpy_type="Int64Blah")),
    "datetimetz Fake/Zone": _dumped(
        lambda m: _column(m, "p95_gap_s").update(
            pandas_type="datetimetz", numpy_type="datetime64[ns, Fake/Zone]", metadata={"timezone": "Fake/Zone"}
        )
    ),
    "column_indexes Bad/Zone": _dumped(
        lambda m: m.update(
            column_indexes=[
                {
                    "name": None,
                    "field_name": None,
                    "pandas_type": "datetimetz",
                    "numpy_type": "datetime64[ns]",
                    "metadata": {"timezone": "Bad/Zone"},
                }
            ]
        )
    ),
}


@pytest.mark.parametrize("case", BROKEN_PANDAS_META)
def test_broken_pandas_metadata_is_ignored_with_a_note(case):
    data = _with_pandas_meta(BROKEN_PANDAS_META[case])
    with pytest.raises(Exception):  # noqa: B017  (the file is hostile: pandas itself cannot read it)
        pd.read_parquet(io.BytesIO(data))
    up = U.read_upload("f.parquet", data)
    pd.testing.assert_frame_equal(up.features, FEATURES, check_dtype=False)
    assert any("pandas metadata" in note and "ignored" in note for note in up.notes), up.notes
    assert validate_features(up.features).ok


# --------------------------------------------------------------------------- 3. dictionary bomb


def _dictionary_bomb(rows: int, value_bytes: int) -> bytes:
    """``rows`` copies of one ``value_bytes`` string, dictionary-encoded, without the Arrow S."""
    table = pa.table(
        {
            "visitorid": pa.array(np.arange(rows)),
            "note": pa.array(["x" * value_bytes] * rows).dictionary_encode(),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, store_schema=False, use_dictionary=True, compression="snappy")
    return sink.getvalue()


def test_a_dictionary_bomb_is_refused_on_its_decoded_size(monkeypatch):
    monkeypatch.setattr(U, "MAX_UNCOMPRESSED_MB", 20)
    data = _dictionary_bomb(2_000, 50_000)  # 100 MB decoded
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    assert len(data) < 200_000 and meta.row_group(0).total_byte_size < 20 * 2**20  # the footer looks small
    with pytest.raises(DataError, match=r"expands to 95 MB when decoded; at most 20 MB"):
        U.read_upload("bomb.parquet", data)


def test_a_numeric_dictionary_bomb_is_refused_before_reading(monkeypatch):
    monkeypatch.setattr(U, "MAX_UNCOMPRESSED_MB", 10)
    n = 1_000_000
    table = pa.table({"visitorid": pa.array(np.zeros(n, np.int64)), "events": pa.array(np.ones(n, np.int64))})
    sink = io.BytesIO()
    pq.write_table(table, sink, store_schema=False, use_dictionary=True)
    with pytest.raises(DataError, match="expands to"):
        U.read_upload("bomb.parquet", sink.getvalue())


def test_text_columns_are_still_read_as_text():
    t = FEATURES.assign(note=["a", None, "=1+1"] * (len(FEATURES) // 3) + ["b"] * (len(FEATURES) % 3))
    data = parquet_bytes(t)
    up = U.read_upload("f.parquet", data)
    assert up.features["note"].dtype == pd.read_parquet(io.BytesIO(data))["note"].dtype  # not categorical
    assert up.features["note"].tolist() == t["note"].tolist()
    pd.testing.assert_frame_equal(up.features[FEATURES.columns], FEATURES)


# --------------------------------------------------------------------------- 4. one rule, page and API


@pytest.mark.parametrize("timestamp", [-1, -86_400_000, 9_000_000_000_000_000_000, S.MAX_TIMESTAMP_MS + 1])
def test_raw_events_with_timestamps_outside_1970_to_2100_are_refused(timestamp):
    events = EV.copy()
    events.loc[3, "timestamp"] = timestamp
    with pytest.raises(DataError, match=r"column 'timestamp' must lie between 1970-01-01 and 2100-01-01"):
        U.read_upload("e.csv", events.to_csv(index=False).encode())


@pytest.mark.parametrize("visitorid, scored", [(-1, True), (2**62, True), (2**63 - 1, True), (2**63, False)])
def test_a_visitorid_is_scored_on_the_page_exactly_when_it_is_within_int64(visitorid, scored):
    t = FEATURES.head(3).copy().astype({"visitorid": object})
    t.loc[1, "visitorid"] = visitorid
    up = U.read_upload("f.csv", t.to_csv(index=False).encode())
    val = validate_features(up.features)
    assert val.scorable.tolist() == [True, scored, True]
    if not scored:
        assert "Column 'visitorid'" in " ".join(val.messages()) and "within int64" in " ".join(val.messages())


def test_the_page_and_the_api_share_one_rule():
    from pydantic import ValidationError

    from api import schemas

    assert schemas.MAX_TIMESTAMP_MS is S.MAX_TIMESTAMP_MS and schemas.MAX_VISITOR_ID is S.MAX_VISITOR_ID
    user = {k: (v.item() if hasattr(v, "item") else v) for k, v in FEATURES.iloc[0].to_dict().items()}
    user["visitorid"] = int(user["visitorid"])
    for vid in (2**63, -(2**63) - 1):  # outside int64: refused by both
        with pytest.raises(ValidationError):
            schemas.UserFeatures.model_validate({**user, "visitorid": vid})
    for vid in (-1, 2**62, S.MIN_VISITOR_ID, S.MAX_VISITOR_ID):  # within int64: valid on both
        ok = schemas.UserFeatures.model_validate({**user, "visitorid": vid})
        assert validate_features(pd.DataFrame([ok.model_dump()])).ok


# --------------------------------------------------------------------------- 5. page checksums


def _corrupt_last_value_byte(data: bytes, column: str) -> bytes:
    """Flip the last byte of a column chunk: a value byte of its last data page."""
    meta = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    chunk = next(meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == column)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    end = start + chunk.total_compressed_size - 1
    out = bytearray(data)
    out[end] ^= 0x01
    return bytes(out)


def test_a_corrupted_page_with_a_checksum_is_refused():
    sink = io.BytesIO()
    table = pa.Table.from_pandas(FEATURES, preserve_index=False)
    pq.write_table(table, sink, compression="none", use_dictionary=False, write_page_checksum=True)
    bad = _corrupt_last_value_byte(sink.getvalue(), "uniq_item_ratio")
    assert not pd.read_parquet(io.BytesIO(bad)).equals(FEATURES)  # without the check: wrong values, no error
    with pytest.raises(DataError, match="damaged.*CRC"):
        U.read_upload("f.parquet", bad)


def test_our_parquet_downloads_carry_page_checksums():
    bad = _corrupt_last_value_byte(parquet_bytes(FEATURES), "uniq_item_ratio")
    with pytest.raises(OSError, match="CRC"):
        pq.read_table(io.BytesIO(bad), page_checksum_verification=True)


@pytest.mark.parametrize("name", [S.USER_FEATURES_FILE, S.SCORED_USERS, S.CLEAN_EVENTS, S.RANKING_DATASET])
def test_our_parquet_artifacts_carry_page_checksums(copy_dir, name):
    path = copy_dir / name
    column = pq.ParquetFile(path).schema_arrow.names[0]
    path.write_bytes(_corrupt_last_value_byte(path.read_bytes(), column))
    _relist(copy_dir, name)
    arts = load_artifacts(copy_dir)
    assert arts.read_table(name) is None
    assert "CRC" in arts.unreadable[name]


# --------------------------------------------------------------------------- 6. skops zip bomb


def _bomb_detector(copy_dir: Path, n_zeros: int) -> bytes:
    """The served detector with an array of zeros added: a small file that expands a lot."""
    det = load_artifacts(copy_dir).detector
    det.padding_ = np.zeros(n_zeros)
    return sio.dumps(det, compression=model_files.zipfile.ZIP_DEFLATED)


def test_a_skops_zip_bomb_is_refused_before_it_is_unzipped(copy_dir, monkeypatch):
    monkeypatch.setitem(model_files.MAX_UNZIPPED_BYTES, "Detector", 32 * 2**20)
    data = _bomb_detector(copy_dir, 8_000_000)  # 64 MB of zeros in a file of ~0.7 MB
    assert len(data) < 2 * 2**20
    (copy_dir / S.DETECTOR).write_bytes(data)
    _relist(copy_dir, S.DETECTOR)
    arts = load_artifacts(copy_dir)
    assert arts.detector is None
    status = arts.status[S.DETECTOR]
    assert "unzips to" in status and "at most 32 MiB for a Detector" in status, status
    assert arts.ranking_model is not None  # the rest still loads


def test_every_model_kind_has_an_unzipped_cap():
    from core.anomaly.detector import Detector
    from core.ranking.models import RankingModel

    assert set(model_files.MAX_UNZIPPED_BYTES) == {RankingModel.__name__, Detector.__name__}
    assert all(0 < cap <= 1 << 30 for cap in model_files.MAX_UNZIPPED_BYTES.values())


# --------------------------------------------------------------------------- 7. size caps before hashing


@pytest.mark.parametrize("kind", ["model", "json"])
def test_a_file_over_its_kind_cap_is_refused_before_it_is_read(copy_dir, monkeypatch, kind):
    name = S.DETECTOR if kind == "model" else S.OPERATING_POINT
    cap = safe_read.max_bytes(name)
    with open(copy_dir / name, "r+b") as handle:  # sparse: nothing is written
        handle.truncate(cap + 1)
    _relist(copy_dir, name, {"sha256": "0" * 64, "bytes": cap + 1})  # its true size
    hashed: list[str] = []
    real = artifacts.hashlib.sha256
    monkeypatch.setattr(artifacts.hashlib, "sha256", lambda *a: hashed.append("x") or real(*a))
    arts = load_artifacts(copy_dir)
    assert arts.status[name].startswith("refused"), arts.status[name]
    assert any(f"at most {cap:,} bytes" in p and name in p for p in arts.problems), arts.problems


def test_the_caps_cover_every_kind_the_build_writes(loaded_artifacts):
    for name in loaded_artifacts.status:
        assert safe_read.max_bytes(name) <= 1 << 30, name
    assert safe_read.max_bytes(S.DETECTOR) == safe_read.MAX_BYTES_BY_KIND["model"]
    assert safe_read.max_bytes(S.OPERATING_POINT) == safe_read.MAX_BYTES_BY_KIND["json"]


# --------------------------------------------------------------------------- 8. malformed listed JSON

MALFORMED_JSON = {
    "not json": b"{not json",
    "nested 200,000 levels": b"[" * 200_000 + b"]" * 200_000,
    "not an object": b"[1, 2]",
}


@pytest.mark.parametrize("case", MALFORMED_JSON)
def test_a_malformed_operating_point_degrades_the_load(copy_dir, case):
    (copy_dir / S.OPERATING_POINT).write_bytes(MALFORMED_JSON[case])
    _relist(copy_dir, S.OPERATING_POINT)
    arts = load_artifacts(copy_dir)
    assert arts.operating_point is None and not arts.manifest_ok
    assert arts.status[S.OPERATING_POINT].startswith("refused")
    assert any(S.OPERATING_POINT in p for p in arts.problems)


def test_the_api_starts_degraded_and_health_names_the_file(copy_dir):
    from fastapi.testclient import TestClient

    from api.main import create_app

    (copy_dir / S.OPERATING_POINT).write_bytes(b"[" * 200_000 + b"]" * 200_000)
    _relist(copy_dir, S.OPERATING_POINT)
    with TestClient(create_app(copy_dir)) as client:
        health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert any(S.OPERATING_POINT in p for p in health["problems"])


@pytest.mark.e2e
def test_a_real_uvicorn_starts_degraded_over_a_malformed_operating_point(copy_dir):
    import httpx
    from test_api_server import running_server

    (copy_dir / S.OPERATING_POINT).write_bytes(b"{not json")
    _relist(copy_dir, S.OPERATING_POINT)
    with running_server({artifacts.ARTIFACT_DIR_ENV: str(copy_dir)}) as url:
        health = httpx.get(f"{url}/health", timeout=30).json()
    assert health["status"] == "degraded"
    assert any(p.startswith(f"{S.OPERATING_POINT} is not valid JSON") for p in health["problems"])


# --------------------------------------------------------------------------- 9. malformed page data


@pytest.mark.parametrize(
    "name, data",
    [
        (S.DATASET_SUMMARY, b"{not json"),
        (S.DATASET_SUMMARY, b"[" * 200_000 + b"]" * 200_000),
        (S.DAILY_ACTIVITY, b'"unclosed\n1,2\n'),
        (S.DAILY_ACTIVITY, b"\xff\xfe\x00garbage"),
    ],
)
def test_malformed_page_data_reads_as_none_with_a_reason(copy_dir, name, data):
    (copy_dir / name).write_bytes(data)
    _relist(copy_dir, name)
    arts = load_artifacts(copy_dir)
    read = arts.read_json if name.endswith(".json") else arts.read_table
    assert read(name) is None
    assert arts.unreadable.get(name)


# --------------------------------------------------------------------------- pages (AppTest)

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")


def _overview(monkeypatch, folder: Path):
    """The Overview page of the app over ``folder``."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(artifacts.ARTIFACT_DIR_ENV, str(folder))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    at = at.switch_page("pages/overview.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _shown(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


PAGE_DATA = {
    "summary not json": (S.DATASET_SUMMARY, b"{not json"),
    "summary nested": (S.DATASET_SUMMARY, b"[" * 200_000 + b"]" * 200_000),
    "summary wrong types": (S.DATASET_SUMMARY, json.dumps({"events": "many", "event_mix": [1]}).encode()),
    "daily unparsable": (S.DAILY_ACTIVITY, b'"unclosed\n1,2\n'),
    "daily wrong columns": (S.DAILY_ACTIVITY, b"a,b\n1,2\n"),
    "daily bad dates": (S.DAILY_ACTIVITY, b"date,event,events,partial\nsoon,view,x,maybe\n"),
    "operating point not json": (S.OPERATING_POINT, b"{not json"),
    "operating point wrong types": (S.OPERATING_POINT, json.dumps({"share": "x"}).encode()),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", PAGE_DATA)
def test_the_overview_explains_malformed_data_and_shows_the_rest(copy_dir, monkeypatch, case):
    name, data = PAGE_DATA[case]
    (copy_dir / name).write_bytes(data)
    _relist(copy_dir, name)
    at = _overview(monkeypatch, copy_dir)
    page = at.main
    assert not page.error
    assert name in _shown(page.warning) + _shown(page.info)
    headers = [h.value for h in at.header]
    assert headers == ["Dataset", "Headline results", "Daily activity"]
    if name != S.DAILY_ACTIVITY:
        assert at.get("vega_lite_chart"), "the daily activity charts are still shown"
    if name != S.DATASET_SUMMARY:
        assert [m.label for m in at.metric][:2] == ["Events", "Visitors"]


@pytest.mark.e2e
def test_the_sidebar_says_a_build_was_refused_and_why(copy_dir, monkeypatch):
    (copy_dir / S.MANIFEST).write_text("{not json")
    at = _overview(monkeypatch, copy_dir)
    assert "No build found" not in _shown(at.sidebar.warning)
    assert "Build refused" in _shown(at.sidebar.error)
    assert "manifest.json is not valid JSON" in _shown(at.sidebar.text), _shown(at.sidebar.text)


@pytest.mark.e2e
def test_the_sidebar_says_an_unsigned_build_was_refused(copy_dir, monkeypatch):
    monkeypatch.setenv(MANIFEST_KEY_ENV, "a-key")
    at = _overview(monkeypatch, copy_dir)
    assert "Build refused" in _shown(at.sidebar.error)
    assert "no valid signature" in _shown(at.sidebar.text), _shown(at.sidebar.text)


@pytest.mark.e2e
def test_the_sidebar_still_says_no_build_for_an_empty_folder(tmp_path, monkeypatch):
    at = _overview(monkeypatch, tmp_path)
    assert "No build found" in _shown(at.sidebar.warning) and not at.sidebar.error


@pytest.mark.parametrize("as_frame", [True, False])
def test_ranking_views_after_2100_are_refused_as_the_api_refuses_them(as_frame):
    from core.ranking.serve import rank

    views = [{"timestamp": 1_442_004_589_439, "categoryid": 3}, {"timestamp": S.MAX_TIMESTAMP_MS + 1, "categoryid": 4}]
    with pytest.raises(DataError, match=r"row 1: timestamp is after 2100-01-01"):
        rank(pd.DataFrame(views) if as_frame else views)
    rank([{**views[1], "timestamp": S.MAX_TIMESTAMP_MS}])  # the bound itself is valid on both


def test_the_build_refuses_to_write_a_model_over_its_unzipped_cap(loaded_artifacts, monkeypatch):
    det = loaded_artifacts.detector
    model_files.dump_model(det)  # the built detector is well under its cap
    monkeypatch.setitem(model_files.MAX_UNZIPPED_BYTES, "Detector", 1 << 20)
    with pytest.raises(
        artifacts.ArtifactError, match="unzips to .* at most 1 MiB for a Detector .*the loader would refuse it"
    ):
        model_files.dump_model(det)
