"""The build's results sentences: every figure read from the artifacts, also when there is no PR-AUC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.base import schema
from core.build.results import detector_story

ARTIFACTS = Path(__file__).resolve().parent.parent / "recsys_artifacts"
OP = {"detector": "isolation_forest", "policy": "keep visitors who bought"}
CLEANING = {"users_removed_share": 0.04, "events_removed_share": 0.3}


def _quality_in(tmp_path: Path, pr_auc: float | None) -> Path:
    quality = pd.read_csv(ARTIFACTS / schema.DETECTOR_QUALITY_CSV)
    if pr_auc is None:
        quality["pr_auc"] = np.nan  # a log without any labelled bot (a small bench, real data)
    quality.to_csv(tmp_path / schema.DETECTOR_QUALITY_CSV, index=False)
    return tmp_path


def test_detector_story_names_the_best_pr_auc(tmp_path):
    lines = detector_story(_quality_in(tmp_path, 0.0), OP, CLEANING)
    quality = pd.read_csv(ARTIFACTS / schema.DETECTOR_QUALITY_CSV).set_index("method")
    best = quality["pr_auc"].drop(index="volume_rule").idxmax()
    assert f"The best PR-AUC is `{best}`'s ({quality.at[best, 'pr_auc']:.3f})" in lines[0]


def test_detector_story_without_any_pr_auc_says_so_instead_of_failing(tmp_path):
    lines = detector_story(_quality_in(tmp_path, None), OP, CLEANING)
    assert "no PR-AUC could be measured" in lines[0] and "nan" not in lines[0]
    assert "removes 4.0 % of the users and 30.0 % of the events" in lines[1]


def test_quality_meaning_says_why_a_higher_pr_auc_can_lose():
    from core.build.results import quality_meaning

    by = pd.DataFrame(
        {
            "pr_auc": [0.70, 0.80, 0.5],
            "txn_held_by_flagged": [0.0, 0.24, 0.6],
            "normal_buyers_flagged": [0.001, 0.036, 0.7],
        },
        index=["isolation_forest", "robust_z", "volume_rule"],
    )
    text = quality_meaning(by, "isolation_forest")
    assert text.startswith(
        "The served detector, isolation_forest, reaches PR-AUC 70.0% against 50.0% for the volume rule"
    )
    assert "robust_z puts the bots first more often (PR-AUC 80.0%) but its flagged users hold 24.0%" in text
    assert "puts the bots first" not in quality_meaning(by, "robust_z")


def test_category_paths_walk_the_tree_to_the_root():
    from core.reading.categories import category_paths

    tree = pd.DataFrame({"categoryid": [1, 2, 3, 4], "parentid": [np.nan, 1, 2, 4]})  # 4: its own parent
    assert category_paths(tree) == {1: "", 2: "1", 3: "1 › 2", 4: " › ".join(["4"] * 20)}
    assert category_paths(None) is None and category_paths(tree.drop(columns="parentid")) is None
