"""How the API is served: ``python -m api`` runs uvicorn with the production settings.

``run`` starts ``app:app`` on uvicorn's h11 protocol with ``GuardedH11Protocol``, one worker per
core by default (each loads the artifacts once, in the app's lifespan), the limits below, metrics
shared between the workers and a JSON access log.

``GuardedH11Protocol`` gives every state of a connection a deadline; uvicorn alone has one only
for idle keep-alive connections:
- request headers not complete within the header timeout: the connection is closed;
- request line or headers over 16 KiB: 414 or 431, then closed (h11's own limit only applies to
  headers arriving in pieces, not to a big block received at once);
- a request body still arriving ``body timeout + 1 s`` after its headers: closed. The app
  answers 408 at the body timeout while it reads a body; this also covers a client that goes quiet
  after the server answered early (404, 401, 413) without reading its whole body;
- an answer the client does not read within the send timeout: closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from typing import Any

import h11
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import multiprocess
from uvicorn.supervisors.multiprocess import Process

from api.settings import from_env, metrics_dir, share_metrics_in

KEEP_ALIVE_S = 5
LIMIT_CONCURRENCY = 512  # open connections + tasks per worker; more get uvicorn's 503
MAX_HEADER_BYTES = 16 * 1024  # request line + headers
BODY_GRACE_S = 1.0  # after the body timeout, time for the app's own 408 before the connection is cut
SEND_TIMEOUT_S = 30.0  # an answer stuck in the send buffer this long: the client is not reading

# The uvicorn options of ``run``, for a command line of one's own (``uvicorn app:app ...``).
SERVER_ARGS: tuple[str, ...] = (
    "--http",
    "api.server:GuardedH11Protocol",
    "--timeout-keep-alive",
    str(KEEP_ALIVE_S),
    "--limit-concurrency",
    str(LIMIT_CONCURRENCY),
    "--h11-max-incomplete-event-size",
    str(MAX_HEADER_BYTES),
    "--no-access-log",
)


def _raw_error(status: int, reason: str, detail: str) -> bytes:
    """A complete JSON error response that closes the connection, as bytes."""
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"x-request-id: {uuid.uuid4().hex}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline in every connection state and a 16 KiB head limit."""

    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _send_timer: asyncio.TimerHandle | None = None
    _limits = from_env()  # read once, when uvicorn imports this
    header_timeout_s: float = _limits.header_timeout_s
    body_timeout_s: float = _limits.body_timeout_s + BODY_GRACE_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline as soon as the connection opens."""
        super().connection_made(transport)
        self._header_timer = self._arm(self._header_timer, self.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        """Refuse an oversized head; move the deadlines along with the request's state."""
        if self.conn.their_state is h11.IDLE and self._head_too_big(data):
            return
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        """A kept-alive connection gets a fresh header deadline for its next request."""
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._header_timer = self._arm(self._header_timer, self.header_timeout_s)
        self._follow_state()

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse: JSON with a request id, as every other answer, then closed
        (uvicorn's own is plain text without the id)."""
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # no answer of ours has begun
            self.transport.write(_raw_error(400, "Bad Request", msg))
        self.transport.close()

    def pause_writing(self) -> None:
        """The client stopped reading: it has the send timeout to start again."""
        super().pause_writing()
        self._send_timer = self._arm(self._send_timer, SEND_TIMEOUT_S)

    def resume_writing(self) -> None:
        """The client reads again."""
        super().resume_writing()
        self._send_timer = self._cancel(self._send_timer)

    def connection_lost(self, exc: Exception | None) -> None:
        """No timer outlives its connection."""
        self._header_timer = self._cancel(self._header_timer)
        self._body_timer = self._cancel(self._body_timer)
        self._send_timer = self._cancel(self._send_timer)
        super().connection_lost(exc)

    def _follow_state(self) -> None:
        """Header deadline off once a request's headers are in; body deadline on while its body
        is due (armed once per request: bytes trickling in do not extend it)."""
        their = self.conn.their_state
        if their is not h11.IDLE:
            self._header_timer = self._cancel(self._header_timer)
        if their is h11.SEND_BODY:
            if self._body_timer is None:
                self._body_timer = self._arm(None, self.body_timeout_s)
        else:
            self._body_timer = self._cancel(self._body_timer)

    def _head_too_big(self, data: bytes) -> bool:
        """Answer 414/431 and close when the request line or head passes MAX_HEADER_BYTES."""
        pending, _ = self.conn.trailing_data
        if len(pending) + len(data) <= MAX_HEADER_BYTES:
            return False
        head = bytes(pending[: MAX_HEADER_BYTES + 4]) + data[: MAX_HEADER_BYTES + 4]
        if b"\r\n\r\n" in head[: MAX_HEADER_BYTES + 4]:
            return False  # the head fits; what follows is body or a pipelined request
        line_end = head.find(b"\r\n")
        if line_end < 0 or line_end > MAX_HEADER_BYTES:
            response = _raw_error(414, "URI Too Long", f"Request line longer than {MAX_HEADER_BYTES} bytes.")
        else:
            response = _raw_error(
                431, "Request Header Fields Too Large", f"Request headers longer than {MAX_HEADER_BYTES} bytes."
            )
        self.transport.write(response)
        self.transport.close()
        return True

    def _arm(self, timer: asyncio.TimerHandle | None, seconds: float) -> asyncio.TimerHandle:
        """(Re)start a deadline that closes the connection."""
        self._cancel(timer)
        return self.loop.call_later(seconds, self._expired)

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> asyncio.TimerHandle | None:
        """Cancel a deadline, if any; None, to store in its attribute."""
        if timer is not None:
            timer.cancel()
        return None

    def _expired(self) -> None:
        """Drop the connection that missed a deadline."""
        if not self.transport.is_closing():
            self.transport.close()


def log_config() -> dict[str, Any]:
    """uvicorn's logging, plus the access log: one JSON object per line on stdout."""
    config = json.loads(json.dumps(LOGGING_CONFIG))
    config["formatters"]["json_line"] = {"format": "%(message)s"}
    config["handlers"]["api_access"] = {
        "formatter": "json_line",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stdout",
    }
    config["loggers"]["api.access"] = {"handlers": ["api_access"], "level": "INFO", "propagate": False}
    return config


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _reuse_port_socket(family: socket.AddressFamily, address: Any) -> socket.socket:
    """A TCP socket bound to ``address`` with SO_REUSEPORT, inheritable, not listening."""
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


class OwnSocketProcess(Process):
    """A uvicorn worker that listens on a socket of its own, on the supervisor's address.

    With one listening socket shared by every worker, the first worker to wake accepts a whole
    burst of new connections (asyncio accepts up to its backlog per wake-up), so keep-alive
    clients can all end up on one worker while another idles. With SO_REUSEPORT the kernel
    spreads new connections over the workers' sockets. The supervisor's own socket is bound
    but never listens: it holds the port and receives no connection.
    """

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover (a child)
        """Serve on a SO_REUSEPORT socket bound where the supervisor's socket is."""
        own = [_reuse_port_socket(s.family, s.getsockname()) for s in sockets or []]
        for s in sockets or []:
            s.close()
        super().target(own)


def _serve_workers(config: Any, workers: int) -> None:
    """uvicorn's worker supervisor, each worker listening on its own SO_REUSEPORT socket."""
    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    sock = _reuse_port_socket(family, (config.host, config.port))
    # uvicorn's supervisor makes every worker (at start and on restart) with this module-level
    # name: the one place its workers can be given their own socket.
    multiprocess.Process = OwnSocketProcess  # type: ignore[misc]
    multiprocess.Multiprocess(config, sockets=[sock]).run()


def run(host: str = "127.0.0.1", port: int = 8000, workers: int | None = None, log_level: str = "info") -> None:
    """Serve ``app:app`` with the production settings until interrupted."""
    import uvicorn

    own_dir = None
    if not metrics_dir():
        # The workers' shared metric files; set before any worker imports prometheus_client.
        own_dir = tempfile.mkdtemp(prefix="recsys-api-metrics-")
        share_metrics_in(own_dir)
    n_workers = workers or default_workers()
    options: dict[str, Any] = dict(
        host=host,
        port=port,
        workers=n_workers,
        http="api.server:GuardedH11Protocol",
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=LIMIT_CONCURRENCY,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        access_log=False,  # the app writes its own, with the request id
        log_config=log_config(),
        log_level=log_level,
    )
    try:
        if n_workers > 1 and hasattr(socket, "SO_REUSEPORT"):
            _serve_workers(uvicorn.Config("app:app", **options), n_workers)
        else:
            uvicorn.run("app:app", **options)
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
            logging.getLogger(__name__).debug("removed %s", own_dir)
