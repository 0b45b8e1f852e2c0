"""One HTTP/2 request stream of the `asgi` worker: the ASGI receive/send pair over `H2Session`.

The order of the ASGI messages is the one HTTP/1.1 keeps (`BaseExchange`,
adapters/asgi_exchange.py); what is HTTP/2's own is here. The request body comes from a
per-stream queue filled by the connection (workers/asgi_h2.py); each chunk is credited back to
the peer (`H2Session.consumed`) only when the application takes it, so a slow application holds
at most one stream window of body. The response head goes out through `H2Session.respond` after
the same checks HTTP/1.1 applies to an application's headers (`field_block`): names and values
in the field grammar, connection-specific fields dropped, Content-Length kept to its word. The
body goes out as the peer's windows allow: while a window is closed the task waits for the
connection to say it opened (`WindowWait`, which the WebSocket streams share), holding nothing
beyond what was sent. A response that fails after its head is reset (RST_STREAM
INTERNAL_ERROR), never ended as if it were complete.

What this module must never do: write to the socket itself (the connection flushes the
session's output), buffer response bytes the peer has not made room for, or end a stream with
END_STREAM when its response is short of what it announced.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from h2.errors import ErrorCodes

from corral import SERVER_SOFTWARE
from corral.adapters.asgi_exchange import BaseExchange, ClientGone, Message, field_block
from corral.adapters.asgi_extensions import field_lines, trailer_fields
from corral.http.parser import Request
from corral.http.writer import HOP_BY_HOP, NO_BODY_STATUSES, REASONS, date_header

if TYPE_CHECKING:
    from corral.http.h2 import H2Session
    from corral.workers.asgi_h2 import Http2Connection

log = logging.getLogger("corral.error")

# Fields the server owns: the connection-specific ones RFC 9113 §8.2.2 forbids, and the length.
_SERVER_OWNED = HOP_BY_HOP | {"content-length", "proxy-connection"}
_SERVER = SERVER_SOFTWARE.split("/")[0].encode()
_DIRECT_FLUSH = 16384  # a body chunk at least this big is written at once, not with the batch
_FILE_CHUNK = 65536
# The most of a file read at once, however wide the client's window: a window of 2 GiB that
# the client does not read must not become 2 GiB of file in memory.
_FILE_CHUNK_MAX = 1 << 20


def response_fields(headers: Any) -> tuple[list[tuple[bytes, bytes]], int | None, Any]:
    """The application's response headers as HTTP/2 fields (lower-case names), the
    Content-Length it announced, checked as HTTP/1.1 checks them; RuntimeError when bad. (A
    Connection field is dropped like the other connection-specific ones: no close to ask for.)"""
    fields = [(b"server", _SERVER), (b"date", date_header.line()[6:-2])]
    _, content_length, _ = field_block(headers, _SERVER_OWNED, fields)
    return fields, content_length, headers


def answer_error(session: H2Session, stream_id: int, status: int) -> None:
    """A whole error response made by the worker: `H2Session.answer_error`'s head and short
    text body, or the head alone (Content-Length 0) when the client's window has no room for
    the body: the stream would otherwise never end, since nothing sends the rest later."""
    size = len(f"{status} {REASONS.get(status, 'Error')}\n")
    if session.window(stream_id) >= size:
        session.answer_error(stream_id, status)
    else:
        session.respond(stream_id, status, [(b"content-length", b"0")], True)


class WindowWait:
    """Waiting for the peer to open a flow-control window, for a request stream's response and
    a WebSocket's frames alike: the connection calls `window_opened` on a WINDOW_UPDATE (or
    when the stream ends), and its sweep sees `blocked_since` (the send timeout). Whether there
    is anything to wait for is each stream's own question, asked between `window_event` and
    `blocked`."""

    conn: Http2Connection
    window_open: asyncio.Event | None
    blocked_since: float  # when the wait began (0: not waiting)

    def window_opened(self) -> None:
        if self.window_open is not None:
            self.window_open.set()

    def window_event(self) -> asyncio.Event:
        """The event to wait on, cleared before the stream looks at its window: an opening
        after that look is not missed."""
        event = self.window_open
        if event is None:
            event = self.window_open = asyncio.Event()
        event.clear()
        return event

    async def blocked(self, event: asyncio.Event) -> None:
        """Send what is queued, then wait for `event` with the wait's start marked."""
        self.conn.flush()
        self.blocked_since = time.monotonic()
        try:
            await event.wait()
        finally:
            self.blocked_since = 0.0


class H2Stream(WindowWait, BaseExchange):
    """One request stream: the application's receive/send and its response's framing."""

    def __init__(self, conn: Http2Connection, stream_id: int, req: Request, ended: bool) -> None:
        self.conn = conn
        self.session = conn.session
        self.stream_id = stream_id
        self.req = req
        self.is_head = req.method == "HEAD"
        self.body_done = ended  # the application has had the whole body (or will not)
        self.peer_ended = ended  # the peer has sent the whole body
        self.body: asyncio.Queue[tuple[bytes, int, bool] | None] | None = (
            None if ended else asyncio.Queue()
        )
        self.received = 0
        self.request_sent = False
        self.continue_due = req.expect_continue and not ended
        self.client_gone = False
        self.over = False
        self.gone: asyncio.Event | None = None
        self.window_open: asyncio.Event | None = None
        self.blocked_since = 0.0  # when the response began to wait for a window (0: not)
        self.body_wait_since = 0.0  # when the application began to wait for body bytes (0: not)
        self.task: asyncio.Task[None] | None = None
        self.grace: asyncio.TimerHandle | None = None
        self.status = 0
        self.started = False
        self.head_sent = False
        self.ended = False
        self.no_body = False
        self.fields: list[tuple[bytes, bytes]] = []
        self.headers: Any = ()  # as the application gave them, for the access log
        self.content_length: int | None = None
        self.sent = 0
        self.trailers = False
        self.trailers_allowed = False
        self.awaiting_trailers = False
        self.trailer_fields: list[Any] = []

    # --- from the connection --------------------------------------------------------------

    def feed(self, data: bytes, flow: int) -> None:
        """Body bytes from the peer; refused past limit_request_body (413 or a reset)."""
        if self.body is None or self.body_done:
            self.session.consumed(self.stream_id, flow)
            return
        self.received += len(data)
        limit = self.conn.worker.settings.limit_request_body
        if limit and self.received > limit:
            self.session.consumed(self.stream_id, flow)
            self.refuse_body(413)
            return
        self.body.put_nowait((data, flow, True))

    def feed_end(self) -> None:
        self.peer_ended = True
        if self.body is not None and not self.body_done:
            self.body.put_nowait((b"", 0, False))

    def refuse_body(self, status: int) -> None:
        self.disconnected()
        if self.head_sent:
            self.session.reset(self.stream_id, ErrorCodes.CANCEL)
        else:
            # A whole answer, then RST_STREAM NO_ERROR to stop the body (RFC 9113 §8.1).
            self.error_answer(status)
            self.session.reset(self.stream_id, ErrorCodes.NO_ERROR)
        self.conn.flush_soon()

    def disconnected(self) -> None:
        """The peer reset the stream, or the connection is gone."""
        self.client_gone = True
        if not self.body_done and self.body is not None:
            self.body.put_nowait(None)
        self.set_over()
        if self.window_open is not None:
            self.window_open.set()

    def release(self) -> None:
        """The stream is over: credit the connection with the body nobody will read (the
        stream's own window no longer matters, the connection's is shared)."""
        body = self.body
        if body is None:
            return
        flow = 0
        while not body.empty():
            item = body.get_nowait()
            if item is not None:
                flow += item[1]
        self.body_done = True
        self.session.consumed(self.stream_id, flow)

    def going_away(self) -> None:
        """The worker is stopping: a request stream simply finishes."""

    # --- receive --------------------------------------------------------------------------

    async def receive_body(self) -> Message:
        if self.continue_due:
            # RFC 9110 §10.1.1: the client may wait for this before sending the body.
            self.continue_due = False
            if not self.head_sent and self.session.respond(self.stream_id, 100, [], False):
                self.conn.flush_soon()
        body = self.body
        assert body is not None
        if body.empty():
            # Every byte received is credited by now: a body that does not come within
            # `timeout` is the client's stall (the connection's sweep answers 408).
            self.body_wait_since = time.monotonic()
            try:
                item = await body.get()
            finally:
                self.body_wait_since = 0.0
        else:
            item = body.get_nowait()
        chunks = []
        flow = 0
        while True:
            if item is None:
                self.body_done = self.request_sent = True
                return {"type": "http.disconnect"}
            data, credit, more = item
            chunks.append(data)
            flow += credit
            if not more or body.empty():
                break
            item = body.get_nowait()
        if flow:
            self.session.consumed(self.stream_id, flow)  # read: the peer may send as much again
            self.conn.flush_soon()
        if not more:
            self.body_done = self.request_sent = True
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return {"type": "http.request", "body": data, "more_body": more}

    # --- send ------------------------------------------------------------------------------

    def start(self, status: int, message: Message) -> None:
        fields, self.content_length, self.headers = response_fields(message.get("headers", ()))
        self.fields = fields
        self.status = status
        self.started = True
        self.trailers = bool(message.get("trailers", False))

    def send_head(self, body: bytes, more: bool) -> bool:
        """The response's HEADERS; True when they end the stream (no body follows)."""
        status = self.status
        fields = self.fields
        if status in NO_BODY_STATUSES:
            self.no_body = True
            self.content_length = None
        elif self.content_length is not None:
            fields.append((b"content-length", b"%d" % self.content_length))
        elif not more and not self.trailers:
            self.content_length = len(body)
            fields.append((b"content-length", b"%d" % len(body)))
        if self.is_head:
            self.no_body = True
        end = self.no_body and not more and not self.trailers
        self.head_sent = True
        if not self.session.respond(self.stream_id, status, fields, end):
            self.gone_now()
        return end

    async def send_body(self, body: bytes, more: bool) -> None:
        ended_by_head = self.send_head(body, more) if not self.head_sent else False
        short = False
        if self.no_body:
            body = b""
        elif (limit := self.content_length) is not None:
            if self.sent + len(body) > limit:
                body = body[: limit - self.sent]  # more than announced: never past it
            short = not more and self.sent + len(body) < limit
        if not more:
            self.end_body()
        if short:
            # Fewer bytes than announced: the client must not take it for a whole response.
            await self.write(body, False)
            self.reset(ErrorCodes.INTERNAL_ERROR)
            return
        end = not more and not self.trailers and not ended_by_head
        if body or end:
            await self.write(body, end)
        elif self.conn.conn.must_drain:
            await self.conn.conn.drain()

    async def write(self, data: bytes | memoryview, end: bool) -> None:
        """Send body bytes as the peer's windows allow, waiting while they are closed."""
        session = self.session
        stream_id = self.stream_id
        size = len(data)
        while True:
            taken = session.send_body(stream_id, data, end)
            if taken < 0:
                self.gone_now()
            self.sent += taken
            if taken >= _DIRECT_FLUSH:
                self.conn.flush()
            else:
                self.conn.flush_soon()
            if taken == size:
                break
            data = memoryview(data)[taken:]
            size -= taken
            await self.wait_window()
        conn = self.conn.conn
        if conn.must_drain:  # the socket is above its high-water mark, or gone
            await conn.drain()

    async def wait_window(self) -> None:
        event = self.window_event()
        if self.session.window(self.stream_id) > 0:
            return
        await self.blocked(event)
        if self.client_gone:  # the wait ended with the stream, not with a window
            raise ClientGone("the client has gone")

    def gone_now(self) -> None:
        self.disconnected()
        raise ClientGone("the stream was reset")

    def reset(self, code: int) -> None:
        self.session.reset(self.stream_id, code)
        self.ended = True
        self.disconnected()
        self.conn.flush_soon()

    def error_answer(self, status: int) -> None:
        """A whole error response when no head has gone yet (else the stream is reset)."""
        if self.head_sent:
            self.reset(ErrorCodes.INTERNAL_ERROR)
            return
        self.head_sent = self.ended = True
        self.status = status
        self.headers = ()
        self.sent = 0
        answer_error(self.session, self.stream_id, status)
        self.set_over()
        self.conn.flush_soon()

    # --- extensions ------------------------------------------------------------------------

    async def send_early_hint(self, message: Message) -> None:
        """`http.response.early_hint`: an informational 103 HEADERS frame (RFC 8297)."""
        if self.started:
            return
        links = list(message.get("links", ()))
        field_lines(((b"link", link) for link in links), "early hint")  # checks each
        fields = [(b"link", bytes(link)) for link in links]
        if self.session.respond(self.stream_id, 103, fields, False):
            self.conn.flush_soon()

    async def send_trailers(self, message: Message) -> None:
        """`http.response.trailers`: a HEADERS frame that ends the stream (RFC 9113 §8.1)."""
        if self.take_trailers(message):
            await self.finish_trailers()

    async def finish_trailers(self) -> None:
        self.awaiting_trailers = False
        self.ended = True
        self.set_over()
        fields = trailer_fields(self.trailer_fields) if self.trailers_allowed else []
        if fields:
            if not self.session.send_trailers(self.stream_id, fields):
                self.gone_now()
            self.conn.flush_soon()
        else:
            await self.write(b"", True)

    async def send_pathsend(self, message: Message) -> None:
        """`http.response.pathsend`: the file at `path` is the body, read a window at a time."""
        path = self.pathsend_path(message)
        self.trailers = False
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if self.content_length is None:
                self.content_length = size
            left = min(size, self.content_length)
            if not left or self.is_head or self.status in NO_BODY_STATUSES:
                await self.send_body(b"", False)
                return
            while left > 0:
                # A file shorter than announced ends in a short body, which is reset.
                window = self.session.window(self.stream_id)
                chunk = file.read(min(left, max(_FILE_CHUNK, min(window, _FILE_CHUNK_MAX))))
                left = 0 if not chunk else left - len(chunk)
                await self.send_body(chunk, left > 0)

    # --- the end ---------------------------------------------------------------------------

    def finish(self) -> None:
        """The application returned: end what it left unended."""
        if self.client_gone:
            return
        if self.awaiting_trailers:
            self.awaiting_trailers = False
            self.ended = True
            if self.session.send_body(self.stream_id, b"", True) < 0:
                return
        elif not self.ended:
            if not self.head_sent:
                log.error("ASGI application returned without a response")
                self.error_answer(500)
            else:
                self.reset(ErrorCodes.INTERNAL_ERROR)  # a body cut short is no response
        self.conn.flush_soon()

    extensions: ClassVar[dict[str, Callable[[Any, Message], Awaitable[None]]]] = {
        "http.response.early_hint": send_early_hint,
        "http.response.trailers": send_trailers,
        "http.response.pathsend": send_pathsend,
    }
