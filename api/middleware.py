"""Request guards and error handlers: every answer, even an error, is JSON.

- ``RequestGuard`` refuses ambiguous framing (Content-Length with Transfer-Encoding: 400) and
  bodies over the size limit (413), and reads the whole body before the app sees it: a body not
  complete within the body deadline (one deadline for the whole body, not per chunk) gets 408,
  so a slow client never holds a scoring slot while its body trickles in.
- ``ApiKeyGuard`` asks for ``Authorization: Bearer <key>`` on the scoring routes when keys are set.
- ``ScoringGate`` runs a bounded number of scoring requests at once and lets a bounded number
  wait, in order, for a short time; beyond that, 503 + Retry-After at once.
- ``StrictJSONRoute`` parses JSON bodies refusing duplicate keys (422), so a body has one meaning.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api import metrics
from api.settings import Settings
from core.base.errors import ArtifactError, DataError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024
# Bodies held in memory at once per worker (read, queued or being scored): bodies are read whole
# before they queue, and this keeps 512 connections from holding 512 bodies of 5 MB.
MAX_BUFFERED_BYTES = 64 * 1024 * 1024
BODY_TIMEOUT_S = 10.0
RETRY_AFTER_S = 1
SCORING_PATHS = frozenset({"/rank", "/anomaly"})
AUTH_CHALLENGE = 'Bearer realm="recsys-api"'


def _too_large_message(max_bytes: int) -> str:
    """The 413 message."""
    return f"Request body larger than {max_bytes} bytes."


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
    """Refuse CL+TE framing (400) and bodies over ``max_bytes`` (413); read the whole body within
    ``body_timeout`` seconds (else 408) before calling the app."""

    def __init__(
        self,
        app: Any,
        max_bytes: int = MAX_BODY_BYTES,
        body_timeout: float = BODY_TIMEOUT_S,
        max_buffered: int = MAX_BUFFERED_BYTES,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout
        self.max_buffered = max_buffered
        self.buffered = 0  # bytes of bodies held now; only touched on the event loop thread

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
        held = [0]  # bytes of this body counted in self.buffered
        try:
            body = await self._read_body(scope, receive, send, held)
            if body is None:
                return
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # after the body only a disconnect can come

            await self.app(scope, replay, send)
        finally:
            self.buffered -= held[0]

    async def _read_body(self, scope: dict, receive: Any, send: Any, held: list[int]) -> bytes | None:
        """The whole body (its size added to ``held``); None once a 408/413/503 is sent or the
        client has left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout  # for the whole body: trickling bytes do not extend it
        chunks: list[bytes] = []
        while True:
            try:
                # A timeout on this task, not wait_for's task per message: a request costs less.
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                detail = f"Request body not received within {self.body_timeout:g} s."
                await send_json(send, 408, detail, {"Connection": "close"})
                return None
            if message["type"] != "http.request":  # the client disconnected
                return None
            chunk = message.get("body", b"")
            if held[0] + len(chunk) > self.max_bytes:
                await send_json(send, 413, _too_large_message(self.max_bytes), {"Connection": "close"})
                return None
            if self.buffered + len(chunk) > self.max_buffered:
                metrics.REJECTED.labels(route=metrics.route_label(scope.get("path", ""))).inc()
                await send_json(
                    send,
                    503,
                    "The server holds too many request bodies; retry shortly.",
                    {"Retry-After": str(RETRY_AFTER_S), "Connection": "close"},
                )
                return None
            held[0] += len(chunk)
            self.buffered += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ApiKeyGuard:
    """With keys set, the scoring routes need ``Authorization: Bearer <key>``; else 401.

    Checked on the headers, before the body is read or a queue place taken. Every key is compared
    in constant time, so the answer's timing tells nothing about how much of a key was right.
    """

    def __init__(self, app: Any, keys: tuple[str, ...], paths: frozenset[str] = SCORING_PATHS) -> None:
        self.app = app
        self.keys = tuple(k.encode() for k in keys)
        self.paths = paths

    def allowed(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """True when the Authorization header carries one of the keys."""
        values = [v for k, v in headers if k == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, token = values[0].partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        matches = [hmac.compare_digest(token, key) for key in self.keys]  # all of them, no early exit
        return any(matches)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not self.keys or scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        if not self.allowed(scope.get("headers") or []):
            await send_json(
                send,
                401,
                "Missing or unknown API key: send the header 'Authorization: Bearer <key>'.",
                {"WWW-Authenticate": AUTH_CHALLENGE, "Connection": "close"},
            )
            return
        await self.app(scope, receive, send)


class ScoringGate:
    """At most ``slots`` scoring requests at a time; up to ``queue`` more wait (first come, first
    served) for at most ``wait_s`` seconds; any other gets 503 + Retry-After at once.

    Sits behind ``RequestGuard``, so only requests whose body has fully arrived take a place. A
    slot is given back when the answer starts, so a client slow to read it holds no slot.
    """

    def __init__(
        self, app: Any, slots: int, queue: int, wait_s: float = 5.0, paths: frozenset[str] = SCORING_PATHS
    ) -> None:
        self.app = app
        self.slots = asyncio.Semaphore(slots)
        self.queue = queue
        self.wait_s = wait_s
        self.paths = paths
        self.waiting = 0  # only touched on the event loop thread: no lock needed

    async def _busy(self, scope: dict, send: Any) -> None:
        """503 with Retry-After, counted."""
        metrics.REJECTED.labels(route=metrics.route_label(scope.get("path", ""))).inc()
        await send_json(
            send,
            503,
            "The server is busy scoring other requests; retry shortly.",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.slots.locked():
            if self.waiting >= self.queue:
                await self._busy(scope, send)
                return
            self.waiting += 1
            try:
                async with asyncio.timeout(self.wait_s):
                    await self.slots.acquire()
            except TimeoutError:
                await self._busy(scope, send)
                return
            finally:
                self.waiting -= 1
        else:
            await self.slots.acquire()  # free: returns at once
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.slots.release()

        async def releasing_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, releasing_send)
        finally:
            release()


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


def install(app: FastAPI, limits: Settings, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Install the request guards, with ``limits``, and the error handlers on ``app``."""
    # Added innermost first: Observe sees every answer, the key is checked before the body is
    # read, and only complete bodies queue for a scoring slot.
    app.add_middleware(ScoringGate, slots=limits.scoring_threads, queue=limits.queue, wait_s=limits.queue_wait_s)
    app.add_middleware(RequestGuard, max_bytes=max_body_bytes, body_timeout=limits.body_timeout_s)
    app.add_middleware(ApiKeyGuard, keys=limits.api_keys)
    app.add_middleware(metrics.Observe)
    # Starlette types a handler as taking any Exception, though it only calls it with the class it
    # is registered for; a handler of a narrower exception is correct but rejected by the stubs.
    app.add_exception_handler(RequestValidationError, _invalid_body)  # type: ignore[arg-type]
    app.add_exception_handler(DataError, _data_error)  # type: ignore[arg-type]
    app.add_exception_handler(ArtifactError, _artifact_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
