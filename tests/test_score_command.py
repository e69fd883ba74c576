"""``python -m core score``, the labels file and the cleaned events, on real demo events."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from core.__main__ import main
from core.anomaly.features import user_features
from core.anomaly.labels import _weighted_metrics, label_metrics, match_labels, read_labels
from core.base import schema
from core.base.errors import DataError
from core.base.schema import RAW_EVENT_COLUMNS

REPORT_KEYS = {"rows", "scored", "flagged", "flagged_share", "detector", "policy", "mode", "threshold", "drift"}
DRIFT_KEYS = {"verdict", "features", "drifted_features", "expected_flagged_share", "frozen_flagged_share"}


def raw_events(artifact_dir: Path, n_visitors: int = 3000, n_dup: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw events of some demo visitors with n_dup exact duplicates appended, the distinct events)."""
    events = pd.read_parquet(artifact_dir / schema.CLEAN_EVENTS)
    ids = np.sort(events["visitorid"].unique())[:n_visitors]
    distinct = events[events["visitorid"].isin(ids)].reset_index(drop=True)
    raw = pd.concat([distinct, distinct.iloc[:n_dup]], ignore_index=True)[list(RAW_EVENT_COLUMNS)]
    raw["event"] = raw["event"].astype(str)
    return raw, distinct


@pytest.fixture
def raw_case(built_artifact_dir, tmp_path):
    raw, distinct = raw_events(built_artifact_dir)
    path = tmp_path / "events.csv"
    raw.to_csv(path, index=False)
    return path, raw, distinct


def test_score_command_report_cleaned_events_and_labels(built_artifact_dir, raw_case, tmp_path, capsys):
    path, raw, distinct = raw_case
    ids = np.sort(distinct["visitorid"].unique())
    labels = pd.DataFrame({"visitorid": np.append(ids[:400], [-5, -6]), "is_bot": (np.arange(402) % 7 == 0)})
    labels["is_bot"] = labels["is_bot"].map({True: "true", False: "0"})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    out, report_path, clean = tmp_path / "scored.csv", tmp_path / "report.json", tmp_path / "clean.parquet"
    argv = ["score", str(path), str(out), "--report", str(report_path), "--cleaned-events", str(clean)]
    assert main([*argv, "--labels", str(tmp_path / "labels.csv"), "--artifacts", str(built_artifact_dir)]) == 0
    report = json.loads(report_path.read_text())
    assert set(report) >= REPORT_KEYS and set(report["drift"]) >= DRIFT_KEYS
    assert {"labelled", "positives", "precision", "recall", "pr_auc"} <= set(report["labels"])
    assert report["mode"] == "frozen threshold" and report["duplicates_dropped"] == 5
    scored = pd.read_csv(out)
    assert report["rows"] == len(scored) == len(ids)
    assert scored["events"].sum() == len(distinct)  # the 5 duplicates are not counted
    assert report["flagged"] == int(scored["is_anomaly"].sum())
    # cleaned events: the distinct events, in order, without any event of a flagged visitor
    flagged = scored.loc[scored["is_anomaly"] == True, "visitorid"]  # noqa: E712 (nullable column)
    want = distinct[~distinct["visitorid"].isin(flagged)].reset_index(drop=True)
    got = pd.read_parquet(clean)
    pd.testing.assert_frame_equal(got[list(RAW_EVENT_COLUMNS)], want[list(RAW_EVENT_COLUMNS)], check_dtype=False)
    assert not got.duplicated().any() and len(got) == len(distinct) - int(distinct["visitorid"].isin(flagged).sum())
    # labels: two unknown visitorids reported, PR-AUC as scikit-learn computes it
    assert report["labels"]["unknown_visitorids"] == 2 and report["labels"]["labelled"] == 400
    y = scored["visitorid"].isin(labels.loc[labels["is_bot"] == "true", "visitorid"]).to_numpy()[:400]
    assert report["labels"]["pr_auc"] == pytest.approx(average_precision_score(y, scored["anomaly_score"][:400]))
    lo, hi = report["labels"]["pr_auc_ci"]
    assert lo <= report["labels"]["pr_auc"] <= hi


def test_score_command_share_fit_on_batch_and_bad_arguments(light_artifact_dir, raw_case, tmp_path):
    # The served forests play no part here (an hbos fitted on the batch, refused arguments): the
    # committed build with its forests cut to a few trees loads in a fraction of the time.
    path, _, _ = raw_case
    out, rep = tmp_path / "s.parquet", tmp_path / "r.json"
    base = ["score", str(path), str(out), "--report", str(rep), "--artifacts", str(light_artifact_dir)]
    assert main([*base, "--share", "0.1", "--fit-on-batch", "--detector", "hbos"]) == 0
    report = json.loads(rep.read_text())
    assert report["detector"] == "hbos" and report["mode"] == "fitted on this batch, top 10%"
    assert report["fit"]["fit_rows"] == report["scored"]
    back = pd.read_parquet(out)
    assert set(back["mode"]) == {report["mode"]} and set(back["fit_rows"]) == {report["fit"]["fit_rows"]}
    assert main([*base, "--fit-on-batch"]) == 2  # no share
    assert main([*base, "--detector", "nope"]) == 2
    assert main(["score", str(path), str(tmp_path / "x.txt"), "--artifacts", str(light_artifact_dir)]) == 2


def test_labels_are_validated():
    ok = read_labels("l.csv", b"visitorid,is_bot\n1,true\n2,0\n3,FALSE\n4,1\n")
    assert ok["is_bot"].tolist() == [True, False, False, True] and ok["visitorid"].dtype == np.int64
    frame = pd.DataFrame({"visitorid": [7, 8], "is_bot": [True, False]})
    assert read_labels("l.parquet", frame.to_parquet()).equals(frame)
    with pytest.raises(DataError, match="repeats"):
        read_labels("l.csv", b"visitorid,is_bot\n1,1\n1,0\n")
    with pytest.raises(DataError, match=r"is_bot is not 0/1 or true/false .*line 3: 'maybe'"):
        read_labels("l.csv", b"visitorid,is_bot\n1,1\n2,maybe\n")
    with pytest.raises(DataError, match="visitorid is not a whole number"):
        read_labels("l.csv", b"visitorid,is_bot\n1.5,1\n")
    with pytest.raises(DataError, match="no column is_bot"):
        read_labels("l.csv", b"visitorid,label\n1,1\n")
    y, unknown = match_labels(ok, np.array([1, 2, 9]))
    assert np.array_equal(y[:2], [1.0, 0.0]) and np.isnan(y[2]) and unknown == 2


def test_label_metrics_match_scikit_learn_with_unit_weights():
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.2).astype(float)
    s = np.round(rng.random(2000) + y * 0.3, 2)  # ties, as scikit-learn groups them
    order = np.argsort(-s, kind="stable")
    ends = np.append(np.flatnonzero(np.diff(s[order]) != 0), s.size - 1)
    flags = s >= 1.0
    p, r, ap = _weighted_metrics(y[order], flags[order].astype(float), ends, np.ones(s.size))
    assert ap == pytest.approx(average_precision_score(y, s))
    assert p == pytest.approx(y[flags].mean()) and r == pytest.approx(flags[y == 1].mean())
    m = label_metrics(np.where(np.arange(2000) < 1500, y, np.nan), s, flags)
    assert m["labelled"] == 1500 and m["precision_ci"][0] <= m["precision"] <= m["precision_ci"][1]


def test_a_raw_upload_is_prepared_like_the_loader(built_artifact_dir):
    from core.userfiles.uploads import read_upload

    raw, distinct = raw_events(built_artifact_dir, 500, 5)
    up = read_upload("e.csv", raw.to_csv(index=False).encode())
    assert up.duplicates_dropped == 5 and up.features["events"].sum() == len(distinct)
    assert "5 exact duplicate events were dropped" in " ".join(up.notes)
    direct = user_features(distinct.assign(categoryid=-1))
    pd.testing.assert_frame_equal(up.features.reset_index(drop=True), direct)
    assert io.BytesIO(up.events).getbuffer().nbytes > 0
