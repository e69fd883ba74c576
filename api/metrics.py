"""Prometheus metrics of the API, served at /metrics, and the structured access log.

With several workers (``python -m api --workers N``) each process writes its metrics to files in
``PROMETHEUS_MULTIPROC_DIR`` and /metrics, whichever worker answers it, adds them all up.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from api.settings import metrics_dir
from core.store.artifacts import Artifacts

access_log = logging.getLogger("api.access")

# Routes get their own label; any other path is "other", so random 404 paths cannot grow the series.
ROUTES = frozenset(
    {"/rank", "/anomaly", "/health", "/version", "/metrics", "/docs", "/redoc", "/openapi.json", "/favicon.ico"}
)
REQUEST_ID_HEADER = b"x-request-id"
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")  # a client's own id is kept only if it is this plain

REQUESTS = Counter("recsys_api_requests_total", "HTTP requests answered, by route and status.", ["route", "status"])
LATENCY = Histogram(
    "recsys_api_request_duration_seconds",
    "Time from the request's headers to the end of its answer, by route.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
IN_FLIGHT = Gauge(
    "recsys_api_requests_in_flight", "Requests being read, queued, scored or answered.", multiprocess_mode="livesum"
)
REJECTED = Counter(
    "recsys_api_queue_rejections_total", "Scoring requests refused with 503 because the queue was full.", ["route"]
)
for _route in ("/rank", "/anomaly"):  # listed at 0 from the start, not only after a first refusal
    REJECTED.labels(route=_route)
MODELS = Gauge(
    "recsys_api_model_loaded",
    "Models the workers serve (1 = loaded), by task and name.",
    ["task", "name"],
    multiprocess_mode="livemax",
)

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """The metrics in the Prometheus text format (of every worker)."""
    if metrics_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def record_models(arts: Artifacts) -> None:
    """Set the loaded-model gauge from the artifacts this worker serves."""
    if arts.ranking_model is not None:
        MODELS.labels(task="rank", name=str(arts.ranking_model.name)).set(1)
    for name in sorted(arts.detectors):
        MODELS.labels(task="anomaly", name=name).set(1)


def worker_exit() -> None:
    """Drop this worker's live gauges from the shared files (in-flight, models)."""
    if metrics_dir():
        multiprocess.mark_process_dead(os.getpid())


def route_label(path: str) -> str:
    """The route label of a request path."""
    return path if path in ROUTES else "other"


def request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The client's X-Request-ID when it is a plain token, else a new random one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _CLIENT_ID.fullmatch(value):
            return value
    return uuid.uuid4().hex.encode()


class Observe:
    """Outermost middleware: request id, metrics and one JSON access-log line per request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope.get("headers") or [])
        route = route_label(scope.get("path", ""))
        status = 0  # 0: no answer (the client left, or the connection was closed)
        start = time.perf_counter()

        async def observed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, rid)]
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            IN_FLIGHT.dec()
            seconds = time.perf_counter() - start
            REQUESTS.labels(route=route, status=str(status)).inc()
            LATENCY.labels(route=route).observe(seconds)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    json.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "request_id": rid.decode(),
                            "method": scope.get("method"),
                            "route": route,
                            "status": status,
                            "ms": round(seconds * 1000, 2),
                            "client": (scope.get("client") or ("", 0))[0],
                        }
                    )
                )
