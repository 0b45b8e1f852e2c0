"""WebSocket over HTTP/2 (RFC 8441) on the `asgi` worker: an extended CONNECT stream.

The session announces SETTINGS_ENABLE_CONNECT_PROTOCOL; a client then opens a WebSocket with
a CONNECT request whose `:protocol` is `websocket`. The WebSocket itself is the HTTP/1.1 one
(workers/asgi_websocket.py over http/websocket*.py): the same messages, close handshake, pings,
limits and permessage-deflate negotiation. What differs is said here: the handshake is accepted
with a 200 response on the stream (no 101, no Sec-WebSocket-Accept: RFC 8441 §5), refused with
a whole response on the stream, and the frames travel in the stream's DATA frames through
`StreamTransport`, which writes as the peer's windows allow and credits the peer only as the
WebSocket reads (so an application that does not receive holds at most a stream window).
The end of the WebSocket is the end of the stream (END_STREAM, or RST_STREAM when aborted).

What this module must never do: parse WebSocket frames itself, or send on the stream after
its end.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from corral.adapters.asgi import ClientGone
from corral.errors import ProtocolError
from corral.http.h2 import StreamOpened
from corral.http.parser import Request
from corral.http.websocket_handshake import Handshake, _extensions, _subprotocols
from corral.workers.asgi_h2_stream import H2Stream, WindowWait, answer_error, response_fields
from corral.workers.asgi_request import connection_scope
from corral.workers.asgi_websocket import CLOSE_TIMEOUT, WebSocketSession, websocket_scope

if TYPE_CHECKING:
    from corral.workers.asgi_h2 import Http2Connection

log = logging.getLogger("corral.error")

_OWNED = {b"sec-websocket-accept", b"sec-websocket-protocol", b"sec-websocket-extensions"}


def handshake_of(req: Request) -> Handshake:
    """RFC 8441 §5: the WebSocket fields of an extended CONNECT (no key, no Upgrade);
    ProtocolError 400 when they are invalid, 426 for a version other than 13 (RFC 6455)."""
    versions = [value for name, value in req.headers if name == "SEC-WEBSOCKET-VERSION"]
    if versions != ["13"]:
        raise ProtocolError(426 if versions else 400, "unsupported Sec-WebSocket-Version")
    if req.content_length:
        raise ProtocolError(400, "WebSocket CONNECT with a Content-Length")
    return Handshake("", _subprotocols(req), _extensions(req))


class StreamTransport:
    """The WebSocket session's transport on an HTTP/2 stream (asgi_websocket.WebSocketTransport)."""

    def __init__(self, socket: H2WebSocket) -> None:
        self.socket = socket
        self.h2 = socket.conn
        self.worker = socket.conn.worker
        self.client = socket.conn.conn.client
        self.reading = True
        self.transport_gone = False
        self.pending = b""  # frames the peer's window has no room for yet
        self.ending = False  # END_STREAM goes after the pending bytes
        self.held = 0  # credit withheld while the application is behind
        self.early: list[bytes] = []  # frames that came before the handshake was accepted
        self.ws: WebSocketSession | None = None

    def write(self, data: bytes) -> None:
        if self.transport_gone or self.ending or not data:
            return
        self.pending += data
        self.push()

    def push(self) -> None:
        """Send what the window allows of the pending bytes (and END_STREAM once they are out)."""
        socket = self.socket
        if self.pending:
            taken = socket.session.send_body(socket.stream_id, self.pending, False)
            if taken < 0:
                socket.disconnected()
                return
            self.pending = self.pending[taken:]
        if self.ending and not self.pending and not self.transport_gone:
            socket.session.send_body(socket.stream_id, b"", True)
            self.finished()
        self.h2.flush_soon()

    @property
    def must_drain(self) -> bool:
        return self.transport_gone or bool(self.pending) or self.h2.conn.must_drain

    async def drain(self) -> None:
        while self.pending and not self.transport_gone:
            await self.socket.wait_window()
        if self.transport_gone:
            raise ClientGone("the WebSocket stream is closed")
        if self.h2.conn.must_drain:
            await self.h2.conn.drain()

    def pause(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
        if self.held and self.ws is not None and self.ws.accepted:
            self.socket.session.consumed(self.socket.stream_id, self.held)
            self.held = 0
            self.h2.flush_soon()

    def upgraded(self, session: WebSocketSession) -> None:
        self.ws = session
        early, self.early = self.early, []
        for data in early:
            session.data_received(data)
        self.resume_reading()

    def close_transport(self) -> None:
        if not self.transport_gone and not self.ending:
            self.ending = True
            self.push()

    def abort(self) -> None:
        if not self.transport_gone:
            self.socket.session.reset(self.socket.stream_id, ErrorCodes.CANCEL)
            self.h2.flush_soon()
        self.finished()

    def finished(self) -> None:
        self.transport_gone = True
        self.socket.done.set()
        self.socket.window_opened()  # a drain waiting for a window learns the stream is over


class H2WebSocketSession(WebSocketSession):
    """The HTTP/1.1 WebSocket session, its handshake answered on an HTTP/2 stream."""

    stream: H2WebSocket

    def accept_head(self, subprotocol: str | None, extensions: str, headers: Any) -> None:
        if subprotocol is not None and subprotocol not in self.handshake.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        try:
            pairs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            fields, _, _ = response_fields(pairs)
        except RuntimeError as exc:
            raise ValueError(str(exc)) from None
        for name, _ in fields:
            if name in _OWNED:
                raise ValueError(f"header {name!r} is set by the WebSocket handshake")
        if subprotocol is not None:
            fields.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
        if extensions:
            fields.append((b"sec-websocket-extensions", extensions.encode("latin-1")))
        stream = self.stream
        if not stream.session.respond(stream.stream_id, 200, fields, False):
            stream.disconnected()
        stream.status = 200
        stream.conn.flush_soon()

    def refuse(self, status: int) -> None:
        stream = self.stream
        answer_error(stream.session, stream.stream_id, status)
        stream.status = status
        stream.transport.finished()  # the answer ended the stream
        stream.conn.flush_soon()

    def make_denial(self) -> H2Stream:
        stream = self.stream
        request = replace(stream.req, method="GET")
        return H2Stream(stream.conn, stream.stream_id, request, True)

    def denial_failed(self) -> None:
        assert isinstance(self.denial, H2Stream)
        self.denial.error_answer(500)


class H2WebSocket(WindowWait):
    """One extended CONNECT stream, as the connection sees its streams."""

    def __init__(self, conn: Http2Connection, stream_id: int, req: Request) -> None:
        self.conn = conn
        self.session = conn.session
        self.stream_id = stream_id
        self.req = req
        self.task: asyncio.Task[None] | None = None
        self.grace: asyncio.TimerHandle | None = None
        self.ended = False
        self.peer_ended = True  # its end is the WebSocket's: never reset as an unread body
        self.client_gone = False
        self.blocked_since = 0.0
        self.body_wait_since = 0.0  # never: its reads are the WebSocket's (pings, close timers)
        self.status = 0
        self.window_open: asyncio.Event | None = None
        self.done = asyncio.Event()  # the stream is over (ended, refused, reset or gone)
        self.transport = StreamTransport(self)
        self.ws: H2WebSocketSession | None = None
        self.scope: dict[str, Any] = {}

    @classmethod
    def open(cls, conn: Http2Connection, event: StreamOpened) -> H2WebSocket:
        """The stream of an extended CONNECT; ProtocolError when it cannot be a WebSocket."""
        if event.protocol != "websocket":
            raise ProtocolError(501, f"unsupported :protocol {event.protocol!r}")
        if event.ended:
            raise ProtocolError(400, "WebSocket CONNECT that ends its stream")
        req = event.request
        handshake = handshake_of(req)
        socket = cls(conn, event.stream_id, req)
        settings = conn.worker.settings
        limit = settings.websocket_max_message_size or (1 << 62)
        session = H2WebSocketSession(socket.transport, handshake, limit)
        session.stream = socket
        socket.ws = session
        socket.scope = websocket_scope(connection_scope(conn.conn, req), handshake)
        return socket

    # --- from the connection ---------------------------------------------------------------

    def feed(self, data: bytes, flow: int) -> None:
        transport = self.transport
        ws = self.ws
        assert ws is not None
        if transport.transport_gone or ws.finished:
            self.session.consumed(self.stream_id, flow)
            return
        if not ws.accepted:
            transport.early.append(data)
            transport.held += flow
            return
        ws.data_received(data)
        if transport.reading:
            self.session.consumed(self.stream_id, flow)
            self.conn.flush_soon()
        else:
            transport.held += flow  # credited when the application catches up

    def feed_end(self) -> None:
        """The peer ended its side (RFC 8441 §4: as a TCP FIN would)."""
        ws = self.ws
        assert ws is not None
        if not ws.finished:
            ws.connection_lost()
        self.transport.close_transport()

    def disconnected(self) -> None:
        self.client_gone = True
        if self.ws is not None:
            self.ws.connection_lost()
        self.transport.finished()

    def window_opened(self) -> None:
        super().window_opened()
        if self.ws is not None and isinstance(self.ws.denial, H2Stream):
            self.ws.denial.window_opened()
        if self.transport.pending and not self.transport.transport_gone:
            self.transport.push()

    def release(self) -> None:
        """The stream is over: credit the connection with what was never read."""
        transport = self.transport
        self.session.consumed(self.stream_id, transport.held)
        transport.held = 0
        transport.early = []

    def going_away(self) -> None:
        if self.ws is not None:
            self.ws.going_away()

    def reset(self, code: int) -> None:
        self.session.reset(self.stream_id, code)
        self.disconnected()
        self.conn.flush_soon()

    async def wait_window(self) -> None:
        event = self.window_event()
        # The pending frames go first if the window has room; a wait only for what is left.
        if self.session.window(self.stream_id) > 0 and self.transport.pending:
            self.transport.push()
            if not self.transport.pending:
                return
        await self.blocked(event)

    # --- the task ----------------------------------------------------------------------------

    async def run(self) -> None:
        ws = self.ws
        assert ws is not None
        failed = False
        try:
            try:
                await self.conn.worker.asgi_app(self.scope, ws.receive, ws.send)
            except ClientGone:
                pass
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # one stream's failure stays its own
                if not (isinstance(exc, asyncio.CancelledError) and ws.finished):
                    log.error("Exception in ASGI application (WebSocket)", exc_info=exc)
                    failed = True
            ws.app_returned(failed)
            # The close handshake goes on after the application returns (bounded by its
            # timers); the stream stays this connection's until it is over.
            try:
                await asyncio.wait_for(self.done.wait(), 3 * CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                self.transport.abort()
        finally:
            self.conn.stream_done(self)
