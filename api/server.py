"""How the API is served: uvicorn's h11 protocol with a request-header deadline, and the options.

Run it as ``uvicorn app:app`` plus ``SERVER_ARGS`` (the README shows the full command).
uvicorn only times out idle keep-alive connections; a client that opens a connection and sends
its headers slowly (or never) would hold it forever, so this protocol closes a connection whose
request headers are not complete within the header timeout (``api.settings``). The body has its own deadline in
``api.middleware``.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.settings import from_env

KEEP_ALIVE_S = 5
LIMIT_CONCURRENCY = 512
MAX_HEADER_BYTES = 16 * 1024

# The uvicorn options of the documented run command (tests and benchmarks start it the same way).
SERVER_ARGS: tuple[str, ...] = (
    "--http",
    "api.server:GuardedH11Protocol",
    "--timeout-keep-alive",
    str(KEEP_ALIVE_S),
    "--limit-concurrency",
    str(LIMIT_CONCURRENCY),
    "--h11-max-incomplete-event-size",
    str(MAX_HEADER_BYTES),
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections that do not finish their request headers in time."""

    _header_timer: asyncio.TimerHandle | None = None
    header_timeout_s: float = from_env().header_timeout_s  # read once, when uvicorn imports this

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline as soon as the connection opens."""
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        """Stop the deadline once a request's headers are in."""
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_timer()

    def on_response_complete(self) -> None:
        """A kept-alive connection gets a fresh deadline for its next request."""
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """No timer outlives its connection."""
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        """(Re)start the header deadline."""
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        """Cancel the header deadline, if any."""
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        """Drop the stalled connection."""
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
