"""The engine's writing side: a complete request handed to the executor, its response pulled
and written as the socket drains, and the connection handed back to the loop.

A response is a generator of output (adapters/wsgi.py). `pump` runs on the executor (the loop
for sync and gthread with one thread, a pool thread otherwise): it pulls the generator and
writes what the socket takes. When the socket would block it returns PARKED; `settle`, in the
loop, then waits for the socket to drain, sends what was left (`on_writable`) and gives the
generator back to the executor for its next chunk. What this module must never do: wait for a
client, or let the loop and a thread touch one connection at the same time (the loop acts on a
connection only after its executor has handed it back).
"""

from __future__ import annotations

import contextvars
import logging
import select
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.adapters.response import FileRange
from corral.adapters.wsgi import Exchange, Input, WSGIAdapter
from corral.http.parser import Request
from corral.http.writer import health_response
from corral.workers.connection import IDLE, SERVING, WRITING, Connection

if TYPE_CHECKING:
    from corral.config import Settings

log = logging.getLogger("corral.error")

READ = select.EPOLLIN | select.EPOLLRDHUP
WRITE = select.EPOLLOUT

# What an executor reports when it hands a connection back (`settle`).
DONE = 0  # the response is complete; the connection may be kept alive
PARKED = 1  # the socket is full: wait for it to drain, then resume the response
CLOSE = 2  # the connection is over


class ShortFile(OSError):
    """A file sent with sendfile ended before the length its response announced."""


class ResponseWriting:
    """Mixed into the engine's `Worker`; the names below are the engine's."""

    settings: Settings
    adapter: WSGIAdapter | None
    tls: object
    oneshot: bool
    inline = True  # the executor is the loop itself
    keep_alive_allowed: bool
    alive: bool
    pre_request: Callable[[Any, Request], object] | None

    if TYPE_CHECKING:

        def wait_for(self, conn: Connection, events: int) -> None: ...
        def close(self, conn: Connection) -> None: ...
        def abandon(self, conn: Connection) -> None: ...
        def close_exchange(self, conn: Connection, entered: bool = False) -> None: ...
        def process(self, conn: Connection, buf: bytes, now: float) -> None: ...

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
        # The request's own context: the response may resume on another thread after it was
        # parked, and context variables the application set must go with it.
        conn.context = contextvars.Context()
        if self.inline:
            conn.state = SERVING
            self.settle(conn, conn.context.run(self.pump, conn), time.monotonic())
        else:
            self.execute(conn)

    def with_pre_request(self, req: Request, exchange: Exchange) -> Exchange:
        """The pre_request hook, run by the executor just before the application."""
        assert self.pre_request is not None
        try:
            self.pre_request(self, req)
        except Exception:
            log.exception("Exception in pre_request hook")
        yield from exchange

    def execute(self, conn: Connection) -> None:
        """Run (or resume) the response inline (sync, gthread with one thread); thread pools
        override this and clear `inline`."""
        conn.state = SERVING
        self.settle(conn, conn.context.run(self.pump, conn), time.monotonic())

    # ---- the response ---------------------------------------------------------------------

    def pump(self, conn: Connection) -> int:
        """Produce and write the response until it is done or the socket is full. Runs on
        the executor (it calls the application), in the request's own contextvars context;
        touches only this connection's output."""
        exchange = conn.exchange
        # Plain sockets are written straight (saves a call per chunk); TLS goes through TLS.
        write_some = conn.sock.send if self.tls is None else conn.write_some
        try:
            out = conn.outbox
            if out is not None:  # resuming after the socket drained
                if not self.write_out(conn, out):
                    return PARKED
                conn.outbox = None
            for out in exchange:
                if type(out) is bytes:
                    # The usual case first: the socket takes all of it at once.
                    try:
                        sent = write_some(out)
                    except BlockingIOError:
                        sent = 0
                    if sent != len(out) and not self.write_out(conn, memoryview(out)[sent:]):
                        return PARKED
                elif not self.write_out(conn, out):
                    return PARKED
        except OSError:
            self.close_exchange(conn, entered=True)
            return CLOSE
        except Exception:
            log.exception("Unexpected error serving %s", conn.remote_addr)
            self.close_exchange(conn, entered=True)
            return CLOSE
        conn.exchange = None
        rest = conn.leftover
        if rest is None:
            return CLOSE
        conn.buf = rest
        return DONE

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
            self.wait_for(conn, WRITE)
            return
        conn.requests += 1
        conn.since = now
        conn.deadline = 0.0
        if outcome == DONE and (self.tls is None or conn.flushed):
            # The usual end of a kept-alive response, without a detour.
            rest = conn.buf
            if rest:
                conn.buf = b""
                self.process(conn, bytes(rest), now)
                return
            conn.state = IDLE
            if conn.events != READ or self.oneshot:
                self.wait_for(conn, READ)
            return
        conn.keep_after = outcome == DONE
        if conn.flushed:
            self.output_done(conn, now)
        else:  # TLS records not yet on the socket
            conn.state = WRITING
            self.wait_for(conn, WRITE)

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
            self.wait_for(conn, READ)

    def on_writable(self, conn: Connection, now: float) -> None:
        try:
            out = conn.outbox
            if out is not None:
                if not self.write_out(conn, out):
                    self.wait_for(conn, WRITE)
                    return
                conn.outbox = None
            if conn.exchange is not None:
                self.execute(conn)  # the socket drained: the next chunk
                return
            if not conn.flush_some():
                self.wait_for(conn, WRITE)
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
