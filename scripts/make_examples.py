"""Write the API's example request bodies (examples/*.json) from real demo visitors.

Reads the verified build artifacts (``core.store.artifacts.load_artifacts``; ``RECSYS_ARTIFACT_DIR``
or ``--artifact-dir`` picks the directory): a visitor's recent views from
``events_clean_q04.parquet`` for /rank, and users' features from ``task2_user_features.parquet``
with their flags from ``task2_scored_users.parquet`` for /anomaly. Deterministic for a given
build. Run from the repository root: ``python scripts/make_examples.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.schemas import EXAMPLES_DIR  # noqa: E402
from core.base.errors import ArtifactError  # noqa: E402
from core.base.schema import (  # noqa: E402
    CLEAN_EVENTS,
    SCORED_USERS,
    USER_FEATURES_FILE,
)
from core.base.schema import USER_FEATURES as FEATURES  # noqa: E402
from core.ranking.cases import history_before, pick_visitor, view_sequences  # noqa: E402
from core.store.artifacts import Artifacts, load_artifacts  # noqa: E402

SEED = 42
RANK_MAX_VIEWS, RANK_MIN_CATS = 20, 2
N_NORMAL_USERS = 4
N_BATCH_USERS = 50
BATCH_SHARE = 0.1


def _table(arts: Artifacts, name: str) -> pd.DataFrame:
    """A verified artifact table, or ArtifactError saying why it is not usable."""
    table = arts.read_table(name)
    if table is None:
        raise ArtifactError(f"{name} is {arts.status.get(name, 'not in the manifest')} in {arts.path}.")
    return table


def recent_views(events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The demo visitor whose final view has the longest history (at most 20 views, 2+ categories;
    ties: smallest visitorid): that history and the category the visitor actually viewed next."""
    seqs = view_sequences(events)
    visitor = pick_visitor(seqs, max_history=RANK_MAX_VIEWS, min_history_categories=RANK_MIN_CATS)
    if visitor is None:
        raise ArtifactError("No demo visitor has a recent view history with several categories.")
    views = seqs[seqs["visitorid"] == visitor].reset_index(drop=True)
    final = len(views) - 1
    return history_before(views, final), int(views["categoryid"].iloc[final])


def user_rows(features: pd.DataFrame) -> list[dict[str, Any]]:
    """Feature rows as JSON objects: counts as ints, the rest as floats (exact round-trip)."""
    rows = features.loc[:, ["visitorid", *FEATURES]].to_dict(orient="records")
    ints = {"visitorid"} | {f for f in FEATURES if pd.api.types.is_integer_dtype(features[f])}
    return [{k: int(v) if k in ints else float(v) for k, v in row.items()} for row in rows]


def to_json(body: dict[str, Any]) -> str:
    """Readable JSON: one view or user per line."""
    parts = []
    for key, value in body.items():
        if isinstance(value, list):
            rows = ",\n".join("    " + json.dumps(row) for row in value)
            parts.append(f'  "{key}": [\n{rows}\n  ]')
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    text = "{\n" + ",\n".join(parts) + "\n}\n"
    assert json.loads(text) == body
    return text


def build_examples(arts: Artifacts) -> dict[str, Any]:
    """The three example bodies, plus notes on what they contain."""
    events = _table(arts, CLEAN_EVENTS)
    history, next_cat = recent_views(events)
    rank_body = {
        "views": [
            {"timestamp": int(t), "categoryid": int(c), "itemid": int(i)}
            for t, c, i in zip(history["timestamp"], history["categoryid"], history["itemid"])
        ],
        "top_k": 3,
    }

    features = _table(arts, USER_FEATURES_FILE)
    scored = _table(arts, SCORED_USERS)[["visitorid", "anomaly_score", "is_anomaly"]]
    users = features.merge(scored, on="visitorid", how="inner", validate="one_to_one")
    flagged = users[users["is_anomaly"]].sort_values("anomaly_score", ascending=False)
    normal = users[~users["is_anomaly"]]
    if flagged.empty or len(normal) < N_NORMAL_USERS:
        raise ArtifactError("The scored users need at least one flagged and a few normal users.")
    # Normal users with a few events make a more telling example than the many one-view visitors.
    active = normal[normal["events"] >= 3]
    active = active if len(active) >= N_NORMAL_USERS else normal
    few = pd.concat([active.sample(N_NORMAL_USERS, random_state=SEED), flagged.head(1)])
    few = few.sort_values("visitorid")
    batch = users.sample(min(N_BATCH_USERS, len(users)), random_state=SEED)
    if not batch["is_anomaly"].any():  # keep at least one flagged user in the batch
        batch = pd.concat([batch.iloc[1:], flagged.head(1)])
    return {
        "rank_request.json": rank_body,
        "anomaly_request.json": {"users": user_rows(few)},
        "anomaly_batch_share_request.json": {"users": user_rows(batch), "share": BATCH_SHARE},
        "_notes": {
            "rank_visitor": int(history["visitorid"].iloc[0]),
            "rank_next_category": next_cat,
            "flagged_visitor": int(flagged["visitorid"].iloc[0]),
            "batch_flagged_at_build": int(batch["is_anomaly"].sum()),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Write examples/*.json and print what they hold."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-dir", default=None, help="default: $RECSYS_ARTIFACT_DIR or recsys_artifacts/")
    parser.add_argument("--out", default=str(EXAMPLES_DIR))
    args = parser.parse_args(argv)
    arts = load_artifacts(args.artifact_dir)
    try:
        examples = build_examples(arts)
    except ArtifactError as exc:
        print(f"error: {exc} Run `python -m core build` first.", file=sys.stderr)
        return 2
    notes = examples.pop("_notes")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, body in examples.items():
        (out / name).write_text(to_json(body))
        print(f"wrote {out / name}")
    print(json.dumps(notes, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
