"""One client connection of the `asgi` worker: an asyncio Protocol over the one sans-IO parser.

Heads are parsed by http/parser.py and bodies decoded by http/body.py as bytes arrive; each
request runs the application as a task with an `adapters.asgi.Exchange` as its receive/send
pair. Reading stops while the application has not taken the body already received (read
backpressure), and `send` waits while the transport is above its high-water mark (write
backpressure). A connection that switches to HTTP/2 (workers/asgi_h2_switch.py) is handed
to workers/asgi_h2.py, which then gets its bytes, deadlines and stop; the transport and its
write backpressure stay here. What this module must never do: parse HTTP a second way, or let
one request's failure reach another connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

from corral.adapters.asgi import ClientGone, Exchange
from corral.errors import ProtocolError
from corral.http.body import decoder_for
from corral.http.parser import Request
from corral.http.websocket_handshake import check_upgrade, is_websocket_upgrade, refusal_response
from corral.http.writer import error_response, health_response
from corral.trust import is_trusted
from corral.workers.asgi_h2_switch import negotiate, sniff_preface, upgrade
from corral.workers.asgi_request import connection_scope, request_began, request_ended
from corral.workers.asgi_transport import AsgiConnection
from corral.workers.asgi_uwsgi import apply_scheme, parse_request
from corral.workers.asgi_websocket import WebSocketSession, websocket_scope

if TYPE_CHECKING:
    from corral.workers.asgi import AsgiWorker
    from corral.workers.asgi_h2 import Http2Connection

log = logging.getLogger("corral.error")

_TASK_CONTEXT = sys.version_info >= (3, 11)  # create_task(..., context=...)
# Python 3.12+: a request's task runs at once, inside data_received, until it first waits;
# the usual request (no body to wait for, a response that fits the socket) then ends without
# a trip through the loop's ready queue. Its task still exists, so current_task() works.
_EAGER = sys.version_info >= (3, 12)

# Body chunks the application has not taken yet before reading pauses.
_BODY_QUEUE = 4


class HttpProtocol(AsgiConnection):
    """One client connection: heads parsed as bytes arrive, one request served at a time."""

    def __init__(self, worker: AsgiWorker, proxy_client: tuple[str, int] | None = None) -> None:
        super().__init__()
        self.worker = worker
        self.buf = b""
        self.exchange: Exchange | None = None
        self.decoder: Any = None
        self.task: asyncio.Task[None] | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        # Deadlines (time.monotonic(), 0.0 = none), checked by the worker's sweep: cheaper
        # than a loop timer armed and cancelled for every request.
        self.idle_deadline = 0.0
        self.accepted = time.monotonic()  # for the control socket's `show connections` age
        self.websocket: WebSocketSession | None = None
        self.body_deadline = 0.0
        self.trusted = False  # the peer is in forwarded_allow_ips
        self.ssl_object: Any = None
        self.proxy_client = proxy_client  # the client a PROXY protocol header named
        # Each request task starts from a copy of this, never from the previous request's
        # context (which is current when a task or a resumed reader starts the next one).
        self.context = contextvars.copy_context()
        self.head_started = False  # bytes of a head came: its deadline is set, not moved
        self.eof = False  # the client half-closed: answer what it sent, then close
        self.grace_for: asyncio.Task[None] | None = None  # the task a cancel is set for
        self.eager = _EAGER and isinstance(self.loop, asyncio.BaseEventLoop)
        self.starting = False  # a task is being started eagerly (finished() must not recurse)
        self.next_pending = False  # a request finished while starting: read the next one
        self.next_pending_on_drain = False  # the buffer is read again once writes drain
        self.stall_size = 0  # bytes waiting in the transport at the last progress seen
        self.stall_since = 0.0  # when writes last made progress while the transport was full
        self.write_blocked_at = 0.0  # when this response first filled the transport
        self.h2: Http2Connection | None = None  # set once the connection speaks HTTP/2
        self.h2_prior = False  # the first bytes may be the HTTP/2 preface (cleartext)
        self.h2_upgrade = False  # an `Upgrade: h2c` request may switch it (cleartext)
        self.uwsgi_scheme: str | None = None  # HTTPS as a trusted uwsgi proxy stated it

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do the same without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.worker.protocols.add(self)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.server = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None
        worker = self.worker
        self.ssl_object = transport.get_extra_info("ssl_object")  # None on a plain connection
        self.trusted = is_trusted(peer, worker.forwarded_allow_ips)
        if self.proxy_client is not None:
            self.client = self.proxy_client
        self.arm_idle(worker.timeout)
        negotiate(self)  # HTTP/2 by ALPN, or what the first bytes may do (cleartext)

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.protocols.discard(self)
        if self.h2 is not None:
            self.h2.connection_lost()
        self.worker.acceptor.released()
        self.cancel_idle()
        self.cancel_body_timer()
        self.transport_gone = True
        self.can_write.set()  # a send waiting for the socket to drain learns it is gone
        if self.websocket is not None:
            self.websocket.connection_lost()
        if self.exchange is not None:
            self.exchange.disconnected()
        self.cancel_after_grace()
        task = self.task
        if task is not None and not task.done():
            # The worker keeps it in sight: a graceful stop ends it before lifespan shutdown.
            orphans = self.worker.orphans
            orphans.add(task)
            task.add_done_callback(orphans.discard)

    def cancel_after_grace(self) -> None:
        """The client has gone (or finished sending): the request task is cancelled
        `asgi_disconnect_grace_period` seconds from now unless it ends first. Work after a
        complete response (background tasks) is left to end on its own."""
        task = self.task
        exchange = self.exchange
        finished = exchange is not None and exchange.ended and not exchange.awaiting_trailers
        if task is None or task.done() or finished or task is self.grace_for:
            return
        self.grace_for = task
        grace = self.worker.settings.asgi_disconnect_grace_period
        handle = self.loop.call_later(grace, self.grace_expired, task, exchange)
        task.add_done_callback(lambda _: handle.cancel())

    def grace_expired(self, task: asyncio.Task[None], exchange: Exchange | None) -> None:
        """The grace period is over: the request is ended as one whose client has gone (no
        500, no traceback), and its connection closed."""
        if exchange is not None:
            exchange.disconnected()
        task.cancel()

    def pause_writing(self) -> None:
        super().pause_writing()
        if not self.write_blocked_at and self.exchange is not None:
            self.write_blocked_at = time.monotonic()  # response_write_timeout counts from here

    def resume_writing(self) -> None:
        super().resume_writing()
        self.stall_since = 0.0
        if self.h2 is not None:
            self.resume_reading()  # paused while the peer did not read (asgi_h2.py)
            return
        if self.next_pending_on_drain and self.exchange is None:
            self.next_pending_on_drain = False
            self.resume_reading()
            self.next_request()

    @property
    def state(self) -> str:
        """The connection's state as the metrics name them (metrics.stats CONNECTION_STATES)."""
        if self.h2 is not None:
            return self.h2.state
        if self.websocket is not None:
            return "serving"
        if self.exchange is None:
            return "head" if self.head_started else "idle"
        if self.decoder is not None:
            return "body"
        return "serving" if not self.exchange.started else "writing"

    def eof_received(self) -> bool:
        """The client half-closed (RFC 9112 §9.6 allows it): a request it has sent is still
        answered, then the connection is closed; with nothing in progress it closes now."""
        self.eof = True
        if self.h2 is not None:
            return False  # HTTP/2 has its own end (GOAWAY): a half-closed peer is gone
        exchange = self.exchange
        if self.websocket is not None or exchange is None or self.decoder is not None:
            return False  # nothing to answer, or a body that can no longer be complete
        # The request is whole: the application hears http.disconnect if it listens (the
        # client may have gone for good), and its response is still sent if it comes within
        # asgi_disconnect_grace_period (the client may only have half-closed). Under TLS a
        # half-open connection cannot be kept (asyncio's TLS layer closes it anyway).
        exchange.set_over()
        self.cancel_after_grace()
        return self.ssl_object is None

    def data_received(self, data: bytes) -> None:
        if self.h2 is not None:
            self.h2.data_received(data)
            return
        if self.h2_prior and sniff_preface(self, data):
            return
        websocket = self.websocket
        if websocket is not None:
            self.cancel_idle()
            if websocket.accepted:
                websocket.data_received(data)
            else:
                self.buf += data  # frames sent before our 101: read once accepted
                if len(self.buf) > 65536:
                    self.pause()
            return
        if self.decoder is not None:
            self.feed_body(data)
            return
        self.buf += data
        if self.exchange is None and not self.next_pending_on_drain:
            self.next_request()
        if (len(self.buf) > 65536 and self.exchange is not None) or self.next_pending_on_drain:
            self.pause()  # pipelined requests wait until the current one is done

    # --- requests --------------------------------------------------------------------------

    def next_request(self) -> None:
        """Start the request at the head of the buffer; health-path answers, which need no
        task, are taken one after another here rather than by recursion."""
        while self.start_request():
            if self.must_drain:
                # Health answers pile up for a client that does not read them: wait until
                # the transport drains (resume_writing) before reading more.
                self.pause()
                self.next_pending_on_drain = True
                return

    def start_request(self) -> bool:
        """True when a health request was answered and the buffer may hold another."""
        try:
            parsed = parse_request(self)  # an HTTP head, or a uwsgi packet (--protocol)
        except ProtocolError as exc:
            self.reject(exc.status)
            return False
        if parsed is None:
            if self.buf and not self.head_started:
                # The whole head must come within `timeout` of its first bytes: a client
                # that sends it a byte at a time does not move the deadline.
                self.head_started = True
                self.arm_idle(self.worker.timeout)
            return False
        self.head_started = False
        self.cancel_idle()
        req, used = parsed
        self.buf = self.buf[used:]
        if req.path == self.worker.health_path:
            return self.answer_health(req)
        if self.h2_upgrade and upgrade(self, req):
            return False
        if is_websocket_upgrade(req):
            self.start_websocket(req)
            return False
        decoder = None
        if req.chunked or req.content_length:
            try:
                # A Content-Length over limit_request_body: 413 now, before the application
                # and without a 100 Continue. A chunked body is refused as it passes the
                # limit, in feed_body.
                decoder = decoder_for(req, self.worker.settings.limit_request_body)
            except ProtocolError as exc:
                self.reject(exc.status)
                return False
        keep = self.worker.count_request()
        exchange = Exchange(self, req, keep and self.worker.keep_alive_allowed)
        try:
            scope = connection_scope(self, req, exchange)
            apply_scheme(self, scope)
        except ProtocolError as exc:
            self.reject(exc.status)
            return False
        self.exchange = exchange
        if self.eof:
            exchange.set_over()  # as for the request in progress when the client half-closed
        if decoder is not None:
            self.decoder = decoder
            rest, self.buf = self.buf, b""
            if rest:
                self.feed_body(rest)
                if self.transport is None or self.transport.is_closing():
                    return False  # the body was refused at once (bad framing, over the limit)
            elif req.expect_continue:
                exchange.send_continue = self.write  # on the application's first receive
            if self.decoder is not None:
                self.arm_body_timer()
        task = self.start_task(self.run(req, scope, exchange))
        if self.exchange is exchange:
            self.task = task  # still running (an eager one that ended has moved on)
        if self.next_pending:
            self.next_pending = False
            return True  # it ended at once and the buffer holds the next request
        return False

    def start_task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """The task of one request (or WebSocket), in a fresh copy of the connection's first
        context."""
        loop = self.loop
        if self.eager:
            self.starting = True
            try:
                task: asyncio.Task[None] = asyncio.Task(  # type: ignore[call-arg, unused-ignore]
                    coro, loop=loop, context=self.context.copy(), eager_start=True
                )
            finally:
                self.starting = False
            if task.done():
                return task
        elif _TASK_CONTEXT:
            task = loop.create_task(coro, context=self.context.copy())  # type: ignore[call-arg]
        else:  # Python 3.10: the task copies the context current when it is made
            task = self.context.copy().run(loop.create_task, coro)
        return task

    def answer_health(self, req: Request) -> bool:
        """--health-path: answered by corral itself, 200 while serving, 503 once stopping;
        the application is never called. True when the connection goes on with its buffer."""
        worker = self.worker
        keep = worker.alive and req.keep_alive and not req.chunked and not req.content_length
        keep = keep and worker.keep_alive_allowed and not (self.eof and not self.buf)
        self.write(health_response(200 if worker.alive else 503, keep, req.method == "HEAD"))
        if not keep:
            self.close_transport()
            return False
        if self.buf:
            return True
        self.arm_idle(float(worker.settings.keepalive))
        return False

    def start_websocket(self, req: Request) -> None:
        self.worker.count_request()
        try:
            handshake = check_upgrade(req)
        except ProtocolError as exc:
            if self.transport is not None:
                self.transport.write(refusal_response(exc))
                self.transport.close()
            return
        try:
            http_scope = connection_scope(self, req)
        except ProtocolError as exc:
            self.reject(exc.status)
            return
        limit = self.worker.settings.websocket_max_message_size or (1 << 62)
        session = WebSocketSession(self, handshake, limit)
        self.websocket = session
        scope = websocket_scope(http_scope, handshake)
        self.task = self.start_task(self.run_websocket(scope, session))

    async def run_websocket(self, scope: dict[str, Any], session: WebSocketSession) -> None:
        failed = False
        try:
            await self.worker.asgi_app(scope, session.receive, session.send)
        except ClientGone:
            pass
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # one connection's failure stays its own
            if not (isinstance(exc, asyncio.CancelledError) and session.finished):
                log.error("Exception in ASGI application (WebSocket)", exc_info=exc)
                failed = True
        session.app_returned(failed)

    def upgraded(self, session: WebSocketSession) -> None:
        """The handshake is accepted: bytes that came early are the first frames."""
        self.cancel_idle()
        self.resume_reading()
        if self.buf:
            data, self.buf = self.buf, b""
            session.data_received(data)

    def feed_body(self, data: bytes) -> None:
        exchange = self.exchange
        assert exchange is not None
        try:
            chunk, rest = self.decoder.feed(data)
        except ProtocolError as exc:
            self.decoder = None
            exchange.disconnected()
            answer = exchange.error_answer(exc.status)  # None once a head has gone
            if self.transport is not None:
                if answer:
                    self.transport.write(answer)
                self.transport.close()
            return
        done = self.decoder.done
        if chunk or done:
            exchange.feed_body(chunk, not done)
        if done:
            self.decoder = None
            self.buf = rest
            self.cancel_body_timer()
            return
        self.arm_body_timer()
        if exchange.buffered >= _BODY_QUEUE:
            self.pause()  # the application is not taking the body: stop reading the socket

    async def run(self, req: Request, scope: dict[str, Any], exchange: Exchange) -> None:
        worker = self.worker
        if worker.timed or worker.request_hooks is not None:
            began = request_began(self, req)
            try:
                kept = await self.run_app(req, scope, exchange)
            finally:
                # Before the next request starts: on Python 3.12+ that one may run to its
                # end inside go_on, and its record and hooks must come after these.
                request_ended(self, req, scope, exchange, began)
        else:
            kept = await self.run_app(req, scope, exchange)
        if kept:
            try:
                self.go_on()
            except Exception:  # the connection's state is unknown: it goes, nothing else does
                log.exception("Error starting the next request after %s %s", req.method, req.target)
                self.abort()

    async def run_app(self, req: Request, scope: dict[str, Any], exchange: Exchange) -> bool:
        """The application's call and the end of its response; True when the connection is
        kept for a next request."""
        try:
            await self.worker.asgi_app(scope, exchange.receive, exchange.send)
        except ClientGone:
            pass
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # one request's failure stays its own
            if exchange.client_gone:
                # The client left first: what the application raised is most likely the news
                # of it (Starlette's ClientDisconnect, a cancelled await): one line, no trace.
                if not isinstance(exc, asyncio.CancelledError):
                    log.info(
                        "ASGI application %s %s ended after its client left: %r",
                        req.method,
                        req.target,
                        exc,
                    )
            else:
                log.error(
                    "Exception in ASGI application %s %s", req.method, req.target, exc_info=exc
                )
                answer = exchange.error_answer(500)
                if answer:
                    self.write(answer)
        try:
            return self.finished(exchange)
        except Exception:  # the connection's state is unknown: it goes, nothing else does
            log.exception("Error ending a request %s %s", req.method, req.target)
            self.abort()
            return False

    def finished(self, exchange: Exchange) -> bool:
        """The response is over: close, or make ready for the next request (True)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if exchange.client_gone:
            transport.close()  # gone, or given up on after a half-close
            return False
        if exchange.awaiting_trailers:
            self.write(exchange.finish_trailers())  # announced, never sent: an empty section
        if not exchange.ended:
            # The application returned without finishing its response.
            if not exchange.started:
                log.error("ASGI application returned without a response")
                answer = exchange.error_answer(500)
                if answer:
                    self.write(answer)
            exchange.keep_alive = False
        # A response that said keep-alive keeps its promise even if the worker began to stop
        # meanwhile: the client may already be sending its next request, which is answered
        # with Connection: close (the stop bounds how long the connection may wait for it).
        if not exchange.keep_alive or self.decoder is not None or (self.eof and not self.buf):
            transport.close()
            return False
        self.exchange = None
        self.task = None
        self.write_blocked_at = 0.0
        self.resume_reading()
        return True

    def go_on(self) -> None:
        """The connection is kept: its next request starts if its bytes are here."""
        if self.buf:
            if self.starting:
                self.next_pending = True  # start_request goes on with it: no recursion
            else:
                self.next_request()
        else:
            self.arm_idle(float(self.worker.settings.keepalive))

    def reject(self, status: int) -> None:
        if self.transport is not None:
            self.transport.write(error_response(status))
            self.transport.close()

    # --- deadlines ---------------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """From the worker, a few times a second: act on the deadlines that have passed."""
        if self.h2 is not None:
            if not self.can_write.is_set() and self.transport is not None:
                self.check_write_progress(now)
            self.h2.sweep(now)
            return
        if self.idle_deadline and now >= self.idle_deadline:
            self.idle_deadline = 0.0
            self.idle_expired()
        if self.body_deadline and now >= self.body_deadline:
            self.body_deadline = 0.0
            self.body_expired()
        if not self.can_write.is_set() and self.transport is not None:
            self.check_write_progress(now)
        limit = self.worker.settings.response_write_timeout
        if self.write_blocked_at and limit and now - self.write_blocked_at > limit:
            # However steadily the client reads, a response may take this long, in total,
            # from the moment it first filled the transport (as on the WSGI workers).
            log.info("Closing connection from %s: response_write_timeout", self.client)
            self.write_blocked_at = 0.0
            if self.exchange is not None:
                self.exchange.disconnected()
            self.abort()

    def check_write_progress(self, now: float) -> None:
        """A client that reads nothing of what waits for it for `timeout` seconds is cut
        off: its response (and the task waiting to send more) would otherwise stay for ever."""
        assert self.transport is not None
        size = self.transport.get_write_buffer_size()
        if not self.stall_since or size < self.stall_size:
            self.stall_size, self.stall_since = size, now  # progress (or the first look)
        elif now - self.stall_since > self.worker.timeout:
            log.info("Closing connection from %s: no write progress", self.client)
            if self.exchange is not None:
                self.exchange.disconnected()
            self.abort()

    def arm_body_timer(self) -> None:
        """A body that stops arriving for `timeout` ends the request (the client is gone)."""
        self.body_deadline = time.monotonic() + self.worker.timeout

    def cancel_body_timer(self) -> None:
        self.body_deadline = 0.0

    def body_expired(self) -> None:
        if self.decoder is not None and self.exchange is not None:
            if not self.reading:
                self.arm_body_timer()  # paused by us: the application is slow, not the client
                return
            self.exchange.disconnected()
            answer = self.exchange.error_answer(408)
            if self.transport is not None:
                if answer:
                    self.transport.write(answer)
                self.transport.close()

    def arm_idle(self, seconds: float) -> None:
        self.idle_deadline = time.monotonic() + seconds if seconds > 0 else 0.0

    def cancel_idle(self) -> None:
        self.idle_deadline = 0.0

    def idle_expired(self) -> None:
        if self.exchange is None and self.transport is not None:
            if self.buf:
                self.transport.write(error_response(408))
            self.transport.close()

    def wind_down(self, until: float) -> None:
        """The worker is stopping: an open WebSocket is told it is going away (1001); a
        connection waiting for a request keeps it only until `until` (a request that comes
        meanwhile is answered with Connection: close)."""
        if self.h2 is not None:
            self.h2.wind_down()
        elif self.websocket is not None:
            self.websocket.going_away()
        elif self.exchange is None and (not self.idle_deadline or self.idle_deadline > until):
            self.idle_deadline = until

    def disconnect_exchange(self) -> None:
        """The stop's deadline: the request in progress hears that its client is gone."""
        if self.h2 is not None:
            self.h2.disconnect_streams()
        if self.exchange is not None:
            self.exchange.disconnected()
