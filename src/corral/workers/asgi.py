"""`asgi`: an asyncio worker for ASGI applications, on the same master, parser and framing.

Each connection is an asyncio Protocol that feeds its bytes to the one sans-IO parser
(http/parser.py) and body decoders (http/body.py); each request runs the application as a task
with an `adapters.asgi.Exchange` as its receive/send pair. Reading stops while the application
has not taken the body already received (read backpressure), and `send` waits while the
transport is above its high-water mark (write backpressure). The heartbeat is a timer of the
loop, so a worker whose loop is blocked by the application is caught by the master's timeout as
a sync worker is. What this module must never do: run the application outside the loop, or
parse HTTP a second way.

WebSocket connections are in workers/asgi_websocket.py. Not yet here (issue 11): HTTP
extensions (pathsend, early hints, trailers, tls), the PROXY protocol on this worker,
and lifespan startup/shutdown timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from corral.adapters.asgi import ASGIApp, ClientGone, Exchange, build_scope
from corral.errors import EXIT_WORKER_BOOT_ERROR, ProtocolError
from corral.http.body import decoder_for
from corral.http.parser import Request, parse_head
from corral.http.websocket_handshake import check_upgrade, is_websocket_upgrade, refusal_response
from corral.http.writer import error_response
from corral.workers.asgi_websocket import WebSocketSession, websocket_scope
from corral.workers.engine import Worker
from corral.workers.heartbeat import REASON_MAX_REQUESTS

log = logging.getLogger("corral.error")

# Body chunks the application has not taken yet before reading pauses.
_BODY_QUEUE = 4


class LifespanFailed(Exception):
    """The application failed its lifespan startup (or does not support it with `on`)."""


class AsgiWorker(Worker):
    keep_alive_allowed = True

    def make_adapter(self) -> None:
        # No WSGI here: the application is called through adapters/asgi.
        self.adapter = None
        self.asgi_app = cast(ASGIApp, self.app)

    def serve(self) -> None:
        loop = new_event_loop(self.settings.asgi_loop)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.main())
        finally:
            loop.close()

    async def main(self) -> None:
        self.lifespan_state: dict[str, Any] = {}
        self.protocols: set[HttpProtocol] = set()
        lifespan = Lifespan(self.asgi_app, self.settings.asgi_lifespan, self.lifespan_state)
        try:
            await lifespan.startup()
        except LifespanFailed as exc:
            log.error("Application startup failed: %s", exc)
            raise SystemExit(EXIT_WORKER_BOOT_ERROR) from None
        loop = asyncio.get_running_loop()
        # TLS with the context the master built (and rebuilds on HUP), as the other workers.
        servers = [
            await loop.create_server(
                lambda: HttpProtocol(self), sock=sock, backlog=2048, ssl=self.tls
            )
            for sock in self.listeners
        ]
        self.heartbeat.mark_ready()
        interval = min(1.0, self.settings.timeout / 4) if self.settings.timeout > 0 else 1.0
        while self.alive:
            self.heartbeat.beat()
            self.logger.flush()
            if self.reopen_requested:
                self.reopen_logs_if_requested()
            self.check_memory()
            await asyncio.sleep(interval)
        for server in servers:
            server.close()
        # The master kills at graceful_timeout: keep a reserve to end requests and lifespan.
        graceful = float(self.settings.graceful_timeout)
        end = time.monotonic() + graceful
        deadline = end - min(5.0, graceful / 3)
        while self.protocols and time.monotonic() < deadline:
            for protocol in list(self.protocols):
                protocol.close_if_idle()
            self.heartbeat.beat()
            await asyncio.sleep(0.05)
        tasks = [p.task for p in self.protocols if p.task is not None and not p.task.done()]
        for protocol in list(self.protocols):
            protocol.abort()
        for task in tasks:
            task.cancel()  # their `finally` blocks run now, not never
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.1, (end - time.monotonic()) / 2))
        self.heartbeat.beat()
        await lifespan.shutdown(end - time.monotonic() - 0.5)
        self.logger.flush()

    def count_request(self) -> bool:
        """One more request; False once the worker should stop keeping connections."""
        self.handled += 1
        if self.handled >= self.max_requests and self.alive:
            log.info("Autorestarting worker after current request.")
            self.retire(REASON_MAX_REQUESTS)
        return self.alive


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """The `asgi_loop` setting: uvloop when asked for (or, with `auto`, when installed)."""
    if kind != "asyncio":
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            if kind == "uvloop":
                log.error("asgi_loop is 'uvloop' but uvloop is not installed (pip install uvloop)")
                raise SystemExit(EXIT_WORKER_BOOT_ERROR) from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


class Lifespan:
    """The ASGI lifespan protocol (2.0) around the worker's life."""

    def __init__(self, app: ASGIApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received = False
        self.answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def receive(self) -> dict[str, Any]:
        self.received = True
        return await self.inbox.get()

    async def send(self, message: Any) -> None:
        await self.answers.put(dict(message))

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = self.state
        try:
            await self.app(scope, self.receive, self.send)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if not self.received and self.mode == "auto":
                log.info("ASGI 'lifespan' protocol appears unsupported.")
                await self.answers.put({"type": "unsupported"})
                return
            log.error("Exception in the ASGI lifespan protocol", exc_info=exc)
            await self.answers.put({"type": "failed", "message": repr(exc)})
            return
        # Returned without (more) answers: e.g. `if scope["type"] != "http": return`.
        await self.answers.put({"type": "returned"})

    async def startup(self) -> None:
        if self.mode == "off":
            return
        self.task = asyncio.get_running_loop().create_task(self.run())
        await self.inbox.put({"type": "lifespan.startup"})
        answer = await self.answers.get()
        kind = answer["type"]
        if kind == "lifespan.startup.complete":
            return
        if kind == "unsupported" or (kind == "returned" and self.mode == "auto"):
            if kind == "returned":
                log.info("ASGI 'lifespan' protocol appears unsupported.")
            self.task = None
            return
        raise LifespanFailed(answer.get("message") or kind)

    async def shutdown(self, budget: float) -> None:
        if self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        try:
            answer = await asyncio.wait_for(self.answers.get(), max(budget, 0.1))
        except asyncio.TimeoutError:
            log.warning("ASGI lifespan shutdown did not complete within %.1f s", budget)
            return
        if answer["type"] == "lifespan.shutdown.failed":
            log.error("Application shutdown failed: %s", answer.get("message", ""))


class HttpProtocol(asyncio.Protocol):
    """One client connection: heads parsed as bytes arrive, one request served at a time."""

    def __init__(self, worker: AsgiWorker) -> None:
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.exchange: Exchange | None = None
        self.decoder: Any = None
        self.task: asyncio.Task[None] | None = None
        self.reading = True
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.websocket: WebSocketSession | None = None
        self.transport_gone = False
        self.body_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.worker.protocols.add(self)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.server = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None
        self.arm_idle(self.worker.timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.protocols.discard(self)
        self.cancel_idle()
        self.cancel_body_timer()
        self.transport_gone = True
        self.can_write.set()  # a send waiting for the socket to drain learns it is gone
        if self.websocket is not None:
            self.websocket.connection_lost()
        if self.exchange is not None:
            self.exchange.disconnected()
        task = self.task
        if task is not None and not task.done():
            grace = self.worker.settings.asgi_disconnect_grace_period
            handle = asyncio.get_running_loop().call_later(grace, task.cancel)
            task.add_done_callback(lambda _: handle.cancel())

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        self.cancel_idle()
        websocket = self.websocket
        if websocket is not None:
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
        if self.exchange is None:
            self.next_request()
        elif len(self.buf) > 65536:
            self.pause()  # pipelined requests wait until the current one is done

    # --- the AsgiTransport side, for the exchange ----------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and data:
            self.transport.write(data)

    async def drain(self) -> None:
        if not self.can_write.is_set():
            await self.can_write.wait()
        if self.transport_gone or self.transport is None or self.transport.is_closing():
            raise ClientGone("the client has gone")

    def resume_reading(self) -> None:
        if not self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = True
            self.transport.resume_reading()

    def pause(self) -> None:
        if self.reading and self.transport is not None:
            self.reading = False
            self.transport.pause_reading()

    # --- requests --------------------------------------------------------------------------

    def next_request(self) -> None:
        try:
            parsed = parse_head(self.buf, self.worker.limits)
        except ProtocolError as exc:
            self.reject(exc.status)
            return
        if parsed is None:
            self.arm_idle(self.worker.timeout)
            return
        req, used = parsed
        self.buf = self.buf[used:]
        if is_websocket_upgrade(req):
            self.start_websocket(req)
            return
        keep = self.worker.count_request()
        exchange = Exchange(self, req, keep and self.worker.keep_alive_allowed)
        self.exchange = exchange
        if req.chunked or req.content_length:
            self.decoder = decoder_for(req)
            rest, self.buf = self.buf, b""
            if rest:
                self.feed_body(rest)
            elif req.expect_continue:
                exchange.send_continue = self.write  # on the application's first receive
            if self.decoder is not None:
                self.arm_body_timer()
        scope = self.scope_for(req)
        self.task = asyncio.get_running_loop().create_task(self.run(req, scope, exchange))

    def scope_for(self, req: Request) -> dict[str, Any]:
        worker = self.worker
        scheme = "https" if worker.tls is not None else "http"
        settings = worker.settings
        return build_scope(
            req, self.client, self.server, scheme, settings.root_path, worker.lifespan_state
        )

    def start_websocket(self, req: Request) -> None:
        self.worker.count_request()
        try:
            handshake = check_upgrade(req)
        except ProtocolError as exc:
            if self.transport is not None:
                self.transport.write(refusal_response(exc))
                self.transport.close()
            return
        limit = self.worker.settings.websocket_max_message_size or (1 << 62)
        session = WebSocketSession(self, handshake, limit)
        self.websocket = session
        scope = websocket_scope(self.scope_for(req), handshake)
        self.task = asyncio.get_running_loop().create_task(self.run_websocket(scope, session))

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

    def close_transport(self) -> None:
        if self.transport is not None:
            self.transport.close()

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
        try:
            await self.worker.asgi_app(scope, exchange.receive, exchange.send)
        except ClientGone:
            pass
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # one request's failure stays its own
            if isinstance(exc, asyncio.CancelledError) and exchange.client_gone:
                pass
            else:
                log.error(
                    "Exception in ASGI application %s %s", req.method, req.target, exc_info=exc
                )
                answer = exchange.error_answer(500)
                if answer:
                    self.write(answer)
        self.finished(exchange)

    def finished(self, exchange: Exchange) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or exchange.client_gone:
            return
        if not exchange.ended:
            # The application returned without finishing its response.
            if not exchange.started:
                log.error("ASGI application returned without a response")
                answer = exchange.error_answer(500)
                if answer:
                    self.write(answer)
            exchange.keep_alive = False
        if not exchange.keep_alive or self.decoder is not None or not self.worker.alive:
            transport.close()
            return
        self.exchange = None
        self.task = None
        self.resume_reading()
        if self.buf:
            self.next_request()
        else:
            self.arm_idle(float(self.worker.settings.keepalive))

    def reject(self, status: int) -> None:
        if self.transport is not None:
            self.transport.write(error_response(status))
            self.transport.close()

    # --- deadlines ---------------------------------------------------------------------------

    def arm_body_timer(self) -> None:
        """A body that stops arriving for `timeout` ends the request (the client is gone)."""
        self.cancel_body_timer()
        loop = asyncio.get_running_loop()
        self.body_timer = loop.call_later(self.worker.timeout, self.body_expired)

    def cancel_body_timer(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def body_expired(self) -> None:
        self.body_timer = None
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
        self.cancel_idle()
        if seconds > 0:
            self.idle_timer = asyncio.get_running_loop().call_later(seconds, self.idle_expired)

    def cancel_idle(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def idle_expired(self) -> None:
        if self.exchange is None and self.transport is not None:
            if self.buf:
                self.transport.write(error_response(408))
            self.transport.close()

    def close_if_idle(self) -> None:
        if self.websocket is not None:
            self.websocket.going_away()
        elif self.exchange is None and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
