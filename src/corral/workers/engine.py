"""The connection engine: one epoll loop that owns every connection of a worker.

The loop accepts, reads and parses heads, receives request bodies (before the application is
called), hands complete requests to the worker class's executor (inline or a thread pool),
writes responses as the sockets drain, and closes connections past their deadlines. Each
connection has one explicit state (workers/connection.py) and only the loop changes it, except
that an executor marks a connection SERVING when it starts on it. Executors hand connections
back (`settle`); they never register, re-arm or close one.

A response is a generator of output (adapters/wsgi.py). The executor pulls it and writes what
the socket takes; when the socket would block, the response is parked: the loop waits for the
socket to drain, sends what was left, and gives the generator back to the executor for its next
chunk. So no client that reads slowly, or uploads slowly, holds the loop, a thread or a sync
worker. What this module must never do: wait on one client's socket, or run the application
while it holds a connection the executor may also touch.
"""

from __future__ import annotations

import _socket
import contextlib
import logging
import os
import random
import select
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.adapters.body import EMPTY_BODY, Body, BodyBuffer
from corral.adapters.response import FileRange
from corral.adapters.wsgi import Exchange, Input, WSGIAdapter, WSGIApp
from corral.errors import ProtocolError
from corral.http.body import decoder_for
from corral.http.parser import Limits, Request, parse_head
from corral.http.proxy import parse_proxy_header
from corral.http.writer import CONTINUE, error_response, health_response
from corral.logs.logger import Logger
from corral.metrics.stats import WorkerStats
from corral.metrics.statsd import StatsdClient
from corral.trust import is_trusted
from corral.workers.connection import (
    BODY,
    CLOSED,
    HEAD,
    IDLE,
    QUEUED,
    RECV_SIZE,
    SERVING,
    WRITING,
    Connection,
)
from corral.workers.heartbeat import REASON_MAX_REQUESTS, REASON_ORPHANED, REASON_STUCK_REQUEST
from corral.workers.lifecycle import WorkerLifecycle

if TYPE_CHECKING:
    import ssl

    from corral.config import Settings
    from corral.workers.heartbeat import Heartbeat

log = logging.getLogger("corral.error")

_EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)
_ACCEPT_BATCH = 16
_READ = select.EPOLLIN | select.EPOLLRDHUP
_WRITE = select.EPOLLOUT

# What an executor reports when it hands a connection back (`settle`).
DONE = 0  # the response is complete; the connection may be kept alive
PARKED = 1  # the socket is full: wait for it to drain, then resume the response
CLOSE = 2  # the connection is over


class ShortFile(OSError):
    """A file sent with sendfile ended before the length its response announced."""


class Worker(WorkerLifecycle):
    """Lifecycle and engine; subclasses set `keep_alive_allowed` and may override `execute`."""

    keep_alive_allowed = True
    multithread = False
    # With EPOLLONESHOT (thread pools) each event disarms the connection, so one that is
    # with a thread stays silent; the loop re-arms it when it waits on it again.
    oneshot = False

    def __init__(
        self,
        age: int,
        ppid: int,
        listeners: list[socket.socket],
        settings: Settings,
        app: WSGIApp | None,
        heartbeat: Heartbeat,
        tls_context: ssl.SSLContext | None = None,
        logger: Logger | None = None,
    ) -> None:
        self.age = age
        self.ppid = ppid
        self.pid = 0
        self.listeners = listeners
        self.settings = settings
        self.cfg = settings  # the name Gunicorn's hooks use
        self.app = app
        self.heartbeat = heartbeat
        self.alive = True
        self.aborted_at = 0.0  # master side: when the timeout abort was sent
        self.handled = 0
        jitter = random.randint(0, settings.max_requests_jitter) if settings.max_requests else 0
        self.max_requests = settings.max_requests + jitter if settings.max_requests else sys.maxsize
        self.limits = Limits(
            request_line=settings.limit_request_line,
            fields=settings.limit_request_fields,
            field_size=settings.limit_request_field_size,
            permit_obsolete_folding=settings.permit_obsolete_folding,
            strip_header_spaces=settings.strip_header_spaces,
            permit_unconventional_http_method=settings.permit_unconventional_http_method,
            permit_unconventional_http_version=settings.permit_unconventional_http_version,
            casefold_http_method=settings.casefold_http_method,
        )
        self.timeout = float(settings.timeout) if settings.timeout > 0 else 30.0
        self.longest_line = max(self.limits.line_cap, self.limits.field_size_cap) + 2
        self.body_buffer = settings.request_body_buffer
        self.conns: dict[int, Connection] = {}
        self.in_flight = 0  # connections handed to the thread pool and not yet back
        self.capacity = sys.maxsize  # how many the executor can serve at once
        self.listening: dict[int, socket.socket] = {}
        self.accepting = False
        self.epoll: Any = None
        self.fd_handlers: dict[int, Callable[[], None]] = {}
        self.adapter: WSGIAdapter | None = None
        self.server_addrs: dict[int, tuple[int, tuple[str, str]]] = {}
        self.tls: ssl.SSLContext | None = tls_context
        if tls_context is not None:
            from corral.workers.tls import TLSConnection  # ssl only when TLS is on

            self.tls_connection = TLSConnection
        # Set up by the master; inherited across fork, never set up again here.
        self.logger = logger if logger is not None else Logger(settings)
        self.stats: WorkerStats | None = None  # set by the master when metrics are on
        self.statsd: StatsdClient | None = None
        self.health_path = settings.health_path
        self.reopen_requested = False
        self.forwarded_allow_ips = tuple(settings.forwarded_allow_ips)
        self.proxy_mode = "" if settings.proxy_protocol == "off" else settings.proxy_protocol
        self.proxy_allow_ips = tuple(settings.proxy_allow_ips)
        self.pre_request: Callable[[Worker, Request], object] | None = None
        self.accept_wakeups = 0  # listener readiness events (thundering-herd evidence)
        self.accepted = 0

    # ---- the loop -----------------------------------------------------------------------

    def serve(self) -> None:
        epoll = self.epoll
        handlers = self.fd_handlers
        listening = self.listening
        for sock in self.listeners:
            listening[sock.fileno()] = sock
            self.server_addrs[sock.fileno()] = (sock.family.value, _server_address(sock))
        self.set_accepting(True)
        self.heartbeat.mark_ready()
        conns = self.conns
        heartbeat = self.heartbeat
        flush = self.logger.flush
        interval = min(1.0, self.settings.timeout / 4) if self.settings.timeout > 0 else 1.0
        next_sweep = 0.0
        deadline = 0.0
        while True:
            if not self.alive:
                if deadline == 0.0:
                    deadline = time.monotonic() + self.settings.graceful_timeout
                    self.stop_accepting()
                if self.drained() or time.monotonic() > deadline:
                    break
            flush()  # access lines reach their file before the loop waits
            try:
                events = epoll.poll(interval)
            except InterruptedError:
                continue
            now = time.monotonic()
            heartbeat.beat(now)
            for fd, _ in events:
                conn = conns.get(fd)
                if conn is not None:
                    # Only connections the loop waits on get events (threads' are disarmed).
                    if conn.state == WRITING:
                        self.on_writable(conn, now)
                    else:
                        self.on_readable(conn, now)
                elif fd in listening:
                    self.accept(listening[fd], now)
                elif fd in handlers:
                    handlers[fd]()
            self.after_events()
            if self.listening:
                self.update_accepting()
            if self.reopen_requested:
                self.reopen_logs_if_requested()
            if now >= next_sweep:
                next_sweep = now + 1.0
                self.sweep(now)
                if os.getppid() != self.ppid:
                    log.info("Parent changed, shutting down: %s", self.pid)
                    self.retire(REASON_ORPHANED)
        self.finish()
        for conn in list(conns.values()):
            if conn.state in (QUEUED, SERVING):
                conn.close()  # a thread may still run it: leave its generator alone
            else:
                self.abandon(conn)
        flush()
        log.debug(
            "Worker %s: woken %d times to accept, accepted %d connections",
            self.pid,
            self.accept_wakeups,
            self.accepted,
        )

    def after_events(self) -> None:
        """Subclasses take back the connections their threads finished with."""

    def drained(self) -> bool:
        """Stopping: nothing left but requests stuck past `timeout` (they die with us)."""
        return all(conn.stuck for conn in self.conns.values())

    def update_accepting(self) -> None:
        """Take new connections only while there is room for them and a free executor."""
        want = len(self.conns) < self.settings.worker_connections and self.in_flight < self.capacity
        if want != self.accepting:
            self.set_accepting(want)

    def set_accepting(self, on: bool) -> None:
        """Watch the listeners or not. At worker_connections (or with every thread busy) the
        listeners leave the epoll set: level-triggered, they would wake the loop for ever."""
        self.accepting = on
        for fd in self.listening:
            if on:
                self.epoll.register(fd, select.EPOLLIN | _EXCLUSIVE)
            else:
                with contextlib.suppress(OSError):
                    self.epoll.unregister(fd)

    def stop_accepting(self) -> None:
        """Stop taking connections. When the whole server is stopping, those the kernel has
        already queued are taken first (their clients saw the connection established: closing
        the last copy of the socket would reset them) and served with Connection: close. On a
        reload or a recycle there is nothing to take: the other workers go on accepting."""
        now = time.monotonic()
        last_holder = self.heartbeat.master_stopping()
        if self.accepting:
            self.set_accepting(False)
        for sock in list(self.listening.values()):
            if last_holder:
                # Until the queue is empty (the master has shrunk it to almost nothing, so
                # new arrivals mostly wait in SYN retries and are refused once it closes).
                for _ in range(self.settings.worker_connections):
                    if not self.accept_one(sock, now):
                        break
            sock.close()
        self.listening.clear()

    def finish(self) -> None:
        """Subclasses wait here for requests handed to threads."""

    def trusted(self, peer: object) -> bool:
        return is_trusted(peer, self.forwarded_allow_ips)

    # ---- accepting ----------------------------------------------------------------------

    def accept(self, listener: socket.socket, now: float) -> None:
        self.accept_wakeups += 1
        # sync takes one connection at a time and lets the other workers take the rest; a
        # thread pool takes more only while it has free threads. One is always taken: the
        # listener was watched because there was room, and requests on connections already
        # open must not starve new ones.
        for n in range(_ACCEPT_BATCH if self.keep_alive_allowed else 1):
            if n and self.in_flight >= self.capacity:
                return
            if not self.accept_one(listener, now):
                return

    def accept_one(self, listener: socket.socket, now: float) -> bool:
        """Accept one queued connection and start reading it; False when none was taken."""
        if len(self.conns) >= self.settings.worker_connections:
            return False
        try:
            # The C-level accept and socket type: no per-connection enum conversions or
            # Python wrapper, which cost more than the system calls around them.
            fd, peer = listener._accept()  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            log.debug("accept() failed: %s", exc)
            return False
        self.accepted += 1
        family, server_addr = self.server_addrs[listener.fileno()]
        sock = _socket.socket(family, socket.SOCK_STREAM, 0, fd)
        sock.setblocking(False)
        if self.tls is None:
            conn = Connection(sock, peer, server_addr, self.trusted(peer), self.timeout, now)
        else:
            conn = self.tls_connection(
                sock,
                peer,
                server_addr,
                self.trusted(peer),
                self.timeout,
                now,
                context=self.tls,
                suppress_ragged_eofs=self.settings.suppress_ragged_eofs,
            )
        if self.proxy_mode and is_trusted(peer, self.proxy_allow_ips):
            conn.proxy_mode = self.proxy_mode
        self.conns[conn.fd] = conn
        # Clients send right after connecting: read now instead of waiting for epoll (the
        # connection is registered only if it has to wait).
        self.on_readable(conn, now)
        return True

    # ---- waiting --------------------------------------------------------------------------

    def wait_for(self, conn: Connection, events: int) -> None:
        """Have the loop wait for `events` on this connection."""
        if conn.events == events and not self.oneshot:
            return  # level-triggered and already watched
        flags = events | select.EPOLLONESHOT if self.oneshot else events
        if conn.events:
            self.epoll.modify(conn.fd, flags)
        else:
            self.epoll.register(conn.fd, flags)
        conn.events = events

    # ---- reading ------------------------------------------------------------------------

    def on_readable(self, conn: Connection, now: float) -> None:
        if self.tls is not None:
            data = self.read_tls(conn)
        else:
            try:
                data = conn.sock.recv(RECV_SIZE)
            except BlockingIOError:
                self.wait_for(conn, _READ)
                return
            except OSError:
                data = None
            else:
                if not data:
                    data = None
        if data is None:
            self.close(conn)
        elif not data:
            self.wait_for(conn, _READ)
        elif conn.state == BODY:
            conn.progress = now
            self.feed_body(conn, data, now)
        else:
            self.received(conn, data, now)

    def read_tls(self, conn: Connection) -> bytes | None:
        """TLS: the handshake and decryption advance without blocking. A PROXY header comes
        before the handshake, in the clear, so it is read from the socket first."""
        if conn.proxy_mode:
            try:
                raw = conn.sock.recv(RECV_SIZE)
            except BlockingIOError:
                return b""
            except OSError:
                return None
            if not raw:
                return None
            rest = self.read_proxy_header(conn, bytes(conn.buf) + raw)
            if rest is None or conn.proxy_mode:
                return b"" if rest is not None else None
            conn.buf = b""
            conn.feed_ciphertext(rest)  # type: ignore[attr-defined]
        data: bytes | None = conn.advance()  # type: ignore[attr-defined]
        return data

    def received(self, conn: Connection, data: bytes, now: float) -> None:
        buf = conn.buf
        if not buf:
            self.process(conn, data, now)
            return
        # Part of a head is waiting. A head can only end at a line end, so until one arrives
        # just collect (in place): re-parsing on every tiny read would cost quadratic time.
        if type(buf) is not bytearray:
            buf = bytearray(buf)
        buf += data
        if b"\n" not in data and len(buf) <= self.longest_line:
            conn.buf = buf
            self.wait_for(conn, _READ)
            return
        self.process(conn, bytes(buf), now)

    def process(self, conn: Connection, buf: bytes, now: float) -> None:
        """Parse what the connection has sent and start the request it holds, if complete.
        This is the one place requests are parsed: pipelined ones come back here when the
        response before them is done."""
        if conn.proxy_mode and self.tls is None:
            rest = self.read_proxy_header(conn, buf)
            if rest is None:
                self.close(conn)
                return
            if conn.proxy_mode:
                self.wait_for(conn, _READ)
                return
            buf = rest
        try:
            parsed = parse_head(buf, self.limits)
        except ProtocolError as exc:
            self.reject(conn, exc)
            return
        if parsed is None:
            conn.buf = buf
            conn.state = HEAD
            self.wait_for(conn, _READ)
            return
        req, used = parsed
        conn.buf = b""
        self.begin(conn, req, buf[used:], now)

    def read_proxy_header(self, conn: Connection, buf: bytes) -> bytes | None:
        """Consume the PROXY protocol header a trusted proxy sends first: the bytes after
        it, or b"" with `proxy_mode` still set when incomplete, or None (closed) if bad."""
        try:
            parsed = parse_proxy_header(buf, conn.proxy_mode)
        except ProtocolError as exc:
            log.info("Closing connection from %s: %s", conn.remote_addr, exc.reason)
            return None
        if parsed is None:
            conn.buf = buf
            return b""
        info, used = parsed
        conn.proxy_mode = ""
        if info.client_addr is not None:
            conn.remote_addr = info.client_addr
            conn.remote_port = str(info.client_port)
        return buf[used:]

    # ---- a request ----------------------------------------------------------------------

    def begin(self, conn: Connection, req: Request, rest: bytes, now: float) -> None:
        self.handled += 1
        if self.handled >= self.max_requests and self.alive:
            log.info("Autorestarting worker after current request.")
            self.retire(REASON_MAX_REQUESTS)
        if req.path == self.health_path:
            self.answer_health(conn, req, rest)
            return
        if not (req.chunked or req.content_length):
            self.dispatch(conn, req, EMPTY_BODY, rest, now)
            return
        size = req.content_length
        if self.body_buffer and (size is None or size <= self.body_buffer):
            conn.body = (
                req,
                BodyBuffer(decoder_for(req), self.settings.request_body_memory, self.body_buffer),
            )
            conn.state = BODY
            conn.progress = now
            limit = self.settings.request_body_timeout
            conn.deadline = now + limit if limit else 0.0
            if req.expect_continue and not rest:
                # RFC 9110 §10.1.1: the client waits for this before sending the body.
                conn.send_nowait(CONTINUE)
            if rest:
                self.feed_body(conn, rest, now)
            else:
                self.wait_for(conn, _READ)
            return
        body = Body(decoder_for(req), rest, conn.recv, conn.send if req.expect_continue else None)
        self.dispatch(conn, req, body, b"", now)

    def feed_body(self, conn: Connection, data: bytes, now: float) -> None:
        req, buffer = conn.body
        try:
            rest = buffer.feed(data)
        except ProtocolError as exc:
            buffer.discard()
            conn.body = None
            self.reject(conn, exc)
            return
        if rest is not None:
            conn.body = None
            conn.deadline = 0.0
            self.dispatch(conn, req, buffer.input(), rest, now)
        elif buffer.over_max:
            conn.body = None
            conn.deadline = 0.0
            self.dispatch(conn, req, buffer.stream(conn.recv), b"", now)
        else:
            self.wait_for(conn, _READ)

    def dispatch(
        self, conn: Connection, req: Request, body: Input, rest: bytes, now: float
    ) -> None:
        """Hand a complete request to the executor."""
        assert self.adapter is not None
        keep = self.keep_alive_allowed and self.alive
        exchange = self.adapter.exchange(conn, req, body, rest, keep)
        if self.pre_request is not None:
            exchange = self.with_pre_request(req, exchange)
        conn.exchange = exchange
        conn.started = now
        conn.deadline = 0.0
        self.execute(conn)

    def with_pre_request(self, req: Request, exchange: Exchange) -> Exchange:
        """The pre_request hook, run by the executor just before the application."""
        assert self.pre_request is not None
        try:
            self.pre_request(self, req)
        except Exception:
            log.exception("Exception in pre_request hook")
        return (yield from exchange)

    def execute(self, conn: Connection) -> None:
        """Run the response inline (sync, gthread with one thread); thread pools override."""
        conn.state = SERVING
        self.settle(conn, self.pump(conn), time.monotonic())

    # ---- the response ---------------------------------------------------------------------

    def pump(self, conn: Connection) -> int:
        """Produce and write the response until it is done or the socket is full. Runs on
        the executor (it calls the application); touches only this connection's output."""
        exchange = conn.exchange
        write_some = conn.write_some
        try:
            out = conn.outbox
            while True:
                if type(out) is bytes:
                    # The usual case first: the socket takes all of it at once.
                    sent = write_some(out)
                    if sent != len(out) and not self.write_out(conn, memoryview(out)[sent:]):
                        return PARKED
                elif out is not None and not self.write_out(conn, out):
                    return PARKED
                conn.outbox = None
                out = conn.outbox = next(exchange)
        except StopIteration as stop:
            conn.exchange = None
            if stop.value is None:
                return CLOSE
            conn.buf = stop.value
            return DONE
        except OSError:
            self.close_exchange(conn)
            return CLOSE
        except Exception:
            log.exception("Unexpected error serving %s", conn.remote_addr)
            self.close_exchange(conn)
            return CLOSE

    def write_out(self, conn: Connection, out: bytes | memoryview | FileRange) -> bool:
        """Send output without waiting: True when all of it went, False when the rest is
        left in `conn.outbox` for when the socket drains. Raises OSError if the peer left."""
        if type(out) is FileRange:
            while out.count > 0:
                sent = conn.sendfile_some(out.fd, out.offset, out.count)
                if sent is None:
                    conn.outbox = out
                    return False
                if sent == 0:
                    raise ShortFile("the file is shorter than its response announced")
                out.offset += sent
                out.count -= sent
                conn.progress = time.monotonic()
            return True
        assert not isinstance(out, FileRange)
        while True:
            sent = conn.write_some(out)
            if sent == len(out):
                return True
            if sent == 0:
                conn.outbox = out
                return False
            out = memoryview(out)[sent:]
            conn.progress = time.monotonic()

    def settle(self, conn: Connection, outcome: int, now: float) -> None:
        """A connection comes back from the executor: park it, go on with it, or close it."""
        if outcome == PARKED:
            conn.state = WRITING
            conn.progress = now
            if not conn.deadline:
                limit = self.settings.response_write_timeout
                conn.deadline = now + limit if limit else 0.0
            self.wait_for(conn, _WRITE)
            return
        conn.requests += 1
        conn.since = now
        conn.deadline = 0.0
        conn.keep_after = outcome == DONE
        if conn.flushed:
            self.output_done(conn, now)
        else:  # TLS records not yet on the socket
            conn.state = WRITING
            self.wait_for(conn, _WRITE)

    def output_done(self, conn: Connection, now: float) -> None:
        """All output of a response has gone: read the next request, or close."""
        if not conn.keep_after:
            self.close(conn)
            return
        rest, conn.buf = conn.buf, b""
        if rest:
            self.process(conn, bytes(rest), now)
        else:
            conn.state = IDLE
            self.wait_for(conn, _READ)

    def on_writable(self, conn: Connection, now: float) -> None:
        try:
            out = conn.outbox
            if out is not None:
                if not self.write_out(conn, out):
                    self.wait_for(conn, _WRITE)
                    return
                conn.outbox = None
            if conn.exchange is not None:
                self.execute(conn)  # the socket drained: the next chunk
                return
            if not conn.flush_some():
                self.wait_for(conn, _WRITE)
                return
        except OSError:
            self.abandon(conn)
            return
        self.output_done(conn, now)

    def answer_health(self, conn: Connection, req: Request, rest: bytes) -> None:
        """--health-path: answered by corral itself, 200 while serving, 503 once stopping;
        the application is never called."""
        keep = self.keep_alive_allowed and self.alive and req.keep_alive
        keep = keep and not req.chunked and not req.content_length
        conn.outbox = health_response(200 if self.alive else 503, keep, req.method == "HEAD")
        conn.buf = rest
        conn.keep_after = keep
        conn.requests += 1
        conn.since = time.monotonic()
        conn.state = WRITING
        self.on_writable(conn, conn.since)

    # ---- ending -------------------------------------------------------------------------

    def reject(self, conn: Connection, exc: ProtocolError) -> None:
        """A request we will not serve: answer its status, close, never call the app."""
        log.debug("Invalid request from %s: %s", conn.remote_addr, exc.reason)
        conn.send_nowait(error_response(exc.status))
        self.close(conn)

    def close_exchange(self, conn: Connection) -> None:
        """End a response early: the application's iterable is closed, the request logged."""
        exchange, conn.exchange = conn.exchange, None
        if exchange is not None:
            try:
                exchange.close()
            except Exception:
                log.exception("Error closing the response to %s", conn.remote_addr)

    def abandon(self, conn: Connection) -> None:
        """Close a connection the loop holds, with whatever response it was writing."""
        self.close_exchange(conn)
        if conn.body is not None:
            conn.body[1].discard()
            conn.body = None
        self.close(conn)

    def close(self, conn: Connection) -> None:
        # Closing the descriptor also removes it from the epoll set.
        if self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]
        conn.state = CLOSED
        conn.close()

    def sweep(self, now: float) -> None:
        """Close connections past their deadlines, by state: `timeout` to send a complete
        head (however slowly it trickles in: 408), `keepalive` when idle, `timeout` without
        progress or the total deadline for a body (408) or a parked response; report a
        request that has run past `timeout` on a thread."""
        self.check_memory()
        if self.statsd is not None:
            self.statsd.flush_if_due()
        keepalive = float(self.settings.keepalive)
        timeout = self.timeout
        for conn in list(self.conns.values()):
            state = conn.state
            if state == HEAD:
                if now - conn.since > timeout:
                    if conn.buf:
                        conn.send_nowait(error_response(408))
                    self.close(conn)
            elif state == IDLE:
                if now - conn.since > keepalive:
                    self.close(conn)
            elif state in (BODY, WRITING):
                if now - conn.progress > timeout or 0.0 < conn.deadline < now:
                    if state == BODY:
                        conn.send_nowait(error_response(408))
                    self.abandon(conn)
            elif state == SERVING and self.multithread:
                if not conn.stuck and now - conn.started > timeout:
                    self.report_stuck(conn, now)

    def report_stuck(self, conn: Connection, now: float) -> None:
        """A thread has run one request for longer than `timeout`: show where it is (once),
        then stop taking work; the master starts a replacement when this worker exits."""
        conn.stuck = True
        frame = sys._current_frames().get(conn.thread)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
        log.error(
            "Worker (pid:%s): a request from %s has run for %.0f s (timeout %d); "
            "stack of its thread:\n%s",
            self.pid,
            conn.remote_addr,
            now - conn.started,
            self.settings.timeout,
            stack,
        )
        self.retire(REASON_STUCK_REQUEST)


def _server_address(sock: socket.socket) -> tuple[str, str]:
    name = sock.getsockname()
    if isinstance(name, tuple):
        return str(name[0]), str(name[1])
    return str(name), ""
