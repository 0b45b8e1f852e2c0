"""One HTTP/2 stream of a gthread (WSGI) worker: the transport the WSGI adapter serves it
through, its request body, and its response output on its way to the loop.

Threads and the loop share a stream only through what is here, under the worker's one
condition (`StreamHub.cond`): a thread pulls the response (`pull`), reads a streamed body
(`take_body`) and pushes PEP 3333 write() output (`push`); it reports each of these to the loop
as a note (`StreamHub.post`) and wakes it. The loop alone owns the HTTP/2 session, the socket
and `pending` (the output waiting for the peer's window); it feeds body bytes in (`deliver`),
ends the body (`end_body`) and aborts the stream (`abort`).

What this module must never do: touch the session or the socket, or let a thread wait for the
client longer than `timeout` (a read of the body, a write() the peer does not take).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import os
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from corral.adapters.body import Body
from corral.adapters.response import FileRange, StreamOutput
from corral.adapters.response_h2 import END, RESET, H2Head, H2Response
from corral.errors import ClientDisconnected, ProtocolError

if TYPE_CHECKING:
    from corral.http.parser import Request
    from corral.workers.connection import Connection

log = logging.getLogger("corral.error")

# Notes a thread hands to the loop: (stream, kind, value).
PULLED = 0  # value: (output items, whether the response is done)
CREDIT = 1  # value: body bytes the application has read (flow control credit)
PUSHED = 2  # value: None; output waits in `pushed`

# A pull stops (and the thread is free) once this much of what it produced is still unsent,
# so a response is produced only as fast as the peer's window lets it leave.
PULL_BUDGET = 65536
# write() waits while more than this of the stream's output is still unsent.
PUSH_LIMIT = 262144

StreamItem = StreamOutput | bytes | memoryview | FileRange


class StreamHub:
    """What a worker's streams share: the condition, the notes for the loop, the wake-up."""

    __slots__ = ("cond", "inline", "notes", "wake_w", "woken")

    def __init__(self, wake_w: int, inline: bool) -> None:
        self.cond = threading.Condition()
        self.notes: collections.deque[tuple[H2Stream, int, Any]] = collections.deque()
        self.wake_w = wake_w
        self.inline = inline  # the application runs in the loop itself (--threads 1)
        # A wake-up is on its way: the loop clears this before it takes the notes, so a note
        # posted meanwhile is either taken now or wakes the loop again.
        self.woken = False

    def post(self, stream: H2Stream, kind: int, value: object) -> None:
        self.notes.append((stream, kind, value))
        if not self.inline and not self.woken:  # inline, the loop takes its own notes
            self.woken = True
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"\0")


class H2Stream:
    """A request on an HTTP/2 connection, and the WSGI adapter's transport for it."""

    __slots__ = (
        "aborted",
        "body_ended",
        "buffer",
        "context",
        "deadline",
        "done",
        "ending",
        "exchange",
        "hub",
        "inbox",
        "leftover",
        "limit",
        "link",
        "open_ended",
        "pending",
        "produced",
        "progress",
        "pulls",
        "pushed",
        "pushing",
        "received",
        "remote_addr",
        "remote_port",
        "req",
        "reserved",
        "reset_sent",
        "running",
        "scheme",
        "sent",
        "server_name",
        "server_port",
        "stalled",
        "started",
        "stream_id",
        "stuck",
        "thread",
        "timeout",
        "trusted",
    )

    def __init__(
        self, hub: StreamHub, link: Any, conn: Connection, stream_id: int, req: Request
    ) -> None:
        self.hub = hub
        self.link = link  # the connection's H2Link (workers/h2_engine.py)
        self.stream_id = stream_id
        self.req = req
        self.remote_addr = conn.remote_addr
        self.remote_port = conn.remote_port
        self.server_name = conn.server_name
        self.server_port = conn.server_port
        self.trusted = conn.trusted
        self.timeout = conn.timeout
        self.scheme = conn.scheme
        self.leftover: bytes | None = None
        self.exchange: Any = None  # the adapter's generator while the response is produced
        self.context = contextvars.Context()
        self.buffer: Any = None  # a body the loop collects before the app is called
        self.pending: collections.deque[StreamItem] = collections.deque()  # loop only
        self.pushed: list[StreamItem] = []  # write() output, under hub.cond
        self.inbox: list[bytes] = []  # streamed body bytes, under hub.cond
        self.received = 0  # body bytes the application has read (thread side)
        self.limit = 0  # limit_request_body (0: none)
        self.reserved = 0  # of the connection's budget for bodies collected by the loop
        self.open_ended = False  # collected without a Content-Length: reserved as it comes
        self.body_ended = False
        self.aborted = False
        self.running = False  # a pull is on a thread (or queued for one)
        self.done = False  # the exchange has ended
        self.ending = False  # an item that ends the stream (END, RESET) is queued
        self.reset_sent = False
        self.pushing = False  # a thread waits in write()
        self.produced = 0  # body bytes the application produced (thread side)
        self.sent = 0  # body bytes moved into the session (loop side)
        self.stalled = 0.0  # since when output waits on a closed window (0: it does not)
        self.deadline = 0.0  # request_body_timeout, then response_write_timeout (0: none)
        self.progress = time.monotonic()
        self.pulls = 0  # pulls started: the first one runs whatever the window
        self.started = 0.0  # when a thread took up the current pull (0: still queued)
        self.thread = 0
        self.stuck = False

    # ---- thread side -------------------------------------------------------------------------

    def pull(self) -> tuple[list[StreamItem], bool]:
        """Pull the response: each piece goes to the loop as it is produced, until the
        response is done or PULL_BUDGET of it waits unsent; (last output, whether it is
        done). Once the stream's end is produced only bookkeeping is left (closing, the access
        log), so that output goes with the end of the pull. A file range ends a pull: the file
        stays open until the loop has sent it."""
        batch: list[StreamItem] = []
        if self.aborted:  # reset while it waited for a thread: not started at all
            return batch, False
        inline = self.hub.inline
        for out in self.exchange:
            batch.append(out)
            kind = type(out)
            if kind is bytes:
                self.produced += len(out)
            elif kind is H2Head:
                self.produced += len(out.body)
                if out.end:
                    continue
            elif kind is FileRange:
                self.produced += out.count
                return batch, False
            else:  # END, RESET
                continue
            if inline:  # the loop is waiting for this very pull
                return batch, False
            self.hand_over(batch)
            batch = []
            if self.aborted or self.produced - self.sent >= PULL_BUDGET:
                return batch, False
        return batch, True

    def hand_over(self, items: list[StreamItem]) -> None:
        with self.hub.cond:
            self.pushed.extend(items)
        self.hub.post(self, PUSHED, None)

    def take_body(self) -> bytes:
        """The next body bytes the peer sent (b"" at the end), waiting at most `timeout`."""
        cond = self.hub.cond
        with cond:
            deadline = time.monotonic() + self.timeout
            while not self.inbox:
                if self.aborted:
                    raise ClientDisconnected("stream reset by the client")
                if self.body_ended:
                    return b""
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClientDisconnected("client timed out")
                cond.wait(remaining)
            data = b"".join(self.inbox)
            self.inbox.clear()
        self.hub.post(self, CREDIT, len(data))
        self.received += len(data)
        if self.limit and self.received > self.limit:
            raise ProtocolError(413, "request body too large")
        return data

    def push(self, items: list[StreamOutput | bytes]) -> None:
        """PEP 3333 write(): queue the output; wait (within `timeout`) while the peer has not
        taken enough of what was queued before."""
        hub = self.hub
        cond = hub.cond
        for item in items:
            if type(item) is bytes:
                self.produced += len(item)
            elif isinstance(item, H2Head):
                self.produced += len(item.body)
        with cond:
            if self.aborted:
                raise ClientDisconnected("stream reset by the client")
            self.pushed.extend(items)
        if hub.inline:
            return  # the loop takes it when the pull ends
        hub.post(self, PUSHED, None)
        deadline = time.monotonic() + self.timeout
        with cond:
            self.pushing = True
            try:
                while self.produced - self.sent > PUSH_LIMIT and not self.aborted:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ClientDisconnected("client timed out")
                    cond.wait(remaining)
            finally:
                self.pushing = False
            if self.aborted:
                raise ClientDisconnected("stream reset by the client")

    def response(self) -> H2Response:
        return H2Response(self.push, self.req)

    # PEP 3333's transport contract; an HTTP/2 stream never reads or sends bytes directly.
    def recv(self) -> bytes:
        return self.take_body()

    def send(self, data: bytes) -> None:
        self.push([data])

    # ---- loop side ---------------------------------------------------------------------------

    def deliver(self, data: bytes) -> None:
        with self.hub.cond:
            self.inbox.append(data)
            self.hub.cond.notify_all()

    def end_body(self) -> None:
        with self.hub.cond:
            self.body_ended = True
            self.hub.cond.notify_all()

    def abort(self) -> None:
        with self.hub.cond:
            self.aborted = True
            self.hub.cond.notify_all()

    def drop_inbox(self) -> int:
        """Throw away body bytes the application did not read; how many they were."""
        with self.hub.cond:
            size = sum(map(len, self.inbox))
            self.inbox.clear()
        return size

    def take_pushed(self) -> None:
        """Move write() output into `pending` (loop)."""
        with self.hub.cond:
            if self.pushed:
                self.add(self.pushed)
                self.pushed = []

    def add(self, items: list[StreamItem]) -> None:
        for item in items:
            if item is END or item is RESET or (type(item) is H2Head and item.end):
                self.ending = True
        self.pending.extend(items)

    def report_sent(self) -> None:
        """Wake a thread waiting in write(): output has left."""
        with self.hub.cond:
            self.hub.cond.notify_all()


class H2Closing:
    """A job for a thread: close the exchange of a stream that ended before its response did
    (reset, connection closed). The application's close() may take its time, and the loop
    must never wait for it."""

    __slots__ = ("context", "exchange", "remote_addr")

    def __init__(self, stream: H2Stream, exchange: Any) -> None:
        self.context = stream.context
        self.exchange = exchange
        self.remote_addr = stream.remote_addr

    def run(self) -> None:
        try:
            self.context.run(self.exchange.close)
        except Exception:
            log.exception("Error closing the response to %s", self.remote_addr)


class H2Input(Body):
    """wsgi.input for a streamed request body: read from the stream's inbox as it arrives."""

    __slots__ = ("stream",)

    def __init__(self, stream: H2Stream, prefix: IO[bytes] | None = None) -> None:
        self.stream = stream
        self._buf = bytearray()
        # What the loop collected before the body outgrew the connection's budget.
        self._prefix = prefix
        self.failed = False
        self.leftover = b""

    def _fill(self) -> bool:
        if self._prefix is not None:
            part = self._prefix.read(65536)
            if part:
                self._buf += part
                return True
            self._prefix.close()
            self._prefix = None
        try:
            data = self.stream.take_body()
        except BaseException:
            self.failed = True
            raise
        if not data:
            return False
        self._buf += data
        return True

    @property
    def done(self) -> bool:
        return self._prefix is None and self.stream.body_ended and not self.stream.inbox

    def close(self) -> None:
        """Nothing to release: the loop drops what the application left unread."""
