"""What the `asgi` worker makes of one request besides serving it: its scope (the scheme, from
TLS or a trusted proxy's headers; the extensions; the lifespan state), its record (access
log, Prometheus and StatsD) and its request hooks, between `request_began` and
`request_ended`. A worker that needs none of these (no access log, no counting metrics, no
hooks: the control socket's gauges are set by the loop, not per request) calls neither.
What this module must never do: trust a forwarded header from a peer outside
forwarded_allow_ips, or let a failure to record reach the connection.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from corral.adapters.asgi import Exchange, build_scope
from corral.adapters.asgi_extensions import accepts_trailers, access_environ, response_headers
from corral.http.parser import Request
from corral.http.writer import REASONS
from corral.trust import stated_scheme

if TYPE_CHECKING:
    from corral.hooks import HookRequest
    from corral.workers.asgi_h2_stream import H2Stream
    from corral.workers.asgi_http import HttpProtocol

log = logging.getLogger("corral.error")


def connection_scope(
    conn: HttpProtocol, req: Request, exchange: Exchange | H2Stream | None = None
) -> dict[str, Any]:
    """The scope of a request on `conn`: scheme (TLS, or a trusted proxy's word), the
    extensions this worker implements, and the lifespan state."""
    worker = conn.worker
    ssl_object = conn.ssl_object
    if ssl_object is not None:
        scheme = "https"
    else:
        scheme = "http"
        if conn.trusted and worker.secure_scheme_headers:
            secure_headers = worker.secure_scheme_headers
            stated = stated_scheme(
                (value, secure)
                for name, value in req.headers
                if (secure := secure_headers.get(name)) is not None
            )
            scheme = stated or scheme
    # The extensions this worker implements (ASGI spec, "Extensions"); a WebSocket scope
    # gets its own (asgi_websocket.py) besides `tls`.
    extensions: dict[str, Any] = {}
    if exchange is not None:
        extensions["http.response.early_hint"] = {}
        extensions["http.response.pathsend"] = {}
        if accepts_trailers(req):
            exchange.trailers_allowed = True
            extensions["http.response.trailers"] = {}
    if ssl_object is not None and worker.tls_facts is not None:
        extensions["tls"] = worker.tls_facts.info(ssl_object)
    return build_scope(
        req,
        conn.client,
        conn.server,
        scheme,
        worker.settings.root_path,
        worker.lifespan_state,
        extensions,
    )


def request_began(conn: HttpProtocol, req: Request) -> tuple[float, HookRequest | None]:
    """A request is about to go to the application: its start time (when something records
    it), the in-flight gauge, and pre_request (with the `req` post_request will get)."""
    worker = conn.worker
    started = time.monotonic() if worker.timed else 0.0
    if worker.request_stats is not None:
        worker.request_stats.begin()
    hooks = worker.request_hooks
    return started, None if hooks is None else hooks.before(req)


def request_ended(
    conn: HttpProtocol,
    req: Request,
    scope: dict[str, Any],
    exchange: Exchange | H2Stream,
    began: tuple[float, HookRequest | None],
) -> None:
    """Its response is over: the record, then post_request (after the access log line, as
    in Gunicorn)."""
    worker = conn.worker
    started, view = began
    if worker.timed:
        record(conn, req, exchange, time.monotonic() - started)
    if view is not None and worker.request_hooks is not None:
        worker.request_hooks.after(view, scope, exchange)


def record(conn: HttpProtocol, req: Request, exchange: Exchange | H2Stream, seconds: float) -> None:
    """Access log and metrics for one finished request; a failure here is logged and
    never reaches the connection or the worker."""
    worker = conn.worker
    status = exchange.status if exchange.head_sent else 0
    try:
        # The in-flight gauge first: nothing below may leave it counting a request.
        stats = worker.request_stats
        if stats is not None:
            stats.end()
            if status:
                stats.record(req.method, status, seconds)
        if worker.statsd is not None and status:
            worker.statsd.request(status, seconds)
        if worker.access is not None:
            line = f"{status} {REASONS.get(status, '')}" if status else "500"
            worker.access(
                access_environ(req, conn.client),
                line,
                response_headers(exchange.headers),
                exchange.sent,
                seconds,
            )
    except Exception:
        log.exception("Error recording request %s %s", req.method, req.target)
