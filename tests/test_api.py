"""Tests of the HTTP API (the api package) in-process, with its lifespan running.

The artifacts are the committed build (or $RECSYS_ARTIFACT_DIR); the fallback and 503 cases
work on a copy in tmp_path with the model file tampered with or removed, or override the
artifacts dependency.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from api import deps
from api.main import create_app
from api.middleware import MAX_BODY_BYTES
from api.routes import finite_or_none
from api.schemas import MAX_TIMESTAMP_MS, MAX_USERS, AnomalyRequest, UserFeatures
from core.anomaly import batch
from core.anomaly.detector import DETECTORS
from core.anomaly.drift import MIN_DRIFT_ROWS
from core.anomaly.policy import POLICY_NAME, policy_label
from core.anomaly.scoring import score, score_rows
from core.anomaly.validation import validate_features
from core.base.errors import DataError
from core.base.schema import (
    DETECTOR,
    MANIFEST,
    MODEL_SUFFIX,
    RANKING_MODEL_PREFIX,
    SCORED_USERS,
    USER_FEATURES,
    USER_FEATURES_FILE,
)
from core.ranking import serve
from core.ranking.serve import MAX_VIEWS, rank
from core.store.artifacts import ARTIFACT_DIR, ARTIFACT_DIR_ENV, default_dir, load_artifacts

API_DIR = Path(deps.__file__).resolve().parent
API_SOURCES = [API_DIR.parent / "app.py", *sorted(API_DIR.glob("*.py"))]

needs_artifacts = pytest.mark.usefixtures("built_artifacts")  # skipped if unbuilt, failed in CI


@pytest.fixture(scope="module")
def client(default_artifacts):
    """One app over the default artifacts, lifespan running. It serves the session's loaded
    artifacts (the ones ``arts`` compares with) instead of loading them a second time; the app's
    own loading is tested over copies (``artifact_copy``) and by real servers (test_api_server)."""
    app = create_app(default_dir())
    app.state.artifacts = default_artifacts  # what deps.load_once keeps after the app's first load
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def arts(default_artifacts):
    """The same artifacts, loaded directly for the core-vs-API comparisons (the session's one load)."""
    return default_artifacts


@pytest.fixture
def artifact_copy(tmp_path: Path, light_artifact_dir: Path) -> Path:
    """A private copy of the artifact directory, safe to tamper with (its forests cut to a few
    trees: conftest.light_artifact_dir)."""
    target = tmp_path / "artifacts"
    shutil.copytree(light_artifact_dir, target)
    return target


def model_file(directory: Path) -> Path:
    """The ranking model file of an artifact directory."""
    (path,) = sorted(directory.glob(f"{RANKING_MODEL_PREFIX}*{MODEL_SUFFIX}"))
    return path


def error_locs(response) -> list[list[Any]]:
    """The `loc` of every error of a 422 response."""
    return [err["loc"] for err in response.json()["detail"]]


# ------------------------------------------------------------------------------ happy paths


@needs_artifacts
def test_health_reports_loaded_artifacts(client):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["manifest_ok"] is True
    assert body["ranking"] == "model" and body["ranking_model"]
    assert body["anomaly"] == "available" and body["detector_loaded"] is True
    assert body["problems"] == []
    # which ranker is served, and why (the serving rule's validation comparison)
    served = json.loads((default_dir() / MANIFEST).read_text())["served"]["ranking_model"]
    assert body["ranking_model"] == served["name"] and body["ranking_model_why"] == served["reason"]
    assert "validation top1_all" in body["ranking_model_why"]


def test_a_worker_freezes_its_loaded_artifacts_out_of_garbage_collection(light_artifact_dir):
    # A full collection would otherwise walk every loaded object in the middle of a request.
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(light_artifact_dir)) as c:
            assert c.get("/health").json()["detector_loaded"] is True
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


@needs_artifacts
def test_version_is_the_manifest(client):
    body = client.get("/version").json()
    manifest = json.loads((default_dir() / MANIFEST).read_text())
    assert body["manifest"] == manifest
    assert body["manifest_ok"] is True
    assert all(len(entry["sha256"]) == 64 for entry in body["manifest"]["files"].values())
    assert "fastapi" in body["manifest"]["versions"]


@needs_artifacts
def test_rank_example_uses_the_model(client, arts, example):
    body = example("rank_request.json")
    r = client.post("/rank", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ranker"] == arts.ranking_model_name
    assert out["fallback_reason"] is None
    assert out["n_history_views"] == len(body["views"])
    ranks = [row["rank"] for row in out["ranking"]]
    assert ranks == list(range(1, len(ranks) + 1)) and 1 <= len(ranks) <= body["top_k"]
    scores = [row["score"] for row in out["ranking"]]
    assert scores == sorted(scores, reverse=True)


@needs_artifacts
@pytest.mark.parametrize("top_k", [1, 3, 50])
def test_rank_matches_core(client, arts, top_k, example):
    body = example("rank_request.json")
    body["top_k"] = top_k
    out = client.post("/rank", json=body).json()
    direct = rank(body["views"], model=arts.ranking_model, top_k=top_k)
    assert out["ranker"] == direct.ranker
    assert [r["categoryid"] for r in out["ranking"]] == direct.ranking["categoryid"].tolist()
    # Not bit-exact: a forest predicting with n_jobs=-1 sums its trees in thread order, so two
    # identical core calls can already differ in the last bit (reported to core).
    assert [r["score"] for r in out["ranking"]] == pytest.approx(direct.ranking["score"].tolist(), rel=1e-12, abs=1e-15)
    assert out["n_history_views"] == direct.n_history_views


@needs_artifacts
def test_rank_without_itemid_and_unsorted(client, arts, example):
    views = [
        {"timestamp": v["timestamp"], "categoryid": v["categoryid"]} for v in example("rank_request.json")["views"]
    ][::-1]
    out = client.post("/rank", json={"views": views}).json()
    direct = rank(views, model=arts.ranking_model, top_k=3)
    assert [r["categoryid"] for r in out["ranking"]] == direct.ranking["categoryid"].tolist()


@needs_artifacts
def test_anomaly_frozen_matches_core_and_build(client, arts, example):
    body = example("anomaly_request.json")
    r = client.post("/anomaly", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["mode"] == "frozen"
    assert out["detector"] == arts.served("detector")["name"] == arts.detector.name
    assert out["protect_buyers"] is True and out["policy"] == POLICY_NAME
    assert out["share"] == arts.detector.share
    assert out["threshold"] == arts.detector.threshold_
    assert [u["visitorid"] for u in out["users"]] == [u["visitorid"] for u in body["users"]]
    features = pd.DataFrame(body["users"])
    direct = score(features, detector=arts.detector)
    assert [u["anomaly_score"] for u in out["users"]] == direct["anomaly_score"].tolist()
    assert [u["is_anomaly"] for u in out["users"]] == direct["is_anomaly"].tolist()
    # The same users, scored by the build: the example holds at least one flagged user.
    built = arts.read_table(SCORED_USERS).set_index("visitorid").loc[features["visitorid"]]
    np.testing.assert_allclose([u["anomaly_score"] for u in out["users"]], built["anomaly_score"])
    assert [u["is_anomaly"] for u in out["users"]] == built["is_anomaly"].tolist()
    assert out["n_flagged"] >= 1


@needs_artifacts
def test_anomaly_batch_share_matches_core(client, arts, example):
    body = example("anomaly_batch_share_request.json")
    out = client.post("/anomaly", json=body).json()
    assert out["mode"] == "batch share" and out["share"] == body["share"]
    direct = score(pd.DataFrame(body["users"]), share=body["share"], detector=arts.detector)
    assert out["threshold"] == direct["threshold"].iloc[0]
    assert [u["anomaly_score"] for u in out["users"]] == direct["anomaly_score"].tolist()
    assert [u["is_anomaly"] for u in out["users"]] == direct["is_anomaly"].tolist()
    assert out["n_flagged"] == int(direct["is_anomaly"].sum()) >= 1


@needs_artifacts
@pytest.mark.parametrize("name", sorted(DETECTORS))
@pytest.mark.parametrize("protect", [True, False])
def test_anomaly_every_detector_and_policy_match_core(client, arts, example, name, protect):
    body = {**example("anomaly_batch_share_request.json"), "detector": name, "protect_buyers": protect}
    r = client.post("/anomaly", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["detector"], out["protect_buyers"]) == (name, protect)
    assert out["policy"] == policy_label(protect)
    det = arts.detectors[name]
    direct = score(pd.DataFrame(body["users"]), share=body["share"], detector=det, protect_buyers=protect)
    assert out["threshold"] == direct["threshold"].iloc[0]
    assert [u["anomaly_score"] for u in out["users"]] == direct["anomaly_score"].tolist()
    assert [u["is_anomaly"] for u in out["users"]] == direct["is_anomaly"].tolist()
    bought = [u["transaction"] > 0 for u in body["users"]]
    if protect:
        assert not any(f["is_anomaly"] and b for f, b in zip(out["users"], bought))


@needs_artifacts
def test_anomaly_frozen_threshold_names_the_chosen_detector(client, arts, example):
    body = {**example("anomaly_request.json"), "detector": "hbos"}
    out = client.post("/anomaly", json=body).json()
    assert out["detector"] == "hbos" and out["threshold"] == arts.detectors["hbos"].threshold_


@needs_artifacts
@pytest.mark.parametrize("bad", ["lof", "", 3, None])
def test_anomaly_unknown_detector_is_422(client, example, bad):
    body = {**example("anomaly_request.json"), "detector": bad}
    r = client.post("/anomaly", json=body)
    if bad is None:  # null = the build's default
        assert r.status_code == 200
        return
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][-1] == "detector"


@needs_artifacts
def test_anomaly_protect_buyers_must_be_a_boolean(client, example):
    r = client.post("/anomaly", json={**example("anomaly_request.json"), "protect_buyers": "yes"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "protect_buyers"


@needs_artifacts
def test_anomaly_keeps_input_order(client, example):
    body = example("anomaly_batch_share_request.json")
    body.pop("share")
    forward = client.post("/anomaly", json=body).json()["users"]
    body["users"].reverse()
    backward = client.post("/anomaly", json=body).json()["users"]
    assert backward == forward[::-1]


@needs_artifacts
def test_anomaly_accepts_the_maximum_batch(client, example):
    user = example("anomaly_request.json")["users"][0]
    users = [{**user, "visitorid": i} for i in range(MAX_USERS)]
    r = client.post("/anomaly", json={"users": users})
    assert r.status_code == 200, r.text
    scores = {u["anomaly_score"] for u in r.json()["users"]}
    assert len(scores) == 1 and r.json()["n_users"] == MAX_USERS


@needs_artifacts
def test_openapi_has_examples(client, example):
    spec = client.get("/openapi.json").json()
    for path in ("/rank", "/anomaly"):
        examples = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
        assert examples and all("(inline)" not in e["summary"] for e in examples.values())
    rank_example = spec["paths"]["/rank"]["post"]["requestBody"]["content"]["application/json"]
    assert rank_example["examples"]["demo_visitor"]["value"] == example("rank_request.json")


# ------------------------------------------------------------------------------ 422s

VIEW = {"timestamp": 1_442_004_589_439, "categoryid": 1051, "itemid": 285930}
USER = {
    "visitorid": 7,
    "events": 3,
    "view": 3,
    "addtocart": 0,
    "transaction": 0,
    "uniq_items": 3,
    "uniq_cats": 2,
    "cat_entropy": 0.9,
    "events_per_active_day": 3.0,
    "add_to_view_rate": 0.0,
    "txn_to_cart_rate": 0.0,
    "night_share": 0.0,
    "p95_gap_s": 160.0,
    "short_gap_share": 0.0,
    "n_sessions": 1,
    "sessions_per_day": 1.0,
    "uniq_item_ratio": 1.0,
}


def rank_body(**view_changes: Any) -> dict[str, Any]:
    return {"views": [{**VIEW, **view_changes}], "top_k": 3}


def users_body(**user_changes: Any) -> dict[str, Any]:
    return {"users": [{**USER, **user_changes}]}


BAD_RANK = {
    "extra top-level field": ({**rank_body(), "user": 1}, ["body", "user"]),
    "extra view field": (rank_body(color="red"), ["body", "views", 0, "color"]),
    "top_k 0": ({**rank_body(), "top_k": 0}, ["body", "top_k"]),
    "top_k 51": ({**rank_body(), "top_k": 51}, ["body", "top_k"]),
    "top_k as string": ({**rank_body(), "top_k": "3"}, ["body", "top_k"]),
    "no views": ({"views": []}, ["body", "views"]),
    "views missing": ({"top_k": 3}, ["body", "views"]),
    "too many views": ({"views": [VIEW] * (MAX_VIEWS + 1)}, ["body", "views"]),
    "negative timestamp": (rank_body(timestamp=-1), ["body", "views", 0, "timestamp"]),
    "timestamp after 2100": (rank_body(timestamp=MAX_TIMESTAMP_MS + 1), ["body", "views", 0, "timestamp"]),
    "timestamp in seconds as float": (rank_body(timestamp=1.5), ["body", "views", 0, "timestamp"]),
    "timestamp as ISO string": (rank_body(timestamp="2015-09-11T20:49:49Z"), ["body", "views", 0, "timestamp"]),
    "categoryid missing": ({"views": [{"timestamp": 1}]}, ["body", "views", 0, "categoryid"]),
    "categoryid -2": (rank_body(categoryid=-2), ["body", "views", 0, "categoryid"]),
    "categoryid bool": (rank_body(categoryid=True), ["body", "views", 0, "categoryid"]),
    "itemid beyond int64": (rank_body(itemid=2**63), ["body", "views", 0, "itemid"]),
    "itemid beyond 2**53": (rank_body(itemid=2**53), ["body", "views", 0, "itemid"]),
    "views not a list": ({"views": VIEW}, ["body", "views"]),
}

BAD_ANOMALY = {
    "no users": ({"users": []}, ["body", "users"]),
    "too many users": ({"users": [USER] * (MAX_USERS + 1)}, ["body", "users"]),
    "negative count": (users_body(events=-1), ["body", "users", 0, "events"]),
    "fractional count": (users_body(view=2.5), ["body", "users", 0, "view"]),
    "negative rate": (users_body(add_to_view_rate=-0.1), ["body", "users", 0, "add_to_view_rate"]),
    "share above 1": (users_body(night_share=1.5), ["body", "users", 0, "night_share"]),
    "NaN as string": (users_body(p95_gap_s="NaN"), ["body", "users", 0, "p95_gap_s"]),
    "inf as string": (users_body(cat_entropy="Infinity"), ["body", "users", 0, "cat_entropy"]),
    "missing feature": (
        {"users": [{k: v for k, v in USER.items() if k != "n_sessions"}]},
        ["body", "users", 0, "n_sessions"],
    ),
    "extra feature": (users_body(is_bot=True), ["body", "users", 0, "is_bot"]),
    "visitorid beyond int64": (users_body(visitorid=2**63), ["body", "users", 0, "visitorid"]),
    "share 0": ({**users_body(), "share": 0}, ["body", "share"]),
    "share 0.6": ({**users_body(), "share": 0.6}, ["body", "share"]),
    "share NaN string": ({**users_body(), "share": "NaN"}, ["body", "share"]),
    "extra top-level field": ({**users_body(), "threshold": 0.5}, ["body", "threshold"]),
}


@pytest.mark.parametrize("body, loc", BAD_RANK.values(), ids=BAD_RANK.keys())
def test_rank_rejects_bad_bodies_naming_the_field(client, body, loc):
    r = client.post("/rank", json=body)
    assert r.status_code == 422, r.text
    assert loc in error_locs(r)


@pytest.mark.parametrize("body, loc", BAD_ANOMALY.values(), ids=BAD_ANOMALY.keys())
def test_anomaly_rejects_bad_bodies_naming_the_field(client, body, loc):
    r = client.post("/anomaly", json=body)
    assert r.status_code == 422, r.text
    assert loc in error_locs(r)


def test_unknown_category_is_refused_with_a_reason(client):
    r = client.post("/rank", json=rank_body(categoryid=-1))
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "views", 0, "categoryid"]
    assert "unknown category" in err["msg"]


@pytest.mark.parametrize(
    "raw, loc",
    [
        # Python's json module accepts these non-standard literals; they must not reach a 500.
        (b'{"users": [%s], "share": NaN}' % json.dumps(USER).encode(), ["body", "share"]),
        (b'{"views": [{"timestamp": 1, "categoryid": Infinity}]}', ["body", "views", 0, "categoryid"]),
        (b'{"views": [{"timestamp": 1e999, "categoryid": 1}]}', ["body", "views", 0, "timestamp"]),
    ],
)
def test_non_finite_json_literals_are_422(client, raw, loc):
    path = "/anomaly" if b"users" in raw else "/rank"
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert loc in error_locs(r)


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b'"views"', b"\xff\xfe", b"[" * 50_000])
def test_malformed_bodies_are_4xx(client, raw):
    for path in ("/rank", "/anomaly"):
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (raw[:20], r.status_code, r.text)
        assert "detail" in r.json()


def test_wrong_method_and_path(client):
    assert client.get("/rank").status_code == 405
    assert client.post("/nope", json={}).status_code == 404


# ------------------------------------------------------------------------------ 413


def test_big_body_is_413_by_content_length(client):
    padding = " " * (MAX_BODY_BYTES + 1)
    raw = ('{"views": [%s]%s}' % (json.dumps(VIEW), padding)).encode()
    r = client.post("/rank", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "larger than" in r.json()["detail"]


def test_big_streamed_body_is_413_without_content_length(client):
    def chunks():
        yield b'{"views": ['
        for _ in range(MAX_BODY_BYTES // 60_000 + 2):
            yield (json.dumps(VIEW) + ",").encode() * 1000  # ~60 kB per chunk
        yield b"]}"

    r = client.post("/anomaly", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "larger than" in r.json()["detail"]


def test_body_just_under_the_limit_is_read(client):
    raw = json.dumps({"views": [VIEW], "top_k": 3}).encode()
    raw = raw[:-1] + b" " * (MAX_BODY_BYTES - len(raw)) + b"}"
    assert len(raw) == MAX_BODY_BYTES
    r = client.post("/rank", content=raw, headers={"content-type": "application/json"})
    assert r.status_code != 413


# ------------------------------------------------------------------------------ degraded artifacts


@needs_artifacts
def test_tampered_model_falls_back_to_rule_with_reason(artifact_copy, monkeypatch, example):
    path = model_file(artifact_copy)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    monkeypatch.setenv(ARTIFACT_DIR_ENV, str(artifact_copy))  # load_artifacts() reads it
    with TestClient(create_app()) as c:
        body = example("rank_request.json")
        out = c.post("/rank", json=body).json()
        assert out["ranker"] == "rule"
        assert out["fallback_reason"] == (f"model artifact refused: {path.name} sha256 differs from manifest")
        assert out["fallback_reason"] == load_artifacts(artifact_copy).ranking_fallback_reason()
        direct = rank(body["views"], model=None, top_k=body["top_k"])
        assert [r["categoryid"] for r in out["ranking"]] == direct.ranking["categoryid"].tolist()
        health = c.get("/health").json()
        assert health["status"] == "degraded" and health["ranking"] == "rule fallback"
        assert health["artifact_dir"] == artifact_copy.name
        assert any(path.name in p for p in health["problems"])
        # The detector is untouched and still serves.
        assert c.post("/anomaly", json=example("anomaly_request.json")).status_code == 200


@needs_artifacts
def test_missing_model_falls_back_to_rule_with_reason(artifact_copy, example):
    path = model_file(artifact_copy)
    path.unlink()
    with TestClient(create_app(artifact_copy)) as c:
        out = c.post("/rank", json=example("rank_request.json")).json()
    assert out["ranker"] == "rule"
    assert out["fallback_reason"] == f"model artifact missing: {path.name}"


@needs_artifacts
def test_anomaly_without_detector_is_503(artifact_copy, example):
    (artifact_copy / DETECTOR).unlink()
    with TestClient(create_app(artifact_copy)) as c:
        r = c.post("/anomaly", json=example("anomaly_request.json"))
        assert r.status_code == 503
        assert "anomaly detector artifact is not available" in r.json()["detail"]
        assert DETECTOR in r.json()["detail"]
        assert c.get("/health").json()["anomaly"] == "unavailable"
        assert c.post("/rank", json=example("rank_request.json")).status_code == 200


@needs_artifacts
def test_anomaly_with_a_missing_non_default_detector_is_503(artifact_copy, example):
    from core.anomaly.detector import detector_file

    (artifact_copy / detector_file("hbos")).unlink()
    with TestClient(create_app(artifact_copy)) as c:
        r = c.post("/anomaly", json={**example("anomaly_request.json"), "detector": "hbos"})
        assert r.status_code == 503 and "hbos detector artifact is not available" in r.json()["detail"]
        assert c.post("/anomaly", json=example("anomaly_request.json")).status_code == 200


@needs_artifacts
def test_overridden_artifacts_without_detector_are_503_and_degraded(tmp_path, arts, example):
    application = create_app(tmp_path)
    no_detector = dataclasses.replace(arts, detector=None, problems=["detector withheld"])
    application.dependency_overrides[deps.get_artifacts] = lambda: no_detector
    with TestClient(application) as c:
        r = c.post("/anomaly", json=example("anomaly_request.json"))
        assert r.status_code == 503
        assert r.json()["detail"].endswith("cannot be scored. detector withheld")
        health = c.get("/health").json()
        assert health["status"] == "degraded" and health["anomaly"] == "unavailable"
        assert health["ranking"] == "model" and health["problems"] == ["detector withheld"]
        out = c.post("/rank", json=example("rank_request.json")).json()
        assert out["ranker"] == arts.ranking_model_name and out["fallback_reason"] is None


def test_empty_artifact_dir_degrades_without_5xx_except_503(tmp_path):
    with TestClient(create_app(tmp_path)) as c:
        health = c.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        version = c.get("/version").json()
        assert version["manifest"] is None and version["manifest_ok"] is False
        out = c.post("/rank", json=rank_body()).json()
        assert out["ranker"] == "rule"
        assert out["fallback_reason"].startswith("model artifact not loaded: no valid manifest.json")
        assert out["ranking"] == [{"categoryid": VIEW["categoryid"], "score": out["ranking"][0]["score"], "rank": 1}]
        r = c.post("/anomaly", json=users_body())
        assert r.status_code == 503 and "python -m core build" in r.json()["detail"]


def test_artifacts_are_loaded_once_per_app(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(deps, "load_artifacts", lambda path: calls.append(path) or load_artifacts(path))
    application = create_app(tmp_path)
    for _ in range(3):  # e.g. a test client per request: each runs the lifespan again
        with TestClient(application) as c:
            c.get("/health")
    assert calls == [tmp_path]


def test_env_var_is_read_in_one_place(tmp_path, monkeypatch):
    for path in API_SOURCES:  # core.store.artifacts.default_dir reads it; api.settings the limits
        source = path.read_text()
        assert f"environ.get({ARTIFACT_DIR_ENV!r}" not in source, path
        if path.name != "settings.py":
            assert "environ" not in source and "getenv" not in source, path
    monkeypatch.setenv(ARTIFACT_DIR_ENV, str(tmp_path))
    with TestClient(create_app()) as c:
        assert c.get("/health").json()["artifact_dir"] == tmp_path.name
    with TestClient(create_app(tmp_path / "elsewhere")) as c:  # an explicit argument wins
        assert c.get("/health").json()["artifact_dir"] == "elsewhere"
    monkeypatch.setenv(ARTIFACT_DIR_ENV, "  ")
    assert default_dir() == ARTIFACT_DIR  # a blank variable means the committed artifacts


# ------------------------------------------------------------------------------ error mapping


def test_core_data_error_is_422_with_its_message(client, monkeypatch):
    def refuse(*args, **kwargs):
        raise DataError("views: row 0 is odd")

    monkeypatch.setattr(serve, "rank", refuse)
    r = client.post("/rank", json=rank_body())
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"] == "views: row 0 is odd"


def test_unexpected_error_still_answers_json(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(serve, "rank", boom)
    with TestClient(create_app(tmp_path), raise_server_exceptions=False) as c:
        r = c.post("/rank", json=rank_body())
    assert r.status_code == 500
    assert r.json() == {"detail": "Internal error (RuntimeError)."}


def test_non_finite_core_scores_become_null():
    assert finite_or_none(np.float64("nan")) is None and finite_or_none(math.inf) is None
    assert finite_or_none(np.float32(0.5)) == 0.5


def test_request_model_lists_exactly_the_spec_features():
    fields = [f for f in UserFeatures.model_fields if f != "visitorid"]
    assert tuple(fields) == USER_FEATURES
    schema = UserFeatures.model_json_schema()
    assert set(schema["required"]) == {"visitorid", *USER_FEATURES}
    assert copy.deepcopy(schema)["additionalProperties"] is False


def test_itemid_may_be_given_for_some_views_only(client):
    views = [{**VIEW, "timestamp": VIEW["timestamp"] + i} for i in range(3)]
    del views[1]["itemid"]
    views[2]["itemid"] = None
    r = client.post("/rank", json={"views": views})
    assert r.status_code == 200, r.text
    assert r.json()["n_history_views"] == 3


# ------------------------------------------------------------------------------ hardening


@pytest.mark.parametrize(
    "raw",
    [
        b'{"top_k": 0, "top_k": 3, "views": [{"timestamp": 1, "categoryid": 2}]}',
        b'{"views": [{"timestamp": 1, "categoryid": 2, "categoryid": 3}]}',
    ],
)
def test_duplicate_json_keys_are_422(client, raw):
    r = client.post("/rank", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["type"] == "duplicate_key"
    assert "duplicate key" in r.json()["detail"][0]["msg"]


def test_rank_does_not_depend_on_the_order_of_tied_views(client):
    ts = VIEW["timestamp"]
    views = [
        {"timestamp": ts, "categoryid": 10},
        {"timestamp": ts, "categoryid": 20},
        {"timestamp": ts - 60_000, "categoryid": 30},
        {"timestamp": ts, "categoryid": 20, "itemid": 5},
    ]
    for v in views:
        v.setdefault("itemid", 1)
    answers = set()
    for shift in range(len(views)):
        order = views[shift:] + views[:shift]
        for body_views in (order, order[::-1]):
            r = client.post("/rank", json={"views": body_views, "top_k": 3})
            assert r.status_code == 200, r.text
            answers.add(json.dumps(r.json(), sort_keys=True))
    assert len(answers) == 1
    # The documented rule: (timestamp, categoryid, itemid), so a category-20 view is the last one.
    direct = rank(sorted(views, key=lambda v: (v["timestamp"], v["categoryid"], v["itemid"])), top_k=3)
    assert json.loads(answers.pop())["ranking"][0]["categoryid"] == int(direct.ranking["categoryid"].iloc[0])


def _assert_no_paths(text: str, *paths: Path) -> None:
    """No absolute path of this machine appears in a response."""
    for path in paths:
        assert str(path) not in text
    assert str(Path(__file__).resolve().parent.parent) not in text


def test_no_server_paths_in_any_response(artifact_copy, tmp_path, example):
    (artifact_copy / DETECTOR).unlink()
    with TestClient(create_app(artifact_copy), raise_server_exceptions=False) as c:
        answers = [
            c.get("/health"),
            c.get("/version"),
            c.get("/nope"),
            c.post("/rank", json=example("rank_request.json")),
            c.post("/rank", json={"views": []}),
            c.post("/anomaly", json=example("anomaly_request.json")),
        ]
    for r in answers:
        _assert_no_paths(r.text, artifact_copy, tmp_path)
    with TestClient(create_app(tmp_path / "missing")) as c:
        for r in (
            c.get("/health"),
            c.get("/version"),
            c.post("/rank", json=rank_body()),
            c.post("/anomaly", json=users_body()),
        ):
            _assert_no_paths(r.text, tmp_path)


def test_scoring_gate_queues_then_answers_503_with_retry_after():
    import asyncio

    from api.middleware import ScoringGate

    release = asyncio.Event()
    sent: list[dict] = []
    ran: list[int] = []

    async def slow_app(scope, receive, send):
        if scope["path"] == "/anomaly":
            ran.append(scope["n"])
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message):
        sent.append(message)

    async def scenario():
        gate = ScoringGate(slow_app, slots=1, queue=2, wait_s=30)
        first, *queued = [
            asyncio.create_task(gate({"type": "http", "path": "/anomaly", "n": n}, None, send)) for n in range(3)
        ]
        await asyncio.sleep(0.01)
        assert ran == [0] and gate.waiting == 2  # one runs, two wait
        await gate({"type": "http", "path": "/anomaly", "n": 3}, None, send)  # the queue is full: refused at once
        await gate({"type": "http", "path": "/health"}, None, send)  # other paths pass
        release.set()
        await asyncio.gather(first, *queued)
        return gate.waiting

    assert asyncio.run(scenario()) == 0
    refused = sent[0]
    assert refused["status"] == 503 and (b"retry-after", b"1") in refused["headers"]
    assert ran == [0, 1, 2]  # the queued ones ran, in order


def test_request_guard_bounds_the_bodies_held_in_memory():
    import asyncio

    from api.middleware import RequestGuard

    sent: list[dict] = []
    seen: list[bytes] = []

    async def app(scope, receive, send):
        seen.append((await receive())["body"])

    async def send(message):
        sent.append(message)

    def receive_of(body: bytes):
        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        return receive

    async def scenario():
        guard = RequestGuard(app, max_bytes=100, max_buffered=30)
        scope = {"type": "http", "path": "/rank", "headers": []}
        await guard(scope, receive_of(b"x" * 20), send)  # fits: read whole, then handed on
        await guard(scope, receive_of(b"y" * 40), send)  # more than all bodies may hold: 503
        return guard.buffered

    assert asyncio.run(scenario()) == 0  # every body's bytes given back
    assert seen == [b"x" * 20]
    assert sent[0]["status"] == 503 and (b"retry-after", b"1") in sent[0]["headers"]

    start = sent[0]
    assert start["status"] == 503 and (b"retry-after", b"1") in start["headers"]


@needs_artifacts
def test_anomaly_answer_carries_drift_for_200_or_more_users(client, arts):
    features = arts.read_table(USER_FEATURES_FILE)
    heavy = features[features["events"] >= 5].head(400)
    users = heavy.astype(object).to_dict(orient="records")  # exact floats (to_json rounds them)
    out = client.post("/anomaly", json={"users": users}).json()
    drift = out["drift"]
    assert drift["verdict"] == "drift" and "events" in drift["drifted_features"]
    assert drift["rows"] == 400 and drift["features"]["events"]["drifted"] is True
    assert drift["expected_flagged_share"] == arts.detector.share
    scores = np.array([u["anomaly_score"] for u in out["users"]])
    assert drift["frozen_flagged_share"] == pytest.approx(np.mean(scores >= arts.detector.threshold_))
    few = client.post("/anomaly", json={"users": users[:199]}).json()
    assert few["drift"] is None


# ----------------------------------------------------------- /anomaly small-batch fast path


def _api_users(features: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a feature table as the JSON users of /anomaly (exact floats, ints as ints)."""
    return features.loc[:, ["visitorid", *USER_FEATURES]].astype(object).to_dict(orient="records")


@needs_artifacts
@pytest.mark.parametrize("n_users", [5, 400])
@pytest.mark.parametrize(("share", "protect_buyers"), [(None, True), (0.05, False)])
def test_anomaly_answer_is_the_dashboards_scoring_bit_for_bit(client, arts, n_users, share, protect_buyers):
    # The API's numpy path (typed arrays, object labels, no flag table) against the dashboard's
    # own steps on the table as read from disk: same scores to the bit, flags, threshold, drift.
    features = arts.read_table(USER_FEATURES_FILE)
    rows = features.sample(n_users, random_state=3).reset_index(drop=True)
    for name, det in arts.detectors.items():
        body = {"users": _api_users(rows), "detector": name, "share": share, "protect_buyers": protect_buyers}
        out = client.post("/anomaly", json=body).json()
        want = score(rows, share, detector=det, protect_buyers=protect_buyers)
        got = np.array([u["anomaly_score"] for u in out["users"]], np.float64)
        assert np.array_equal(got, want["anomaly_score"].to_numpy()), name
        assert [u["is_anomaly"] for u in out["users"]] == want["is_anomaly"].tolist(), name
        assert out["threshold"] == float(want["threshold"].iloc[0])
        scores = want["anomaly_score"].to_numpy()
        drift = batch.api_drift(rows, np.isfinite(scores), scores, det, arts.drift_reference)
        assert out["drift"] == json.loads(json.dumps(drift)), name
        assert (out["drift"] is None) == (n_users < MIN_DRIFT_ROWS)


@needs_artifacts
def test_a_requests_feature_matrix_is_the_dashboards_table_read_into_numpy(arts):
    # The API builds the FeatureMatrix the validator reads a small table as, from the request
    # itself (no DataFrame): the same ids and values to the bit, so the same findings and scores.
    from api.routes import _features_matrix
    from core.anomaly.validation import small_feature_matrix

    features = arts.read_table(USER_FEATURES_FILE)
    rng = np.random.default_rng(7)
    for _ in range(20):
        users = _api_users(features.sample(int(rng.integers(1, 30)), random_state=int(rng.integers(1 << 30))))
        for u in users:  # some rows break rules between columns (the API's bounds allow that)
            if rng.random() < 0.2:
                u["events"] += 1
            if rng.random() < 0.1:
                u["uniq_item_ratio"] = 0.999
        if len(users) > 1 and rng.random() < 0.3:
            users[-1]["visitorid"] = users[0]["visitorid"]
        body = AnomalyRequest.model_validate({"users": users})
        got = _features_matrix(body)
        want = small_feature_matrix(pd.DataFrame(users))
        assert want is not None
        assert got.visitorid.dtype == want.visitorid.dtype and np.array_equal(got.visitorid, want.visitorid)
        assert np.array_equal(got.values, want.values) and got.values.flags.f_contiguous
        a, b = validate_features(got), validate_features(pd.DataFrame(users))
        pd.testing.assert_frame_equal(a.row_problems, b.row_problems)
        assert a.messages() == b.messages() and np.array_equal(a.scorable, b.scorable)
        for det in arts.detectors.values():
            assert np.array_equal(
                score_rows(got, a.scorable, det),
                score_rows(pd.DataFrame(users), b.scorable, det),
                equal_nan=True,
            )


@needs_artifacts
def test_anomaly_422_names_the_rows_the_dashboards_validator_names(client, arts):
    features = arts.read_table(USER_FEATURES_FILE)
    users = _api_users(features.head(30))
    users[2]["events"] += 1  # view + addtocart + transaction != events
    users[5]["night_share"], users[5]["uniq_item_ratio"] = 0.0, 0.999  # uniq_item_ratio differs
    users[9]["visitorid"] = users[8]["visitorid"]  # a duplicate alone is still scored
    users[11]["p95_gap_s"], users[11]["events"] = 7.0, 1  # several rules at once
    r = client.post("/anomaly", json={"users": users})
    assert r.status_code == 422, r.text
    val = validate_features(pd.DataFrame(users))  # the dashboard's table of the same rows
    bad = val.row_problems[~val.row_problems["row"].isin(np.flatnonzero(val.scorable))]
    n_bad = len(users) - val.n_scorable
    want = [
        [["body", "users", int(r_), c], f"{p} ({n_bad} user(s) break a feature rule)"]
        for r_, c, p in bad[["row", "column", "problem"]].itertuples(index=False)
    ]
    assert [[e["loc"], e["msg"]] for e in r.json()["detail"]] == want
    assert n_bad == 3 and len(want) >= 4
