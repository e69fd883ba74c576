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
