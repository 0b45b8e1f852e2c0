"""The connection engine: one epoll loop that owns every connection of a worker.

The loop accepts, reads and parses heads, receives request bodies (before the application is
called), hands complete requests to the worker class's executor (inline or a thread pool),
writes responses as the sockets drain, and closes connections past their deadlines. Each
connection has one explicit state (workers/connection.py) and only the loop changes it, except
that an executor marks a connection SERVING when it starts on it. Executors hand connections
back (`settle`); they never register, re-arm or close one. This module holds the loop,
accepting, deadlines and closing; workers/reading.py the reading side (heads, bodies) and
workers/writing.py the writing side (executors, parked responses).

A response is a generator of output (adapters/wsgi.py). The executor pulls it and writes what
the socket takes; when the socket would block, the response is parked: the loop waits for the
socket to drain, sends what was left, and gives the generator back to the executor for its next
chunk. So no client that reads slowly, or uploads slowly, holds the loop, a thread or a sync
worker. What this module must never do: wait on one client's socket, or run the application
while it holds a connection the executor may also touch.
"""

from __future__ import annotations

import _socket
import collections
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

from corral.adapters.wsgi import WSGIAdapter, WSGIApp
from corral.errors import ProtocolError
from corral.http.parser import Limits, Request
from corral.http.writer import error_response
from corral.logs.logger import Logger
from corral.metrics.connections import ConnectionTable
from corral.metrics.stats import WorkerStats
from corral.metrics.statsd import StatsdClient
from corral.trust import is_trusted
from corral.workers.connection import (
    BODY,
    CLOSED,
    H2,
    HEAD,
    IDLE,
    QUEUED,
    SERVING,
    WRITING,
    Connection,
)
from corral.workers.connection_report import report_engine_connections
from corral.workers.heartbeat import REASON_ORPHANED, REASON_STUCK_REQUEST
from corral.workers.lifecycle import WorkerLifecycle
from corral.workers.reading import RequestReading
from corral.workers.writing import ResponseWriting

if TYPE_CHECKING:
    import ssl

    from corral.config import Settings
    from corral.workers.heartbeat import Heartbeat

log = logging.getLogger("corral.error")

_EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)
_ACCEPT_BATCH = 16
_READING = (HEAD, IDLE, BODY)
FRESH_SECONDS = 0.05


class Worker(ResponseWriting, RequestReading, WorkerLifecycle):
    """Lifecycle and engine; subclasses set `keep_alive_allowed` and may override `execute`."""

    keep_alive_allowed = True
    multithread = False
    # With EPOLLONESHOT (thread pools) each event disarms the connection, so one that is
    # with a thread stays silent; the loop re-arms it when it waits on it again.
    oneshot = False
    # Set by the master while the control socket is on: the rows of `show connections`.
    connection_table: ConnectionTable | None = None

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
        # Recent accepts, (accepted at, connection), for spreading bursts over the workers.
        self.fresh: collections.deque[tuple[float, Connection]] = collections.deque()
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
                    self.h2_stop()
                if self.drained() or time.monotonic() > deadline:
                    break
            flush()  # access lines reach their file before the loop waits
            try:
                # Not accepting only because of fresh connections: look again when they age.
                wait = FRESH_SECONDS if self.fresh and not self.accepting else interval
                events = epoll.poll(wait)
            except InterruptedError:
                continue
            now = time.monotonic()
            heartbeat.beat(now)
            for fd, mask in events:
                conn = conns.get(fd)
                if conn is not None:
                    # on_event, written out: this is the hottest line of the worker.
                    try:
                        state = conn.state
                        if state == WRITING:
                            self.on_writable(conn, now)
                        elif state in _READING:
                            self.on_readable(conn, now)
                        elif state == H2:
                            self.on_h2(conn, mask, now)
                    except Exception:
                        self.failed(conn)
                elif fd in listening:
                    self.accept(listening[fd], now)
                elif fd in handlers:
                    handlers[fd]()
            self.after_events()
            if self.listening:
                self.update_accepting(now)
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
                # A thread may still use it: end the connection for the client without
                # touching its TLS state or freeing its descriptor number.
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
            else:
                self.abandon(conn)
        flush()
        log.debug(
            "Worker %s: woken %d times to accept, accepted %d connections",
            self.pid,
            self.accept_wakeups,
            self.accepted,
        )

    def on_event(self, conn: Connection, now: float) -> None:
        """One connection's readiness. A failure here is this connection's alone: it is
        logged and the connection closed, and the loop goes on with the others."""
        state = conn.state
        try:
            if state == WRITING:
                self.on_writable(conn, now)
            elif state in _READING:
                self.on_readable(conn, now)
            # A thread's connection is disarmed; an event for it can only be stale.
        except Exception:
            self.failed(conn)

    # HTTP/2 (workers/h2_engine.py, on the gthread worker); nothing to do elsewhere.
    def on_h2(self, conn: Connection, mask: int, now: float) -> None:
        self.abandon(conn)

    def h2_closing(self, conn: Connection) -> None:
        """A connection in HTTP/2 is being closed."""

    def h2_sweep(self, conn: Connection, now: float) -> None:
        """Deadlines of an HTTP/2 connection."""

    def h2_stop(self) -> None:
        """Graceful stop: GOAWAY on every HTTP/2 connection."""

    def failed(self, conn: Connection) -> None:
        log.exception("Unexpected error on the connection from %s", conn.remote_addr)
        self.abandon(conn)

    def after_events(self) -> None:
        """Subclasses take back the connections their threads finished with."""

    def drained(self) -> bool:
        """Stopping: nothing left but requests stuck past `timeout` (they die with us)."""
        return all(conn.stuck for conn in self.conns.values())

    def update_accepting(self, now: float) -> None:
        """Take new connections only while there is room for them and a free executor."""
        want = len(self.conns) < self.settings.worker_connections and not self.saturated(now)
        if want != self.accepting:
            self.set_accepting(want)

    def saturated(self, now: float, batch: int = 0) -> bool:
        """Whether every thread has work: requests in flight, plus connections just accepted
        whose first request has not arrived yet (it usually follows the handshake within a
        millisecond): those of the current accept batch, and, while requests are in flight,
        those of the last FRESH_SECONDS. Counting them is what spreads a burst over the
        workers. An idle worker, or a connection older than FRESH_SECONDS, never closes the
        door, so clients that connect and send nothing cannot keep a worker from accepting."""
        in_flight = self.in_flight
        if in_flight + batch >= self.capacity:
            return True
        fresh = self.fresh
        while fresh and now - fresh[0][0] > FRESH_SECONDS:
            fresh.popleft()
        if not in_flight or not fresh:
            return False
        waiting = sum(1 for _, conn in fresh if conn.state == HEAD and not conn.requests)
        return in_flight + waiting >= self.capacity

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
        batch = 0  # accepted now and still waiting for their first request
        for n in range(_ACCEPT_BATCH if self.keep_alive_allowed else 1):
            if n and self.saturated(now, batch):
                return
            if not self.accept_one(listener, now):
                return
            batch += self.fresh[-1][1].state == HEAD if self.fresh else 0

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
        if self.capacity != sys.maxsize:
            self.fresh.append((now, conn))
        # Clients send right after connecting: read now instead of waiting for epoll (the
        # connection is registered only if it has to wait).
        self.on_event(conn, now)
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

    # ---- ending -------------------------------------------------------------------------

    def reject(self, conn: Connection, exc: ProtocolError) -> None:
        """A request we will not serve: answer its status, close, never call the app."""
        log.debug("Invalid request from %s: %s", conn.remote_addr, exc.reason)
        conn.send_nowait(error_response(exc.status))
        self.close(conn)

    def close_exchange(self, conn: Connection, entered: bool = False) -> None:
        """End a response early: the application's iterable is closed, the request logged.
        In the request's own context; `entered` when the caller already runs in it (the
        executor's pump: a context cannot be entered twice)."""
        exchange, conn.exchange = conn.exchange, None
        if exchange is not None:
            try:
                if entered:
                    exchange.close()
                else:
                    conn.context.run(exchange.close)
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
        if self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]
        if conn.events:
            # Closing the descriptor removes it from the epoll set only when no other process
            # holds the socket: a child the application forked would keep a stale entry that
            # fires for the next connection given this descriptor number.
            with contextlib.suppress(OSError):
                self.epoll.unregister(conn.fd)
        conn.state = CLOSED
        if conn.h2 is not None:
            self.h2_closing(conn)
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
        if self.stats is not None or self.connection_table is not None:
            report_engine_connections(self, now)
        for conn in list(self.conns.values()):
            state = conn.state
            if state == HEAD:
                # While stopping, a connection that has sent nothing gets `keepalive`, not
                # `timeout`: a browser's preconnect must not hold a graceful stop.
                limit = timeout if self.alive or conn.buf else min(timeout, keepalive)
                if now - conn.since > limit:
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
            elif state == SERVING and self.multithread and self.overdue(conn, now):
                self.report_stuck(conn, now)
            elif state == H2:
                self.h2_sweep(conn, now)

    def overdue(self, conn: Connection, now: float) -> bool:
        # timeout = 0 turns the worker timeout off (as in Gunicorn), for threads too.
        if self.settings.timeout <= 0:
            return False
        return not conn.stuck and now - conn.started > self.timeout

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
