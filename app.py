"""HTTP API over the core: next-category ranking and user anomaly scores.

Run with ``uvicorn app:app``. The artifacts are loaded once, by the same loader and manifest
check as the dashboard (``core.artifacts.load_artifacts``, which also reads
``RECSYS_ARTIFACT_DIR``). The endpoints only translate JSON to the core calls the dashboard
makes (``core.ranking.rank``, ``core.anomaly.score``) and back: no model logic lives here.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import Body, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException

import core
from core import anomaly, ranking
from core.artifacts import Artifacts, load_artifacts
from core.errors import ArtifactError, DataError
from core.ranking import MAX_VIEWS  # the core's own limit, so the two never disagree
from core.schema import UNKNOWN_CATEGORY, USER_FEATURES

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_USERS = 10_000
MAX_TOP_K = 50
MAX_TIMESTAMP_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
# Ids are int64 in the core; capped at 2**53 - 1, the largest integer a JSON client (and the
# float-valued OpenAPI maximum) represents exactly.
MAX_ID = 2**53 - 1
MAX_COUNT = 10**9
MAX_RATE = 1e9


# ---------------------------------------------------------------------------------------------
# Request and response models. Strict types as JSON Schema means them: "12" and true are not
# integers, 1.5 is not a count, but 12.0 is the integer 12.
# ---------------------------------------------------------------------------------------------


def _integral_float_to_int(value: Any) -> Any:
    """12.0 -> 12 (an integer in JSON Schema); anything else is left for strict validation."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _json_int(ge: int, le: int) -> Any:
    """A bounded integer type; the bounds come first so the OpenAPI schema shows them."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_integral_float_to_int)]


Count = _json_int(0, MAX_COUNT)
Id = _json_int(0, MAX_ID)
Timestamp = _json_int(0, MAX_TIMESTAMP_MS)
TopK = _json_int(1, MAX_TOP_K)


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
    """The visitor's recent views (any order) and how many categories to return."""

    model_config = ConfigDict(extra="forbid", strict=True)

    views: list[View] = Field(min_length=1, max_length=MAX_VIEWS)
    top_k: TopK = 3


class RankedCategory(BaseModel):
    categoryid: int
    score: float | None = Field(description="Ranker score, higher is better (null if not finite).")
    rank: int = Field(description="1 = most likely next category.")


class RankResponse(BaseModel):
    ranker: str = Field(description="Name of the ranker used (the model, or the rule).")
    fallback_reason: str | None = Field(
        default=None, description="Why the rule ranking was used instead of the model."
    )
    ranking: list[RankedCategory]
    n_history_views: int = Field(description="Views that entered the history (24 h, last 100).")


class UserFeatures(BaseModel):
    """One visitor and the 16 behaviour features of the spec (section 3)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    visitorid: Id
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


# The request model must list exactly the spec's features, or the detector would see other columns.
assert tuple(f for f in UserFeatures.model_fields if f != "visitorid") == USER_FEATURES


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


class UserScore(BaseModel):
    visitorid: int
    anomaly_score: float | None = Field(description="Higher = more anomalous.")
    is_anomaly: bool


class AnomalyResponse(BaseModel):
    mode: Literal["frozen", "batch share"]
    share: float = Field(description="The flagged share the threshold stands for.")
    threshold: float | None
    n_users: int
    n_flagged: int
    users: list[UserScore] = Field(description="One per input user, in input order.")


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
    "frozen": _example(
        "anomaly_request.json", "Demo users, frozen threshold", {"users": [_INLINE_USER]}
    ),
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


# ---------------------------------------------------------------------------------------------
# Body size limit (a plain ASGI middleware, so it also covers chunked bodies).
# ---------------------------------------------------------------------------------------------


class _BodyTooLarge(HTTPException):
    """Raised from receive() once a streamed body passes the limit.

    An HTTPException, because FastAPI turns any other error raised while reading the body into
    a 400; this one it re-raises, and the exception middleware answers 413.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=_too_large_message(max_bytes))


def _too_large_message(max_bytes: int) -> str:
    """The 413 message."""
    return f"Request body larger than {max_bytes} bytes."


class BodySizeLimit:
    """Reject bodies over ``max_bytes`` with 413: by Content-Length, else by counting the stream."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False  # a garbage header: let the server/JSON parsing refuse the body
            if too_big:
                await self._reject(send)
                return
        received = 0
        started = False

        async def counting_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:  # cannot change the status any more; the server closes the connection
                raise
            await self._reject(send)

    async def _reject(self, send: Any) -> None:
        """Send a JSON 413."""
        body = json.dumps({"detail": _too_large_message(self.max_bytes)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------------------
# Artifacts: loaded once per app, in the lifespan (or on first use if no lifespan ran).
# ---------------------------------------------------------------------------------------------

_load_lock = threading.Lock()


def get_artifacts(app: FastAPI) -> Artifacts:
    """The app's artifacts, loading them on first use; later calls reuse the same object."""
    arts = getattr(app.state, "artifacts", None)
    if arts is None:
        with _load_lock:
            arts = getattr(app.state, "artifacts", None)
            if arts is None:
                arts = load_artifacts(app.state.artifact_dir)
                app.state.artifacts = arts
                log.info("artifacts loaded from %s: %s", arts.path, arts.status)
    return arts


def _finite(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become null."""
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# The app.
# ---------------------------------------------------------------------------------------------


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic errors without the offending input (it may be NaN or megabytes long)."""
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]


def create_app(artifact_dir: str | Path | None = None) -> FastAPI:
    """Build the API over ``artifact_dir``, passed to ``load_artifacts`` as is.

    None means the loader's default: $RECSYS_ARTIFACT_DIR, else recsys_artifacts/.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        get_artifacts(app)  # once: later lifespans (e.g. a test client per request) reuse it
        yield

    app = FastAPI(
        title="Recommendation analytics API",
        version=core.__version__,
        description="Next-category ranking (task 1) and user anomaly scores (task 2).",
        lifespan=lifespan,
    )
    app.state.artifact_dir = artifact_dir
    app.state.artifacts = None
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _validation_detail(exc)})

    @app.exception_handler(DataError)
    async def _data_error(request: Request, exc: DataError) -> JSONResponse:
        detail = [{"loc": ["body"], "msg": str(exc), "type": "data_error"}]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(ArtifactError)
    async def _artifact_error(request: Request, exc: ArtifactError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Last resort, so a client still gets JSON; the fuzz tests show no body gets here.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            status_code=500, content={"detail": f"Internal error ({type(exc).__name__})."}
        )

    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        """Liveness, and which artifacts were loaded and trusted."""
        arts = get_artifacts(request.app)
        ready = arts.manifest_ok and arts.ranking_model is not None and arts.detector is not None
        return {
            "status": "ok" if ready else "degraded",
            "ranking": "model" if arts.ranking_model is not None else "rule fallback",
            "anomaly": "available" if arts.detector is not None else "unavailable",
            **jsonable_encoder(arts.summary()),
        }

    @app.get("/version")
    def version(request: Request) -> dict[str, Any]:
        """The build manifest (artifact hashes and library versions) this process serves."""
        arts = get_artifacts(request.app)
        return {
            "api_version": core.__version__,
            "artifact_dir": str(arts.path),
            "manifest_ok": arts.manifest_ok,
            "manifest": jsonable_encoder(arts.manifest),
        }

    @app.post("/rank", response_model=RankResponse, responses=ERROR_RESPONSES)
    def rank(
        request: Request,
        body: Annotated[RankRequest, Body(openapi_examples=RANK_EXAMPLES)],
    ) -> RankResponse:
        """Rank the categories of the visitor's recent views: the most likely next one first."""
        arts = get_artifacts(request.app)
        # itemid is optional per view, but core.ranking refuses a partly empty itemid column; it
        # does not rank on items, so it gets them only when every view has one.
        with_items = all(v.itemid is not None for v in body.views)
        views = [v.model_dump(exclude=None if with_items else {"itemid"}) for v in body.views]
        result = ranking.rank(views, model=arts.ranking_model, top_k=body.top_k)
        reason = arts.ranking_fallback_reason() or result.fallback_reason
        table = result.ranking
        rows = [
            RankedCategory(categoryid=int(c), score=_finite(s), rank=int(r))
            for c, s, r in zip(table["categoryid"], table["score"], table["rank"])
        ]
        return RankResponse(
            ranker=str(result.ranker),
            fallback_reason=reason,
            ranking=rows,
            n_history_views=int(result.n_history_views),
        )

    @app.post(
        "/anomaly",
        response_model=AnomalyResponse,
        responses={
            **ERROR_RESPONSES,
            503: {"model": ErrorResponse, "description": "No trusted detector artifact."},
        },
    )
    def score_anomaly(
        request: Request,
        body: Annotated[AnomalyRequest, Body(openapi_examples=ANOMALY_EXAMPLES)],
    ) -> JSONResponse:
        """Anomaly score and flag per user, in input order."""
        arts = get_artifacts(request.app)
        detector = arts.detector
        if detector is None:
            raise ArtifactError(
                "The anomaly detector artifact is not available, so users cannot be scored. "
                + " ".join(arts.problems)
            )
        # Column-wise from the validated models: cheaper than a dict per user.
        columns = ("visitorid", *USER_FEATURES)
        features = pd.DataFrame({c: [getattr(u, c) for u in body.users] for c in columns})
        scored = anomaly.score(features, share=body.share, detector=detector)
        scores = scored["anomaly_score"].to_numpy(dtype=np.float64)
        flags = scored["is_anomaly"].to_numpy(dtype=bool)
        finite = np.isfinite(scores)
        users = [
            {"visitorid": v, "anomaly_score": s if ok else None, "is_anomaly": f}
            for v, s, ok, f in zip(
                features["visitorid"].tolist(), scores.tolist(), finite.tolist(), flags.tolist()
            )
        ]
        threshold = float(scored["threshold"].iloc[0]) if len(scored) else math.nan
        content = {
            "mode": "frozen" if body.share is None else "batch share",
            "share": float(detector.share if body.share is None else body.share),
            "threshold": _finite(threshold),
            "n_users": len(users),
            "n_flagged": int(flags.sum()),
            "users": users,
        }
        # Built from plain Python types that match AnomalyResponse, so it skips FastAPI's
        # re-validation of 10,000 rows; the schema (and the fuzz tests' response check) still holds.
        return JSONResponse(content)

    return app


app = create_app()
