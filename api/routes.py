"""The endpoints: JSON in, the core calls the dashboard makes, JSON out. No model logic here.

/health and /version are async and cheap, so they answer at once even while scoring runs;
scoring runs on the app's bounded scoring threads (``api.deps.Scorer``), a small request on the
event loop itself.
"""

from __future__ import annotations

import math
import operator
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Body
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import core
from api.deps import ArtifactsDep, ScorerDep
from api.middleware import StrictJSONRoute
from api.schemas import (
    ANOMALY_EXAMPLES,
    BUSY_RESPONSE,
    ERROR_RESPONSES,
    NO_DETECTOR_RESPONSE,
    RANK_EXAMPLES,
    AnomalyRequest,
    AnomalyResponse,
    RankRequest,
    RankResponse,
)
from core.anomaly import batch
from core.anomaly.policy import policy_label
from core.anomaly.scoring import flags_and_threshold, score_rows
from core.anomaly.validation import FeatureMatrix, FeatureValidation, validate_features
from core.base.errors import ArtifactError
from core.base.schema import USER_FEATURES
from core.ranking import serve
from core.store.artifacts import Artifacts

router = APIRouter(route_class=StrictJSONRoute)
# Requests up to this size are scored on the event loop (a few ms each; api.deps.Scorer says why),
# larger ones on the scoring threads, so /health never waits long behind a big one.
INLINE_MAX_VIEWS = 100
INLINE_MAX_USERS = 50


def finite_or_none(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become null."""
    value = float(value)
    return value if math.isfinite(value) else None


@router.get("/health")
async def health(arts: ArtifactsDep) -> dict[str, Any]:
    """Liveness, and which artifacts were loaded and trusted."""
    ready = arts.manifest_ok and arts.ranking_model is not None and arts.detector is not None
    return {
        "status": "ok" if ready else "degraded",
        "ranking": "model" if arts.ranking_model is not None else "rule fallback",
        "anomaly": "available" if arts.detector is not None else "unavailable",
        **jsonable_encoder(arts.summary()),
    }


@router.get("/version")
async def version(arts: ArtifactsDep) -> dict[str, Any]:
    """The build manifest (artifact hashes and library versions) this process serves."""
    return {
        "api_version": core.__version__,
        "artifact_dir": arts.path.name,
        "manifest_sha256": arts.manifest_sha256,
        "manifest_ok": arts.manifest_ok,
        "manifest": jsonable_encoder(arts.manifest),
    }


def _core_views(body: RankRequest) -> list[dict[str, Any]]:
    """The views as ``core.ranking.serve.rank`` takes them, in the API's documented order.

    Sorted by (timestamp, categoryid, itemid): core.ranking keeps the given order of views that
    share a timestamp (file order, as in training), and a JSON list has no meaningful order, so
    without this the answer would depend on how the client listed tied views.
    """
    views = sorted(body.views, key=lambda v: (v.timestamp, v.categoryid, -1 if v.itemid is None else v.itemid))
    # itemid is optional per view, but core.ranking refuses a partly empty itemid column; it
    # does not rank on items, so it gets them only when every view has one.
    with_items = all(v.itemid is not None for v in views)
    return [v.model_dump(exclude=None if with_items else {"itemid"}) for v in views]


@router.post("/rank", response_model=RankResponse, responses={**ERROR_RESPONSES, **BUSY_RESPONSE})
async def rank(
    arts: ArtifactsDep,
    scorer: ScorerDep,
    body: Annotated[RankRequest, Body(openapi_examples=RANK_EXAMPLES)],
) -> JSONResponse:
    """Rank the categories of the visitor's recent views: the most likely next one first.

    Views may come in any order: they are sorted by (timestamp, categoryid, itemid).
    """
    return await scorer.run(_rank, arts, body, inline=len(body.views) <= INLINE_MAX_VIEWS)


def _rank(arts: Artifacts, body: RankRequest) -> JSONResponse:
    """The ranking of one request, rendered to JSON (runs on a scoring thread)."""
    result = serve.rank(_core_views(body), model=arts.ranking_model, top_k=body.top_k)
    reason = arts.ranking_fallback_reason() or result.fallback_reason
    table = result.columns
    rows = [
        {"categoryid": c, "score": finite_or_none(s), "rank": r}
        for c, s, r in zip(table["categoryid"].tolist(), table["score"].tolist(), table["rank"].tolist())
    ]
    # Plain Python types that match RankResponse: FastAPI's re-validation of the answer is skipped.
    return JSONResponse(
        {
            "ranker": str(result.ranker),
            "fallback_reason": reason,
            "ranking": rows,
            "n_history_views": int(result.n_history_views),
        }
    )


MAX_RULE_ERRORS = 20  # rows named in one 422; the message gives the total


def refuse_invalid_rows(features: pd.DataFrame | FeatureMatrix) -> FeatureValidation:
    """422 naming the users that break a rule of the data contract's valid feature rows; else
    the validation, for scoring without validating again.

    The dashboard's validator (``core.anomaly.validation.validate_features``): the two never disagree.
    """
    val = validate_features(features)
    if val.scorable.all():
        return val
    bad = val.row_problems[~val.row_problems["row"].isin(np.flatnonzero(val.scorable))]
    n_bad = len(features) - val.n_scorable
    errors = [
        {
            "loc": ("body", "users", int(r), str(c)),
            "msg": f"{p} ({n_bad} user(s) break a feature rule)",
            "type": "feature_rule",
        }
        for r, c, p in bad[["row", "column", "problem"]].head(MAX_RULE_ERRORS).itertuples(index=False)
    ]
    raise RequestValidationError(errors)


@router.post(
    "/anomaly",
    response_model=AnomalyResponse,
    responses={**ERROR_RESPONSES, **NO_DETECTOR_RESPONSE},
)
async def score_anomaly(
    arts: ArtifactsDep,
    scorer: ScorerDep,
    body: Annotated[AnomalyRequest, Body(openapi_examples=ANOMALY_EXAMPLES)],
) -> JSONResponse:
    """Anomaly score and flag per user, in input order, with the detector, policy and threshold."""
    return await scorer.run(_score_anomaly, arts, body, inline=len(body.users) <= INLINE_MAX_USERS)


_USER_FEATURES_OF = operator.attrgetter(*USER_FEATURES)


def _features_matrix(body: AnomalyRequest) -> FeatureMatrix:
    """The request's users as a feature table (in numpy, as the validator reads a small table):
    visitorid and the 16 features, in input order."""
    ids = np.array([u.visitorid for u in body.users], np.int64)
    values = np.array([_USER_FEATURES_OF(u) for u in body.users], np.float64)
    return FeatureMatrix(ids, np.asfortranarray(values))


def _score_anomaly(arts: Artifacts, body: AnomalyRequest) -> JSONResponse:
    """The scores of one request, rendered to JSON (runs on a scoring thread)."""
    if arts.detector is None:
        raise ArtifactError(
            "The anomaly detector artifact is not available, so users cannot be scored. " + " ".join(arts.problems)
        )
    detector = arts.detector if body.detector is None else arts.detectors.get(body.detector)
    if detector is None:
        raise ArtifactError(
            f"The {body.detector} detector artifact is not available in this build, so users "
            f"cannot be scored with it; it serves {sorted(arts.detectors)}. " + " ".join(arts.problems)
        )
    features = _features_matrix(body)
    val = refuse_invalid_rows(features)
    # score's own steps, minus its second validation of the same rows.
    scores = score_rows(features, val.scorable, detector)
    flags, threshold = flags_and_threshold(scores, body.share, detector, features, protect_buyers=body.protect_buyers)
    finite = np.isfinite(scores)
    users = [
        {"visitorid": v, "anomaly_score": s if ok else None, "is_anomaly": f}
        for v, s, ok, f in zip(features.visitorid.tolist(), scores.tolist(), finite.tolist(), flags.tolist())
    ]
    content = {
        "mode": "frozen" if body.share is None else "batch share",
        "detector": detector.name,
        "protect_buyers": body.protect_buyers,
        "policy": policy_label(body.protect_buyers),
        "share": float(detector.share if body.share is None else body.share),
        "threshold": finite_or_none(threshold),
        "n_users": len(users),
        "n_flagged": int(flags.sum()),
        "users": users,
        "drift": batch.api_drift(features, finite, scores, detector, arts.drift_reference),
    }
    # Built from plain Python types that match AnomalyResponse, so it skips FastAPI's
    # re-validation of 10,000 rows; the schema (and the fuzz tests' response check) still holds.
    return JSONResponse(content)
