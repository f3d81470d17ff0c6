"""The broker's HTTP server against slow and broken clients (docs/broker.md, "Slow and bad clients").

aiohttp has no header timeout and no connection limit: a few hundred clients
that connect and send nothing (or half a request) hold their sockets until the
process runs out of file descriptors, and then asyncio cannot accept a real
node any more. Here every connection has one deadline at a time:

- from connect until its request headers are complete: `header_timeout`;
- while its handler reads the body: `body_timeout` (enforced in api.py);
- from one answer until the next request's headers: `keepalive_timeout`.

At `max_connections` the oldest connection that is not inside a handler is
closed to make room, so slow clients cannot lock out a node; only when every
connection is busy is the new one answered 503 at once. Requests that aiohttp
cannot even parse get a JSON 4xx that echoes nothing, logged without a
traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from http import HTTPStatus

from aiohttp import web

from wgmesh.broker.metrics import BrokerMetrics
from wgmesh.config import BrokerConfig

log = logging.getLogger(__name__)

FD_RESERVE_MIN = 64  # MQTT, logs, listening sockets, the journal of a co-hosted worker
MAX_CONNECTIONS_CAP = 16384  # beyond this the limit protects nothing; memory does
MAX_BACKLOG = 1024  # nodes re-register in bursts when a gateway fails
ACCEPT_BURSTS_IN_FLIGHT = 3
BUSY_RETRY_AFTER_S = 5


def fd_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return MAX_CONNECTIONS_CAP * 4 if soft == resource.RLIM_INFINITY else soft


def listen_backlog(fds: int | None = None) -> int:
    """Accept queue length; asyncio also accepts up to this many sockets per readiness event."""
    return max(16, min(MAX_BACKLOG, (fds or fd_limit()) // 16))


def default_max_connections(fds: int | None = None) -> int:
    """Connections that fit under RLIMIT_NOFILE next to the accept bursts and everything else.

    An evicted connection's descriptor is closed two loop iterations after the
    newcomer's connection_made, and asyncio accepts a burst in each iteration,
    so up to three bursts are open beyond the limit at once.
    """
    fds = fds or fd_limit()
    return max(8, min(MAX_CONNECTIONS_CAP, fds - FD_RESERVE_MIN - ACCEPT_BURSTS_IN_FLIGHT * listen_backlog(fds)))


def _busy_answer() -> bytes:
    body = json.dumps({"error": {"message": "too many open connections, retry shortly"}}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Retry-After: {BUSY_RETRY_AFTER_S}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class ConnectionGuard:
    """Deadlines and the connection limit for every connection of one server."""

    def __init__(self, cfg: BrokerConfig, metrics: BrokerMetrics):
        self.header_timeout = cfg.header_timeout
        self.keepalive_timeout = cfg.keepalive_timeout
        self.max_connections = cfg.max_connections or default_max_connections()
        self.metrics = metrics
        self.waiting: dict[GuardedRequestHandler, None] = {}  # not in a handler, oldest first
        self.busy: set[GuardedRequestHandler] = set()

    def __len__(self) -> int:
        return len(self.waiting) + len(self.busy)

    def opened(self, conn: GuardedRequestHandler) -> bool:
        """Admit a new connection (closing the oldest idle one if full); False: refused."""
        if len(self) >= self.max_connections:
            oldest = next(iter(self.waiting), None)
            if oldest is None:
                self.metrics.requests.labels("other", "503").inc()
                log.warning("all %d connections busy, refusing a new one", self.max_connections)
                return False
            log.debug("connection limit %d reached, closing the oldest idle connection", self.max_connections)
            self.closed(oldest)
            oldest.force_close()
        self.waiting[conn] = None
        conn.arm(self.header_timeout)
        return True

    def request_started(self, conn: GuardedRequestHandler) -> None:
        self.waiting.pop(conn, None)
        self.busy.add(conn)
        conn.disarm()

    def request_finished(self, conn: GuardedRequestHandler) -> None:
        if conn in self.busy:
            self.busy.discard(conn)
            self.waiting[conn] = None  # now the youngest idle one
            conn.arm(self.keepalive_timeout)

    def closed(self, conn: GuardedRequestHandler) -> None:
        self.waiting.pop(conn, None)
        self.busy.discard(conn)
        conn.disarm()

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        conn = request.protocol
        if not isinstance(conn, GuardedRequestHandler):  # e.g. aiohttp's test server
            return await handler(request)
        self.request_started(conn)
        try:
            return await handler(request)
        finally:
            self.request_finished(conn)


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's per-connection protocol plus a deadline and quiet, JSON parse errors."""

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs):
        super().__init__(manager, **kwargs)
        self.guard = guard
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.guard.opened(self):
            transport.write(_busy_answer())  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.closed(self)
        if self.transport is not None:  # refused connections never reached aiohttp
            super().connection_lost(exc)

    def arm(self, seconds: float) -> None:
        self.disarm()
        self.deadline = asyncio.get_running_loop().call_later(seconds, self._expired)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        log.debug("closing a connection that sent no complete request in time")
        self.guard.closed(self)
        self.force_close()

    def log_exception(self, *args, **kwargs) -> None:
        # After answering 400 for an undecodable body, aiohttp's lingering read of the rest
        # of it meets the same error again and would log it as "Unhandled exception".
        if isinstance(kwargs.get("exc_info"), web.RequestPayloadError):
            log.debug("dropping the rest of an undecodable request body")
            return
        super().log_exception(*args, **kwargs)

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None, message=None):
        """aiohttp's unparseable requests: JSON, nothing of the request echoed, no traceback."""
        if status >= 500:
            log.error("unexpected error handling a request from %s", request.remote, exc_info=exc)
            text = "internal error"
        else:
            log.info("malformed HTTP request from %s: %s", request.remote, type(exc).__name__)
            text = f"malformed HTTP request ({HTTPStatus(status).phrase})"
        self.guard.metrics.requests.labels("other", str(status)).inc()
        response = web.json_response({"error": {"message": text}}, status=status)
        response.force_close()
        return response


class GuardedAppRunner(web.AppRunner):
    """aiohttp's AppRunner whose connections are GuardedRequestHandlers (served by GuardedSite)."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **handler_kwargs):
        super().__init__(app, handle_signals=False, **handler_kwargs)
        self.guard = guard
        self.handler_kwargs = handler_kwargs  # what aiohttp's Server would pass to its RequestHandler

    def new_connection(self) -> GuardedRequestHandler:
        return GuardedRequestHandler(self.server, self.guard, loop=asyncio.get_running_loop(), **self.handler_kwargs)


class GuardedSite(web.BaseSite):
    """TCPSite with GuardedAppRunner.new_connection as the protocol factory."""

    def __init__(self, runner: GuardedAppRunner, host: str, port: int, backlog: int):
        super().__init__(runner, backlog=backlog)
        self.runner = runner
        self.host, self.port = host, port

    @property
    def name(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await super().start()  # registers with the runner, which stops us at cleanup
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.runner.new_connection, self.host, self.port, backlog=self._backlog)
