"""The worker: the lifecycle every worker class shares, and the one connection engine.

A worker object is made in the master before fork (so `pre_fork` and `post_fork` hooks see the
same object), then `run()` in the child: signals, app loading, then the event loop. The loop is
an epoll over the listeners and every open connection; heads are read non-blocking and parsed
by the sans-IO parser, so a client that trickles bytes never holds the worker. Worker classes
only choose a policy: call the application inline or hand requests to threads, and whether
connections are kept alive. What a worker must never do: block in the loop on one client.
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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.adapters.wsgi import WSGIAdapter, WSGIApp
from corral.errors import ProtocolError
from corral.http.parser import Limits, Request, parse_head
from corral.http.proxy import parse_proxy_header
from corral.http.writer import error_response, health_response
from corral.logs.logger import Logger
from corral.metrics.stats import WorkerStats
from corral.metrics.statsd import StatsdClient
from corral.trust import is_trusted
from corral.workers.connection import RECV_SIZE, Connection
from corral.workers.heartbeat import (
    REASON_MAX_REQUESTS,
    REASON_ORPHANED,
)
from corral.workers.lifecycle import WorkerLifecycle

if TYPE_CHECKING:
    import ssl

    from corral.config import Settings
    from corral.workers.heartbeat import Heartbeat

log = logging.getLogger("corral.error")

_EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)
_ACCEPT_BATCH = 16


class Worker(WorkerLifecycle):
    """Lifecycle and engine; subclasses set `keep_alive_allowed` and may override `dispatch`."""

    keep_alive_allowed = True
    multithread = False
    # How connections sit in the epoll set. With EPOLLONESHOT (thread pools) a connection is
    # disarmed by each event and re-armed only when it is ready for the next one.
    conn_events = select.EPOLLIN | select.EPOLLRDHUP
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
        self.conns: dict[int, Connection] = {}
        # Connections whose request a thread is serving. Held by identity, not by descriptor:
        # a thread finishing with one connection must never mark a new connection that got
        # the same descriptor number in the meantime.
        self.busy: set[Connection] = set()
        self.epoll: Any = None
        self.fd_handlers: dict[int, Callable[[], None]] = {}
        self.adapter: WSGIAdapter | None = None
        self.server_addrs: dict[int, tuple[int, tuple[str, str]]] = {}
        self.tls: ssl.SSLContext | None = tls_context
        if tls_context is not None:
            from corral.workers.tls import TLSConnection  # ssl is imported only when TLS is on

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

    # ---- the engine ---------------------------------------------------------------------

    def serve(self) -> None:
        epoll = self.epoll
        handlers = self.fd_handlers
        listening = {sock.fileno(): sock for sock in self.listeners}
        for sock in self.listeners:
            self.server_addrs[sock.fileno()] = (sock.family.value, _server_address(sock))
        self.start_accepting(listening)
        self.heartbeat.mark_ready()
        conns = self.conns
        heartbeat = self.heartbeat
        interval = min(1.0, self.settings.timeout / 4) if self.settings.timeout > 0 else 1.0
        next_sweep = 0.0
        deadline = 0.0
        while True:
            if not self.alive:
                if deadline == 0.0:
                    deadline = time.monotonic() + self.settings.graceful_timeout
                    self.stop_accepting(listening)
                if not conns or time.monotonic() > deadline:
                    break
            try:
                events = epoll.poll(interval)
            except InterruptedError:
                continue
            now = time.monotonic()
            heartbeat.beat(now)
            for fd, _ in events:
                conn = conns.get(fd)
                if conn is not None:
                    self.on_readable(conn, now)
                elif fd in listening:
                    self.accept(listening[fd], now)
                elif fd in handlers:
                    handlers[fd]()
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
            self.close(conn)
        self.logger.flush()
        log.debug(
            "Worker %s: woken %d times to accept, accepted %d connections",
            self.pid,
            self.accept_wakeups,
            self.accepted,
        )

    def start_accepting(self, listening: dict[int, socket.socket]) -> None:
        for fd in listening:
            self.epoll.register(fd, select.EPOLLIN | _EXCLUSIVE)

    def stop_accepting(self, listening: dict[int, socket.socket]) -> None:
        """Stop taking connections. When the whole server is stopping, those the kernel has
        already queued are taken first (their clients saw the connection established: closing
        the last copy of the socket would reset them) and served with Connection: close. On a
        reload or a recycle there is nothing to take: the other workers go on accepting."""
        now = time.monotonic()
        last_holder = self.heartbeat.master_stopping()
        for fd, sock in list(listening.items()):
            with contextlib.suppress(OSError):
                self.epoll.unregister(fd)
            if last_holder:
                # Until the queue is empty (the master has shrunk it to almost nothing, so
                # new arrivals mostly wait in SYN retries and are refused once it closes).
                for _ in range(self.settings.worker_connections):
                    if not self.accept_one(sock, now):
                        break
            sock.close()
        listening.clear()

    def finish(self) -> None:
        """Subclasses wait here for requests handed to threads."""

    def trusted(self, peer: object) -> bool:
        return is_trusted(peer, self.forwarded_allow_ips)

    def accept(self, listener: socket.socket, now: float) -> None:
        self.accept_wakeups += 1
        # sync takes one connection at a time and lets the other workers take the rest.
        for _ in range(_ACCEPT_BATCH if self.keep_alive_allowed else 1):
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
        fd = conn.fd
        self.conns[fd] = conn
        # Clients send right after connecting: read now instead of waiting for epoll, and
        # register only a connection that still waits (saves a system call per request
        # when the connection is answered and closed at once).
        self.on_readable(conn, now)
        if self.conns.get(fd) is conn and not conn.registered and conn not in self.busy:
            self.arm(conn)
        return True

    def arm(self, conn: Connection) -> None:
        """Have the loop wait for this connection's next bytes."""
        if conn.registered:
            if self.oneshot:
                self.epoll.modify(conn.fd, self.conn_events)
        else:
            conn.registered = True
            self.epoll.register(conn.fd, self.conn_events)

    def wait_more(self, conn: Connection) -> None:
        """The connection's request is incomplete: wait for more of it."""
        if self.oneshot and conn.registered:
            self.epoll.modify(conn.fd, self.conn_events)

    def on_readable(self, conn: Connection, now: float) -> None:
        if self.tls is not None:
            self.on_readable_tls(conn)
            return
        try:
            data = conn.sock.recv(RECV_SIZE)
        except BlockingIOError:
            self.wait_more(conn)
            return
        except OSError:
            self.close(conn)
            return
        if not data:
            self.close(conn)
            return
        self.received(conn, data)

    def on_readable_tls(self, conn: Connection) -> None:
        """TLS: the handshake and decryption advance without blocking; plaintext goes on."""
        data = conn.advance()  # type: ignore[attr-defined]
        if data is None:
            self.close(conn)
        elif data:
            self.received(conn, data)
        else:
            self.wait_more(conn)

    def received(self, conn: Connection, data: bytes) -> None:
        buf = conn.buf
        if not buf:
            self.process(conn, data)
            return
        # Part of a head is waiting. A head can only end at a line end, so until one arrives
        # just collect (in place): re-parsing on every tiny read would cost quadratic time.
        if type(buf) is not bytearray:
            buf = bytearray(buf)
        buf += data
        if b"\n" not in data and len(buf) <= self.longest_line:
            conn.buf = buf
            self.wait_more(conn)
            return
        self.process(conn, bytes(buf))

    def process(self, conn: Connection, buf: bytes) -> None:
        """Parse what the connection has sent and serve each complete request."""
        if conn.proxy_mode:
            buf = self.read_proxy_header(conn, buf)
            if conn.proxy_mode:
                return
        while True:
            try:
                parsed = parse_head(buf, self.limits)
            except ProtocolError as exc:
                self.reject(conn, exc)
                return
            if parsed is None:
                conn.buf = buf
                self.wait_more(conn)
                return
            req, used = parsed
            conn.buf = b""
            rest = self.dispatch(conn, req, buf[used:])
            if rest is None:
                return
            if not rest:
                return
            buf = rest

    def read_proxy_header(self, conn: Connection, buf: bytes) -> bytes:
        """Consume the PROXY protocol header a trusted proxy sends first (or close)."""
        try:
            parsed = parse_proxy_header(buf, conn.proxy_mode)
        except ProtocolError as exc:
            log.info("Closing connection from %s: %s", conn.remote_addr, exc.reason)
            self.close(conn)
            return b""
        if parsed is None:
            conn.buf = buf
            self.wait_more(conn)
            return b""
        info, used = parsed
        conn.proxy_mode = ""
        if info.client_addr is not None:
            conn.remote_addr = info.client_addr
            conn.remote_port = str(info.client_port)
        return buf[used:]

    def dispatch(self, conn: Connection, req: Request, pending: bytes) -> bytes | None:
        """Serve one request inline; returns the pipelined bytes, or None once closed."""
        rest = self.handle(conn, req, pending)
        if rest is None:
            self.close(conn)
        return rest

    def handle(self, conn: Connection, req: Request, pending: bytes) -> bytes | None:
        self.handled += 1
        if self.handled >= self.max_requests and self.alive:
            log.info("Autorestarting worker after current request.")
            self.retire(REASON_MAX_REQUESTS)
        keep = self.keep_alive_allowed and self.alive
        if req.path == self.health_path:
            return self.answer_health(conn, req, pending, keep)
        if self.pre_request is not None:
            try:
                self.pre_request(self, req)
            except Exception:
                log.exception("Exception in pre_request hook")
        assert self.adapter is not None
        try:
            rest = self.adapter.handle(conn, req, pending, keep)
        except OSError:
            rest = None
        conn.requests += 1
        conn.since = time.monotonic()
        return rest

    def answer_health(
        self, conn: Connection, req: Request, pending: bytes, keep: bool
    ) -> bytes | None:
        """--health-path: answered by corral itself, 200 while serving, 503 once stopping;
        the application is never called."""
        keep = keep and req.keep_alive and not req.chunked and not req.content_length
        conn.send(health_response(200 if self.alive else 503, keep, req.method == "HEAD"))
        conn.requests += 1
        conn.since = time.monotonic()
        return pending if keep else None

    def reject(self, conn: Connection, exc: ProtocolError) -> None:
        """A request we will not serve: answer its status, close, never call the app."""
        log.debug("Invalid request from %s: %s", conn.remote_addr, exc.reason)
        with contextlib.suppress(OSError):
            conn.sock.send(error_response(exc.status))
        self.close(conn)

    def close(self, conn: Connection) -> None:
        # Closing the descriptor also removes it from the epoll set.
        self.conns.pop(conn.fd, None)
        conn.close()

    def sweep(self, now: float) -> None:
        """Close connections past their deadline: `timeout` to send a complete head (counted
        from the connection or the previous response, however slowly bytes trickle in, and
        answered 408), `keepalive` when idle between requests."""
        self.check_memory()
        self.logger.flush()
        if self.statsd is not None:
            self.statsd.flush_if_due()
        keepalive = float(self.settings.keepalive)
        for conn in list(self.conns.values()):
            if conn in self.busy:
                continue
            waiting_for_head = bool(conn.buf) or not conn.requests
            if now - conn.since <= (self.timeout if waiting_for_head else keepalive):
                continue
            if conn.buf:
                conn.send_nowait(error_response(408))
            self.close(conn)


def _server_address(sock: socket.socket) -> tuple[str, str]:
    name = sock.getsockname()
    if isinstance(name, tuple):
        return str(name[0]), str(name[1])
    return str(name), ""
