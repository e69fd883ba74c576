"""`python -m core evaluate` and `python -m core rank` on a small hand-made events file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.__main__ import main
from core.evaluation.on_events import evaluate_events
from core.ranking.serve import rank

MIN, HOUR = 60_000, 3_600_000


def hand_events() -> pd.DataFrame:
    """Visitor 1 views A A B (cart) (unknown) A C, visitor 2 views 20 (25 h later) 20 30 20, visitor 3 one view.

    Cases (hand-worked, data contract section 2):
    c1 v1 A | H=A        covered; rule, recency, last: rank 1
    c2 v1 B | H=A A      not covered
    c3 v1 A | H=A A B    covered; rule: A (cnt 2) rank 1; recency: B then A, rank 2; last: B only, miss
    c4 v1 C | H=A A B A  not covered
    c5 v2 30 | H=20      not covered (the first 20 is over 24 h before)
    c6 v2 20 | H=20 30   covered; rule: tie on cnt -> 30 (more recent) first, 20 rank 2; recency rank 2; last miss
    """
    rows = [  # visitorid, timestamp, event, categoryid
        (1, 0, "view", 10),
        (1, MIN, "view", 10),
        (1, 2 * MIN, "view", 20),
        (1, 2 * MIN + 30_000, "addtocart", 30),  # not a view: never in a history
        (1, 3 * MIN - 1, "view", -1),  # unknown category: never a view of Task 1
        (1, 3 * MIN, "view", 10),
        (1, 4 * MIN, "view", 30),
        (2, 0, "view", 20),
        (2, 25 * HOUR, "view", 20),
        (2, 25 * HOUR + MIN, "view", 30),
        (2, 25 * HOUR + 2 * MIN, "view", 20),
        (3, 5 * MIN, "view", 50),
    ]
    df = pd.DataFrame(rows, columns=["visitorid", "timestamp", "event", "categoryid"])
    df["itemid"] = np.arange(len(df))
    df["transactionid"] = np.nan
    return df[["timestamp", "visitorid", "event", "itemid", "transactionid", "categoryid"]]


EXPECTED = {  # (coverage, top1, top3, top1_all, top3_all, mrr5), by hand from the docstring
    "rule": (3 / 6, 2 / 3, 3 / 3, 2 / 6, 3 / 6, (1 + 1 + 0.5) / 6),
    "recency": (3 / 6, 1 / 3, 3 / 3, 1 / 6, 3 / 6, (1 + 0.5 + 0.5) / 6),
    "last_category": (3 / 6, 1 / 3, 1 / 3, 1 / 6, 1 / 6, 1 / 6),
}


@pytest.fixture
def files(tmp_path):
    path = tmp_path / "events.csv"
    hand_events().sample(frac=1, random_state=0).to_csv(path, index=False)  # rows need not be sorted
    return path, tmp_path / "no_build"  # no build there: the rule is served


def test_evaluate_gives_the_baselines_their_hand_computed_figures(files, tmp_path):
    events, no_build = files
    report, cases = tmp_path / "report.json", tmp_path / "cases.csv"
    assert (
        main(["evaluate", str(events), "--report", str(report), "--cases", str(cases), "--artifact-dir", str(no_build)])
        == 0
    )
    rep = json.loads(report.read_text())
    assert rep["cases"] == 6 and rep["served"] == "rule"
    assert set(rep["rankers"]) == {"rule", "recency", "last_category"}
    for name, want in EXPECTED.items():
        got = rep["rankers"][name]
        assert got["n_cases"] == 6
        keys = ("coverage", "top1", "top3", "top1_all", "top3_all", "mrr5")
        assert [got[k] for k in keys] == pytest.approx(list(want)), name
        lo, hi = got["ci"]["top1_all"]
        assert lo <= got["top1_all"] <= hi
    assert rep["rankers"]["recency"]["minus_served"]["top1_all"]["value"] == pytest.approx(1 / 6 - 2 / 6)
    table = pd.read_csv(cases)
    assert table["visitorid"].tolist() == [1, 1, 1, 1, 2, 2]
    assert table["true_categoryid"].tolist() == [10, 20, 10, 30, 30, 20]
    assert table["candidate"].tolist() == [True, False, True, False, False, True]
    assert table["hit_top1"].tolist() == [True, False, True, False, False, False]
    assert table["rank_1"].tolist() == [10, 10, 10, 10, 20, 30]
    assert table["rank_2"].fillna(0).astype(int).tolist() == [0, 0, 20, 20, 0, 20]


def test_evaluate_bootstrap_interval_is_paired_and_reproducible():
    ev = hand_events()
    a = evaluate_events(ev, None, n_boot=200, seed=3).report
    b = evaluate_events(ev, None, n_boot=200, seed=3).report
    assert a == b
    diff = a["rankers"]["last_category"]["minus_served"]["top3_all"]
    assert diff["value"] == pytest.approx(1 / 6 - 3 / 6) and diff["ci"][0] <= diff["value"] <= diff["ci"][1] <= 0


def test_evaluate_refuses_events_without_categories(tmp_path):
    path = tmp_path / "raw.csv"
    hand_events().drop(columns="categoryid").to_csv(path, index=False)
    assert main(["evaluate", str(path), "--artifact-dir", str(tmp_path / "none")]) == 2


def test_rank_command_ranks_each_visitors_latest_history_as_rank_does(files, tmp_path):
    events, no_build = files
    out = tmp_path / "ranked.csv"
    assert main(["rank", str(events), str(out), "--top-k", "2", "--artifact-dir", str(no_build)]) == 0
    ranked = pd.read_csv(out)
    got = ranked.groupby("visitorid")["categoryid"].apply(list).to_dict()
    assert got == {1: [10, 30], 2: [20, 30], 3: [50]}
    ev = hand_events()
    views = ev[(ev["visitorid"] == 2) & (ev["event"] == "view")][["timestamp", "categoryid"]]
    assert rank(views, None, top_k=2).ranking["categoryid"].tolist() == got[2]
