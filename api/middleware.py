"""Request guards and error handlers: every answer, even an error, is JSON.

- ``RequestGuard`` refuses ambiguous framing (Content-Length with Transfer-Encoding: 400),
  bodies over the size limit (413) and bodies that stall (408), before the app sees them.
- ``ScoringGate`` admits a bounded number of scoring requests; the rest get 503 + Retry-After
  at once instead of queueing without bound.
- ``StrictJSONRoute`` parses JSON bodies refusing duplicate keys (422), so a body has one meaning.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from core.errors import ArtifactError, DataError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024
BODY_TIMEOUT_S = 10.0
RETRY_AFTER_S = 1
SCORING_PATHS = frozenset({"/rank", "/anomaly"})


def _too_large_message(max_bytes: int) -> str:
    """The 413 message."""
    return f"Request body larger than {max_bytes} bytes."


class _BodyRefused(HTTPException):
    """Raised from receive() when the body breaks a limit.

    An HTTPException, because FastAPI turns any other error raised while reading the body into
    a 400; this one it re-raises, and the exception middleware answers with its status.
    """

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(status_code=status_code, detail=detail, headers={"Connection": "close"})


async def send_json(send: Any, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Send a complete JSON error response (and close the connection)."""
    body = json.dumps({"detail": detail}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Refuse CL+TE framing (400), bodies over ``max_bytes`` (413) and stalled bodies (408)."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES, body_timeout: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        lengths = [v for k, v in headers if k == b"content-length"]
        chunked = any(k == b"transfer-encoding" for k, _ in headers)
        if (lengths and chunked) or len(lengths) > 1:
            # Two framings a proxy and this server could read differently: request smuggling.
            await send_json(
                send,
                400,
                "Ambiguous request framing (Content-Length with Transfer-Encoding, or repeated Content-Length).",
                {"Connection": "close"},
            )
            return
        if lengths:
            try:
                too_big = int(lengths[0]) > self.max_bytes
            except ValueError:
                too_big = False  # a garbage header: the server or the JSON parsing refuses it
            if too_big:
                await send_json(send, 413, _too_large_message(self.max_bytes), {"Connection": "close"})
                return
        received = 0
        body_done = False
        started = False

        async def guarded_receive() -> dict:
            nonlocal received, body_done
            if body_done:  # after the body only a disconnect can come: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                raise _BodyRefused(408, f"Request body not received within {self.body_timeout:g} s.") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyRefused(413, _too_large_message(self.max_bytes))
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except _BodyRefused as exc:
            if started:  # cannot change the status any more; the server closes the connection
                raise
            await send_json(send, exc.status_code, str(exc.detail), {"Connection": "close"})


class ScoringGate:
    """Admit at most ``max_pending`` scoring requests at a time; answer the rest 503 at once.

    Admission happens before the body is read, so refused requests cost almost nothing and the
    event loop stays free for /health.
    """

    def __init__(self, app: Any, max_pending: int, paths: frozenset[str] = SCORING_PATHS) -> None:
        self.app = app
        self.max_pending = max_pending
        self.paths = paths
        self.pending = 0  # only touched on the event loop thread: no lock needed

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.pending >= self.max_pending:
            await send_json(
                send,
                503,
                "The server is busy scoring other requests; retry shortly.",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
            return
        self.pending += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.pending -= 1


# ---------------------------------------------------------------------------------------------
# JSON bodies without duplicate keys.
# ---------------------------------------------------------------------------------------------


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads hook: refuse an object that repeats a key (else the last one silently wins)."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            # Starlette annotates detail as str, but passes it through to the JSON body as is (FastAPI's
            # handler and its own subclass take any JSON value): a list like a 422 of FastAPI's.
            raise HTTPException(
                status_code=422,
                detail=[
                    {  # type: ignore[arg-type]
                        "loc": ["body"],
                        "msg": f"duplicate key {key[:50]!r} in a JSON object",
                        "type": "duplicate_key",
                    }
                ],
            )
        seen.add(key)
    return dict(pairs)


class StrictJSONRequest(Request):
    """A request whose JSON body refuses duplicate keys."""

    async def json(self) -> Any:
        """The parsed body (cached like Starlette's)."""
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), object_pairs_hook=_no_duplicate_keys)
        return self._json


class StrictJSONRoute(APIRoute):
    """An APIRoute that hands its endpoint a StrictJSONRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The default handler, over the strict request class."""
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


# ---------------------------------------------------------------------------------------------
# Error handlers.
# ---------------------------------------------------------------------------------------------


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic errors without the offending input (it may be NaN or megabytes long)."""
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]


async def _invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each invalid field."""
    return JSONResponse(status_code=422, content={"detail": _validation_detail(exc)})


async def _data_error(request: Request, exc: DataError) -> JSONResponse:
    """422 with the core's own message, for input the core refuses."""
    detail = [{"loc": ["body"], "msg": str(exc), "type": "data_error"}]
    return JSONResponse(status_code=422, content={"detail": detail})


async def _artifact_error(request: Request, exc: ArtifactError) -> JSONResponse:
    """503 when an artifact the request needs is not available."""
    return JSONResponse(status_code=503, content={"detail": str(exc)})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """500 as JSON, the error logged with its traceback."""
    # Last resort, so a client still gets JSON; the fuzz tests show no body gets here.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content={"detail": f"Internal error ({type(exc).__name__})."})


def install(
    app: FastAPI, max_body_bytes: int = MAX_BODY_BYTES, body_timeout: float = BODY_TIMEOUT_S, max_pending: int = 8
) -> None:
    """Install the request guards and the error handlers on ``app``."""
    app.add_middleware(ScoringGate, max_pending=max_pending)
    app.add_middleware(RequestGuard, max_bytes=max_body_bytes, body_timeout=body_timeout)  # outermost
    # Starlette types a handler as taking any Exception, though it only calls it with the class it
    # is registered for; a handler of a narrower exception is correct but rejected by the stubs.
    app.add_exception_handler(RequestValidationError, _invalid_body)  # type: ignore[arg-type]
    app.add_exception_handler(DataError, _data_error)  # type: ignore[arg-type]
    app.add_exception_handler(ArtifactError, _artifact_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
