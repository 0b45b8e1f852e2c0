"""The output side of an HTTP/2 connection on the gthread worker: streams' output moved into
the session as the peer's windows allow, the session's bytes written as the socket takes them,
and the socket watched for what comes next. Mixed into the worker with workers/h2_engine.py,
which owns the rest (switching, frames in, streams, deadlines).

Backpressure: past OUT_LIMIT bytes the socket has not taken, no stream output is moved into the
session and the connection's frames are not read (a peer that does not read cannot make the
server queue answers to its PINGs without bound). A stream whose window is closed keeps its
output here (`pending`) and no thread.

What this module must never do: wait for the socket, or call the application.
"""

from __future__ import annotations

import logging
import os
import select
from typing import TYPE_CHECKING, Any

from corral.adapters.response import FileRange
from corral.adapters.response_h2 import END, RESET, H2Head
from corral.workers.connection import RECV_SIZE, Connection
from corral.workers.h2_stream import H2Stream

if TYPE_CHECKING:
    from corral.http.h2 import H2Session

log = logging.getLogger("corral.error")

READ = select.EPOLLIN | select.EPOLLRDHUP
WRITE = select.EPOLLOUT
OUT_LIMIT = 262144
LINGER_SECONDS = 2.0
FILE_CHUNK = 262144
_INTERNAL_ERROR = 0x2


class H2Link:
    """The HTTP/2 side of one connection."""

    __slots__ = (
        "blocked",
        "closed",
        "collected",
        "conn",
        "idle_since",
        "level",
        "linger",
        "out",
        "session",
        "streams",
    )

    def __init__(self, conn: Connection, session: H2Session, now: float) -> None:
        self.conn = conn
        self.session = session
        self.streams: dict[int, H2Stream] = {}
        self.out = bytearray()  # session output the socket has not taken yet
        self.level = False  # registered without EPOLLONESHOT
        self.idle_since = now
        self.blocked = 0.0  # since when output waits and the socket takes none of it
        self.collected = 0  # body bytes its streams may have collected by the loop (declared)
        self.closed = False
        self.linger = 0.0  # lingering close: until when input is read and dropped (0: not)


class H2Output:
    """Mixed into the gthread worker (through H2Serving); the names below are the engine's."""

    epoll: Any
    h2_tls: bool

    if TYPE_CHECKING:

        def close(self, conn: Connection) -> None: ...
        def submit_stream(self, stream: H2Stream) -> None: ...
        def h2_finish(self, conn: Connection, stream: H2Stream, now: float) -> None: ...
        def h2_closing(self, conn: Connection) -> None: ...

    def h2_service(self, conn: Connection, now: float) -> None:
        """Move streams' output into the session, start pulls where windows are open, write,
        and watch the socket for what comes next."""
        link: H2Link = conn.h2
        session = link.session
        out = link.out
        for stream in list(link.streams.values()):
            if stream.pending and len(out) < OUT_LIMIT:
                self.h2_feed(link, stream, now)
                out += session.output()
                if stream.pushing:
                    stream.report_sent()
            if stream.pending or stream.running:
                continue
            if stream.aborted or stream.done:
                self.h2_finish(conn, stream, now)
                continue
            if stream.exchange is None:  # its body is still being collected
                continue
            if stream.pulls and session.window(stream.stream_id) <= 0:
                stream.stalled = stream.stalled or now
                continue
            stream.stalled = 0.0
            stream.pulls += 1
            stream.started = 0.0  # set by the thread that takes it up
            stream.running = True
            self.submit_stream(stream)
        data = session.output()
        if data:
            out += data
        if not self.h2_flush(conn, now):
            self.close(conn)
            return
        if session.ended and not out and conn.flushed:
            if session.error:  # the peer's doing (a protocol error, a flood, its GOAWAY)
                log.debug("HTTP/2 connection from %s ended: %s", conn.remote_addr, session.error)
            self.h2_linger(conn, now)
            return
        self.h2_arm(conn)

    def h2_linger(self, conn: Connection, now: float) -> None:
        """The connection is over: its streams end, FIN goes out, and what the peer still
        sends is read and dropped for up to LINGER_SECONDS before the close. Closing with
        input unread makes the kernel send a reset, and a reset can destroy what the peer has
        not read yet: the GOAWAY, the last responses."""
        link: H2Link = conn.h2
        self.h2_closing(conn)
        link.linger = now + LINGER_SECONDS
        if not conn.shutdown_write():
            self.close(conn)
            return
        self.h2_arm(conn)

    def h2_discard(self, conn: Connection, now: float) -> None:
        """Lingering: drop what arrives; close at its end, or once the time is up."""
        for _ in range(16):
            try:
                data = conn.sock.recv(RECV_SIZE)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self.close(conn)
                return
        if now > conn.h2.linger:
            self.close(conn)

    def h2_feed(self, link: H2Link, stream: H2Stream, now: float) -> None:
        """Move what the window allows of the stream's pending output into the session."""
        session = link.session
        sid = stream.stream_id
        pending = stream.pending
        while pending:
            item = pending[0]
            kind = type(item)
            if kind is bytes or kind is memoryview:
                end = len(pending) > 1 and pending[1] is END
                taken = session.send_body(sid, item, end)  # type: ignore[arg-type]
                if taken < 0:
                    self.h2_gone(stream)
                    return
                stream.sent += taken
                if taken < len(item):  # type: ignore[arg-type]
                    pending[0] = memoryview(item)[taken:]  # type: ignore[arg-type]
                    # Waiting on the window from now; a peer that takes some is not stalled.
                    stream.stalled = now if taken else (stream.stalled or now)
                    return
                pending.popleft()
                if end:
                    pending.popleft()
                stream.stalled = 0.0
            elif kind is H2Head:
                head: H2Head = item  # type: ignore[assignment]
                pending.popleft()
                if not session.respond(sid, head.status, head.headers, head.end and not head.body):
                    self.h2_gone(stream)
                    return
                if head.body:
                    if head.end:
                        pending.appendleft(END)
                    pending.appendleft(head.body)
            elif item is END:
                pending.popleft()
                if session.send_body(sid, b"", True) < 0:
                    self.h2_gone(stream)
                    return
            elif item is RESET:
                pending.clear()
                session.reset(sid, _INTERNAL_ERROR)
                stream.reset_sent = True
            elif kind is FileRange:
                if not self.h2_send_file(session, stream, item, now):  # type: ignore[arg-type]
                    return
            else:  # nothing the adapter makes: this stream fails, not the connection
                log.error("Cannot send %r to %s", kind, stream.remote_addr)
                pending.clear()
                session.reset(sid, _INTERNAL_ERROR)
                stream.reset_sent = True

    def h2_send_file(
        self, session: H2Session, stream: H2Stream, item: FileRange, now: float
    ) -> bool:
        """Send a wrapped file's range as the window allows (read here: no sendfile on HTTP/2).
        False while the window is closed."""
        sid = stream.stream_id
        pending = stream.pending
        while item.count > 0:
            room = session.window(sid)
            if room <= 0:
                stream.stalled = stream.stalled or now
                return False
            try:
                chunk = os.pread(item.fd, min(room, item.count, FILE_CHUNK), item.offset)
            except OSError as exc:
                log.error("Cannot read the file sent to %s: %s", stream.remote_addr, exc)
                chunk = b""
            if not chunk:  # shorter than announced: the client must not take it as whole
                pending.clear()
                session.reset(sid, _INTERNAL_ERROR)
                stream.reset_sent = True
                return False
            end = len(chunk) == item.count and len(pending) > 1 and pending[1] is END
            taken = session.send_body(sid, chunk, end)
            if taken < 0:
                self.h2_gone(stream)
                return False
            item.offset += taken
            item.count -= taken
            stream.sent += taken
            if end and taken == len(chunk):
                pending.popleft()
            stream.stalled = 0.0
        pending.popleft()
        return True

    def h2_gone(self, stream: H2Stream) -> None:
        """The session no longer has the stream (reset, connection ending)."""
        stream.pending.clear()
        stream.abort()

    def h2_flush(self, conn: Connection, now: float) -> bool:
        """Write what the socket takes; False when the connection is broken."""
        link: H2Link = conn.h2
        out = link.out
        moved = False
        try:
            while out:
                sent = conn.write_some(out)
                if not sent:
                    break
                del out[:sent]
                moved = True
            if self.h2_tls:
                conn.flush_some()
        except OSError:
            return False
        if not out:
            link.blocked = 0.0
        elif moved or not link.blocked:
            link.blocked = now
        return True

    def h2_arm(self, conn: Connection) -> None:
        """Level-triggered (no EPOLLONESHOT: no thread ever has this connection): read while
        the output is small, and wait for the socket to drain while there is output."""
        link: H2Link = conn.h2
        events = READ if len(link.out) < OUT_LIMIT or link.linger else 0
        if link.out or not conn.flushed:
            events |= WRITE
        if events == conn.events and link.level:
            return
        if conn.events:
            self.epoll.modify(conn.fd, events)
        else:
            self.epoll.register(conn.fd, events)
        conn.events = events
        link.level = True
