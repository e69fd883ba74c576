"""Request and response models of the API, their bounds, and the OpenAPI examples.

Strict types as JSON Schema means them: "12" and true are not integers, 1.5 is not a count,
but 12.0 is the integer 12.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from core.anomaly.detector import DETECTORS
from core.base.schema import (
    MAX_ID,
    MAX_TIMESTAMP_MS,
    MAX_VISITOR_ID,
    MIN_TIMESTAMP_MS,
    MIN_VISITOR_ID,
    UNKNOWN_CATEGORY,
    USER_FEATURES,
)
from core.ranking.serve import MAX_VIEWS  # the core's own limit, so the two never disagree

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"

MAX_USERS = 10_000
MAX_TOP_K = 50
# The id and timestamp bounds come from core.base.schema: the dashboard's validators apply the same.
MAX_COUNT = 10**9
MAX_RATE = 1e9


def _integral_float_to_int(value: Any) -> Any:
    """12.0 -> 12 (an integer in JSON Schema); anything else is left for strict validation."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


# Bounded integer types; the bounds come first so the OpenAPI schema shows them. Written out as
# real type aliases (not built by a helper) so a type checker accepts them as annotations.
Count: TypeAlias = Annotated[int, Field(ge=0, le=MAX_COUNT), BeforeValidator(_integral_float_to_int)]
Id: TypeAlias = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_integral_float_to_int)]
VisitorId: TypeAlias = Annotated[
    int, Field(ge=MIN_VISITOR_ID, le=MAX_VISITOR_ID), BeforeValidator(_integral_float_to_int)
]
Timestamp: TypeAlias = Annotated[
    int, Field(ge=MIN_TIMESTAMP_MS, le=MAX_TIMESTAMP_MS), BeforeValidator(_integral_float_to_int)
]
TopK: TypeAlias = Annotated[int, Field(ge=1, le=MAX_TOP_K), BeforeValidator(_integral_float_to_int)]


def _rate(description: str, le: float = MAX_RATE) -> Any:
    """A finite non-negative float field (NaN and infinity are refused)."""
    return Field(ge=0, le=le, allow_inf_nan=False, description=description)


class View(BaseModel):
    """One product view of the visitor whose next category is ranked."""

    model_config = ConfigDict(extra="forbid", strict=True)

    timestamp: Timestamp = Field(description="Unix time in milliseconds (UTC), at most 2100.")
    categoryid: Id = Field(description="Category of the viewed item.")
    itemid: Id | None = Field(default=None, description="Viewed item (optional, not used to rank).")

    @field_validator("categoryid", mode="before")
    @classmethod
    def _known_category(cls, value: Any) -> Any:
        """Say why -1 is refused instead of a bare 'greater than or equal to 0'."""
        if type(value) in (int, float) and value == UNKNOWN_CATEGORY:
            raise ValueError(
                "categoryid -1 means 'unknown category' and cannot be ranked; "
                "leave views of items without a category out of the request"
            )
        return value


class RankRequest(BaseModel):
    """The visitor's recent views (any order: ties on timestamp are ordered by categoryid, then itemid) and
    how many categories to return."""

    model_config = ConfigDict(extra="forbid", strict=True)

    views: list[View] = Field(min_length=1, max_length=MAX_VIEWS)
    top_k: TopK = 3


class RankedCategory(BaseModel):
    categoryid: int
    score: float | None = Field(description="Ranker score, higher is better (null if not finite).")
    rank: int = Field(description="1 = most likely next category.")


class RankResponse(BaseModel):
    ranker: str = Field(description="Name of the ranker used (the model, or the rule).")
    fallback_reason: str | None = Field(default=None, description="Why the rule ranking was used instead of the model.")
    ranking: list[RankedCategory]
    n_history_views: int = Field(description="Views that entered the history (24 h, last 100).")


class UserFeatures(BaseModel):
    """One visitor and the 16 behaviour features of the data contract (docs/DATA_CONTRACT.md)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    visitorid: VisitorId
    events: Count
    view: Count
    addtocart: Count
    transaction: Count
    uniq_items: Count
    uniq_cats: Count
    cat_entropy: float = _rate("Shannon entropy (bits) of the category distribution.", le=64)
    events_per_active_day: float = _rate("events / distinct UTC days with an event.")
    add_to_view_rate: float = _rate("addtocart / max(view, 1).")
    txn_to_cart_rate: float = _rate("transaction / max(addtocart, 1).")
    night_share: float = _rate("Share of events in UTC hours [0, 6).", le=1)
    p95_gap_s: float = _rate("95th percentile of gaps between events, seconds.", le=1e12)
    short_gap_share: float = _rate("Share of gaps shorter than 5 s.", le=1)
    n_sessions: Count
    sessions_per_day: float = _rate("n_sessions / distinct UTC days with an event.")
    uniq_item_ratio: float = _rate("uniq_items / events.", le=1)


# The request model must list exactly the data contract's features, or the detector would see other columns.
assert tuple(f for f in UserFeatures.model_fields if f != "visitorid") == USER_FEATURES


# The registry's names, so the OpenAPI schema lists exactly the detectors a build can serve. The
# Literal is built at run time from the registry, which a type checker cannot follow: to it the
# alias is a plain str.
if TYPE_CHECKING:
    DetectorName: TypeAlias = str
else:
    DetectorName = Literal.__getitem__(tuple(sorted(DETECTORS)))


class AnomalyRequest(BaseModel):
    """Users to score and, optionally, the share of this batch to flag."""

    model_config = ConfigDict(extra="forbid", strict=True)

    users: list[UserFeatures] = Field(min_length=1, max_length=MAX_USERS)
    share: float | None = Field(
        default=None,
        gt=0,
        le=0.5,
        allow_inf_nan=False,
        description="Omit for the frozen threshold of the training users; else flag this share "
        "of the batch (its own (1 - share) score quantile).",
    )
    detector: DetectorName | None = Field(
        default=None,
        description="Which built detector scores the users; omit for the build's default. An unknown name is a 422.",
    )
    protect_buyers: bool = Field(
        default=True,
        description='The "keep visitors who bought" policy: never flag a user with transaction > 0.',
    )


class UserScore(BaseModel):
    visitorid: int
    anomaly_score: float | None = Field(description="Higher = more anomalous.")
    is_anomaly: bool


class FeatureDrift(BaseModel):
    psi: float | None = Field(description="Population stability index against the training users.")
    band: Literal["no drift", "moderate drift", "drift"]
    drifted: bool = Field(description="PSI >= 0.25.")


class DriftSummary(BaseModel):
    verdict: Literal["no drift", "moderate drift", "drift", "too few rows"]
    rows: int = Field(description="Scorable users the PSI was computed on.")
    min_rows: int
    reference_population: str
    features: dict[str, FeatureDrift]
    drifted_features: list[str] = Field(description="Features with PSI >= 0.25, largest first.")
    moderate_features: list[str]
    expected_flagged_share: float | None = Field(description="The share the frozen threshold was set to flag.")
    frozen_flagged_share: float | None = Field(description="The share it flags in this batch, before the policy.")


class AnomalyResponse(BaseModel):
    mode: Literal["frozen", "batch share"]
    detector: str = Field(description="The detector that scored the users.")
    protect_buyers: bool = Field(description='Whether "keep visitors who bought" was applied.')
    policy: str = Field(description="The policy in words.")
    share: float = Field(description="The flagged share the threshold stands for.")
    threshold: float | None
    n_users: int
    n_flagged: int
    users: list[UserScore] = Field(description="One per input user, in input order.")
    drift: DriftSummary | None = Field(
        default=None, description="Drift of the batch against the training users (200 or more users only)."
    )


class ErrorResponse(BaseModel):
    detail: Any


# ---------------------------------------------------------------------------------------------
# OpenAPI examples: the committed examples/*.json (real demo visitors), plus a tiny inline one.
# ---------------------------------------------------------------------------------------------

_INLINE_RANK = {
    "views": [
        {"timestamp": 1442004589439, "categoryid": 1051, "itemid": 285930},
        {"timestamp": 1442004759591, "categoryid": 1051, "itemid": 357564},
        {"timestamp": 1442004917175, "categoryid": 491, "itemid": 67045},
    ],
    "top_k": 3,
}
_INLINE_USER = {
    "visitorid": 0,
    "events": 3,
    "view": 3,
    "addtocart": 0,
    "transaction": 0,
    "uniq_items": 3,
    "uniq_cats": 2,
    "cat_entropy": 0.918,
    "events_per_active_day": 3.0,
    "add_to_view_rate": 0.0,
    "txn_to_cart_rate": 0.0,
    "night_share": 0.0,
    "p95_gap_s": 160.6,
    "short_gap_share": 0.0,
    "n_sessions": 1,
    "sessions_per_day": 1.0,
    "uniq_item_ratio": 1.0,
}


def _example(name: str, summary: str, inline: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI example from examples/<name>, or the inline fallback before they are built."""
    path = EXAMPLES_DIR / name
    try:
        return {"summary": summary, "value": json.loads(path.read_text())}
    except (OSError, ValueError):
        return {"summary": summary + " (inline)", "value": inline}


RANK_EXAMPLES = {
    "demo_visitor": _example("rank_request.json", "A real demo visitor's recent views", _INLINE_RANK),
}
ANOMALY_EXAMPLES = {
    "frozen": _example("anomaly_request.json", "Demo users, frozen threshold", {"users": [_INLINE_USER]}),
    "batch_share": _example(
        "anomaly_batch_share_request.json",
        "Demo users, flag 10% of this batch",
        {"users": [_INLINE_USER], "share": 0.1},
    ),
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Body is not UTF-8 text (so not JSON)."},
    413: {"model": ErrorResponse, "description": "Body larger than the limit."},
    422: {"model": ErrorResponse, "description": "Invalid body; `detail` names the field."},
}
NO_DETECTOR_RESPONSE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "No trusted detector artifact, or the server is busy."},
}
BUSY_RESPONSE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorResponse,
        "description": "Too many scoring requests at once; retry after the Retry-After seconds.",
    },
}
