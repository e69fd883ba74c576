"""The request body size limit and the error handlers: every answer, even an error, is JSON."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from core.errors import ArtifactError, DataError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Body size limit (a plain ASGI middleware, so it also covers chunked bodies).
# ---------------------------------------------------------------------------------------------


def _too_large_message(max_bytes: int) -> str:
    """The 413 message."""
    return f"Request body larger than {max_bytes} bytes."


class _BodyTooLarge(HTTPException):
    """Raised from receive() once a streamed body passes the limit.

    An HTTPException, because FastAPI turns any other error raised while reading the body into
    a 400; this one it re-raises, and the exception middleware answers 413.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=_too_large_message(max_bytes))


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
    return JSONResponse(
        status_code=500, content={"detail": f"Internal error ({type(exc).__name__})."}
    )


def install(app: FastAPI, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Install the body size limit and the error handlers on ``app``."""
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, _invalid_body)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(ArtifactError, _artifact_error)
    app.add_exception_handler(Exception, _unexpected)
