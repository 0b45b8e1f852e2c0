"""HTTP/2 on the gthread worker: the loop's side of every HTTP/2 connection.

A connection becomes HTTP/2 by ALPN after its TLS handshake, by the cleartext preface, or by
`Upgrade: h2c` (workers/reading.py decides; `h2_switch` does it). From then on it is in state
H2 and belongs to the loop for good: the loop reads frames into the connection's `H2Session`
(http/h2.py), opens a stream for each request and starts its WSGI call on the thread pool
(workers/h2_stream.py: threads never touch the session or the socket). The rest is mixed in
from workers/h2_output.py (output into the session and onto the socket) and
workers/h2_upkeep.py (what threads report, deadlines, graceful stop).

- A request body up to `request_body_buffer` (a budget per connection) is collected here
  before the application is called, credited as it is stored; another is streamed to the
  application and credited only as it reads.
- A response is pulled on a thread while the stream's window is open, at most PULL_BUDGET
  ahead of what has left: a stream whose window is closed holds no thread.

What this module must never do: wait for a client, run the application in the loop (except
with --threads 1, where the loop is the executor), or let one stream's failure end the others.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.adapters.body import EMPTY_BODY, BodyBuffer
from corral.adapters.response_h2 import H2Head, error_head
from corral.http.h2_negotiation import SWITCHING_PROTOCOLS
from corral.workers.connection import H2, RECV_SIZE, Connection
from corral.workers.h2_output import OUT_LIMIT, H2Link, H2Output
from corral.workers.h2_stream import H2Closing, H2Input, H2Stream, StreamHub
from corral.workers.h2_upkeep import H2Upkeep
from corral.workers.heartbeat import REASON_MAX_REQUESTS

if TYPE_CHECKING:
    from corral.adapters.wsgi import Input, WSGIAdapter
    from corral.config import Settings
    from corral.http.h2 import BodyData, H2Limits
    from corral.http.parser import Limits, Request

log = logging.getLogger("corral.error")

_INPUT = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_NO_ERROR = 0x0
_UPGRADE_FIELDS = frozenset({"UPGRADE", "CONNECTION", "HTTP2-SETTINGS"})


class _Frames:
    """A body decoder for BodyBuffer: HTTP/2 DATA frames are the body already."""

    done = False

    def feed(self, data: bytes) -> tuple[bytes, None]:
        return data, None


class H2Serving(H2Upkeep, H2Output):
    """Mixed into the gthread worker; the names below are the engine's."""

    settings: Settings
    adapter: WSGIAdapter | None
    epoll: Any
    inline: bool
    alive: bool
    handled: int
    max_requests: int
    in_flight: int
    timeout: float
    body_buffer: int
    health_path: str | None
    limits: Limits
    h2_tls: bool
    conns: dict[int, Connection]
    pre_request: Callable[[Any, Request], object] | None
    h2_hub: StreamHub
    h2_session_limits: H2Limits
    h2_handlers: dict[type, Callable[[Connection, Any, float], None]]
    h2_offload = False  # closes go to the threads (set by the worker while they run)

    if TYPE_CHECKING:

        def close(self, conn: Connection) -> None: ...
        def retire(self, reason: int) -> None: ...
        def report_stuck(self, conn: Connection, now: float) -> None: ...
        def submit_stream(self, stream: H2Stream) -> None: ...
        def submit_close(self, job: H2Closing) -> None: ...
        def with_pre_request(self, req: Request, exchange: Any) -> Any: ...

    # ---- switching ----------------------------------------------------------------------------

    def h2_init(self, wake_w: int, tls: bool) -> None:
        """Called by the worker when h2 is on (so that h2 is imported only then)."""
        from corral.http import h2
        from corral.workers.h2_setup import h2_limits

        self.h2_tls = tls
        self.h2_session_limits = h2_limits(self.settings, self.limits)
        self.h2_hub = StreamHub(wake_w, self.inline)
        self.h2_handlers = {
            h2.BodyData: self.h2_data,
            h2.StreamOpened: self.h2_opened,
            h2.BodyEnded: self.h2_body_end,
            h2.StreamAborted: self.h2_aborted,
        }

    def h2_switch(
        self,
        conn: Connection,
        data: bytes,
        now: float,
        upgrade: bytes | None = None,
        req: Request | None = None,
    ) -> None:
        """Make `conn` an HTTP/2 connection; `data` are its first bytes of HTTP/2. With
        `upgrade` (HTTP2-Settings), `req` is the HTTP/1.1 request that becomes stream 1."""
        from corral.http.h2 import H2Session

        session = H2Session(self.h2_session_limits, now)
        session.start(upgrade)
        link = H2Link(conn, session, now)
        if upgrade is not None:
            link.out += SWITCHING_PROTOCOLS
        conn.h2 = link
        conn.state = H2
        conn.buf = b""
        conn.deadline = 0.0
        if req is not None:
            # Stream 1 is served as HTTP/2 (RFC 7540 §3.2), without the fields that asked for
            # the switch: they were for this hop, and it is done.
            req.version = "HTTP/2"
            req.headers = [item for item in req.headers if item[0] not in _UPGRADE_FIELDS]
            self.h2_open(conn, 1, req, True, now)
        if data:
            self.h2_input(conn, data, now)
        self.h2_service(conn, now)

    # ---- readiness ----------------------------------------------------------------------------

    def on_h2(self, conn: Connection, mask: int, now: float) -> None:
        link: H2Link = conn.h2
        if link.linger:
            self.h2_discard(conn, now)
            return
        if mask & _INPUT and len(link.out) < OUT_LIMIT:
            if self.h2_tls:
                data: bytes | None = conn.advance()  # type: ignore[attr-defined]
            else:
                try:
                    data = conn.sock.recv(RECV_SIZE) or None
                except BlockingIOError:
                    data = b""
                except OSError:
                    data = None
            if data is None:
                self.close(conn)
                return
            if data:
                self.h2_input(conn, data, now)
        self.h2_service(conn, now)

    def h2_input(self, conn: Connection, data: bytes, now: float) -> None:
        handlers = self.h2_handlers
        for event in conn.h2.session.receive(data, now):
            # WindowOpened has none: h2_service looks at every parked stream anyway.
            handler = handlers.get(type(event))
            if handler is not None:
                handler(conn, event, now)

    def h2_opened(self, conn: Connection, event: Any, now: float) -> None:
        self.h2_open(conn, event.stream_id, event.request, event.ended, now)

    def h2_body_end(self, conn: Connection, event: Any, now: float) -> None:
        stream = conn.h2.streams.get(event.stream_id)
        if stream is None:
            return
        stream.end_body()
        buffer = stream.buffer
        if buffer is not None:
            stream.buffer = None
            stream.deadline = 0.0
            self.h2_dispatch(stream, buffer.input())

    def h2_aborted(self, conn: Connection, event: Any, now: float) -> None:
        stream = conn.h2.streams.get(event.stream_id)
        if stream is not None:
            self.h2_abort(conn, stream, now)

    # ---- streams opening ----------------------------------------------------------------------

    def h2_open(
        self, conn: Connection, stream_id: int, req: Request, ended: bool, now: float
    ) -> None:
        link: H2Link = conn.h2
        session = link.session
        stream = H2Stream(self.h2_hub, link, conn, stream_id, req)
        link.streams[stream_id] = stream
        self.handled += 1
        if self.handled >= self.max_requests and self.alive:
            log.info("Autorestarting worker after current request.")
            self.retire(REASON_MAX_REQUESTS)
        if req.path == self.health_path:
            self.h2_answer(stream, _health_head(self.alive, req.method == "HEAD"))
            return
        limit = self.settings.limit_request_body
        stream.limit = limit
        if limit and req.content_length is not None and req.content_length > limit:
            self.h2_answer(stream, error_head(413))
            return
        if ended:
            stream.body_ended = True
            self.h2_dispatch(stream, EMPTY_BODY)
            return
        if req.expect_continue:
            # RFC 9110 §10.1.1: the body is welcome (the window bounds what can arrive).
            session.respond(stream_id, 100, [], end=False)
        if self.h2_collects(link, stream, req.content_length):
            seconds = self.settings.request_body_timeout
            stream.deadline = now + seconds if seconds else 0.0
        else:
            self.h2_dispatch(stream, H2Input(stream))

    def h2_collects(self, link: H2Link, stream: H2Stream, size: int | None) -> bool:
        """Whether the loop collects this body before the application is called: one whose
        Content-Length fits in what is left of `request_body_buffer` for the connection (its
        streams together get no more than one HTTP/1.1 connection: the budget, and
        `request_body_memory` of it in memory), or one without a Content-Length while some of
        the budget is left; with --threads 1 every body (the application
        runs in the loop and must never wait for a body the loop itself has to receive)."""
        budget = self.body_buffer
        room = budget - link.collected
        if not self.inline and (room <= 0 or (size is not None and size > room)):
            return False
        memory = max(0, self.settings.request_body_memory - link.collected)
        # A body without a Content-Length reserves what arrives, and is streamed once it
        # outgrows the budget (h2_data), as a chunked one is on HTTP/1.1: handing it to a
        # thread at once would let a few HEADERS frames hold every thread for `timeout`.
        stream.open_ended = size is None and not self.inline
        if size is not None:
            stream.reserved = size
        elif self.inline:  # received whole whatever its size: counts as the whole budget
            stream.reserved = budget
        link.collected += stream.reserved
        stream.buffer = BodyBuffer(_Frames(), memory, 1 << 62)  # type: ignore[arg-type]
        return True

    def h2_dispatch(self, stream: H2Stream, body: Input) -> None:
        """Build the stream's exchange; `h2_service` starts it on a thread."""
        assert self.adapter is not None
        req = stream.req
        exchange = self.adapter.exchange(stream, req, body, b"", True, stream.response())
        if self.pre_request is not None:
            exchange = self.with_pre_request(req, exchange)
        stream.exchange = exchange

    def h2_answer(self, stream: H2Stream, head: H2Head) -> None:
        """Answer without the application (health path, a body over the limit)."""
        stream.add([head])
        stream.done = True

    def h2_data(self, conn: Connection, event: BodyData, now: float) -> None:
        link: H2Link = conn.h2
        session = link.session
        stream = link.streams.get(event.stream_id)
        if stream is None or stream.done or stream.aborted:
            session.consumed(event.stream_id, event.flow)
            return
        stream.progress = now
        buffer = stream.buffer
        if buffer is None:
            if event.flow > len(event.data):  # padding: nobody reads it
                session.consumed(event.stream_id, event.flow - len(event.data))
            if event.data:
                stream.deliver(event.data)
            return
        try:
            buffer.feed(event.data)
        except OSError as exc:
            log.error("Cannot buffer the request body from %s: %s", conn.remote_addr, exc)
            self.h2_refuse(stream, 503)
            return
        session.consumed(event.stream_id, event.flow)
        if stream.limit and buffer.size > stream.limit:
            self.h2_refuse(stream, 413)
        elif stream.open_ended:
            stream.reserved += len(event.data)
            link.collected += len(event.data)
            if link.collected > self.body_buffer:
                # Past the budget: the application gets what is here, then the rest as it comes.
                stream.buffer = None
                stream.deadline = 0.0
                self.h2_dispatch(stream, H2Input(stream, buffer.input()))

    def h2_refuse(self, stream: H2Stream, status: int) -> None:
        """A collected body that cannot be served: answer `status`, drop the body."""
        stream.buffer.discard()
        stream.buffer = None
        self.h2_answer(stream, error_head(status))

    def h2_abort(self, conn: Connection, stream: H2Stream, now: float) -> None:
        """The peer reset the stream (or the connection ended): stop its response."""
        stream.abort()
        stream.pending.clear()
        if not stream.running:
            self.h2_finish(conn, stream, now)

    # ---- streams ending -----------------------------------------------------------------------

    def h2_finish(self, conn: Connection, stream: H2Stream, now: float) -> None:
        """The stream is over (its output sent, or aborted): release it."""
        link: H2Link = stream.link
        if link.streams.pop(stream.stream_id, None) is None:
            return
        self.h2_close_exchange(stream)
        if stream.buffer is not None:
            stream.buffer.discard()
            stream.buffer = None
        link.collected -= stream.reserved
        if link.closed:
            return
        session = link.session
        unread = stream.drop_inbox()
        if unread:
            # Body bytes nobody will read: the connection's window gets them back all the same
            # (or the connection would shrink towards a standstill, stream after stream).
            session.consumed(stream.stream_id, unread)
        if not (stream.body_ended or stream.aborted or stream.reset_sent):
            # RFC 9113 §8.1: the response is complete; the rest of the body is not wanted.
            session.reset(stream.stream_id, _NO_ERROR)
        session.finished(stream.stream_id)
        if not link.streams:
            link.idle_since = now
            # Stopping: the connection ends with its last stream, unless the session has
            # opened another one whose event is still to come in this same batch (its GOAWAY
            # would name a stream then dropped with the connection).
            if not self.alive and session.idle:
                session.close()

    def h2_close_exchange(self, stream: H2Stream) -> None:
        """Close the exchange of a stream that ended early: its close() runs the application's
        (and logs the request), so it goes to a thread; in the loop only with --threads 1 or
        once the threads are stopping."""
        exchange, stream.exchange = stream.exchange, None
        if exchange is None:
            return
        job = H2Closing(stream, exchange)
        if self.h2_offload:
            self.submit_close(job)
        else:
            job.run()

    def h2_closing(self, conn: Connection) -> None:
        """The connection is being closed: every stream ends with it."""
        link: H2Link = conn.h2
        if link.closed:
            return
        link.closed = True
        for stream in list(link.streams.values()):
            stream.abort()
            stream.pending.clear()
            if not stream.running:
                link.streams.pop(stream.stream_id, None)
                self.h2_close_exchange(stream)
                if stream.buffer is not None:
                    stream.buffer.discard()
        last = bytes(link.out) + link.session.output()  # a GOAWAY, if one was queued
        if last:
            conn.send_nowait(last)
        link.out.clear()
        # The session (h2 keeps up to 2**16 closed streams' records) goes now, not when the
        # cycle collector finds the connection: streams still on threads only see `closed`.
        link.session = None  # type: ignore[assignment]


def _health_head(alive: bool, head: bool) -> H2Head:
    """--health-path on HTTP/2: the same answer as HTTP/1.1's (http/writer.health_response)."""
    body = b"ok\n" if alive else b"stopping\n"
    fields = [
        (b"content-type", b"text/plain"),
        (b"cache-control", b"no-store"),
        (b"content-length", b"%d" % len(body)),
    ]
    return H2Head(200 if alive else 503, fields, b"" if head else body, True)
