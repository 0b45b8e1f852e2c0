"""WebSocket connections of the asgi worker (ASGI WebSocket spec 2.5 over RFC 6455).

`WebSocketSession` is the receive/send pair handed to the application for a WebSocket scope,
and the connection's reader once the handshake is accepted. The framing, the close handshake,
the opening handshake and permessage-deflate are the sans-IO modules in http/ (websocket.py,
websocket_handshake.py, websocket_deflate.py); this module only moves their bytes and events
between the socket and the application, and owns the timers: the close handshake's timeout
and the server's pings. What it must never do: parse frames itself, send a frame the close
handshake no longer allows, or hold more than `websocket_max_queue` messages for an
application that does not receive them (it stops reading the socket instead).

An application may refuse the handshake with a whole HTTP response instead of accepting
(the `websocket.http.response` extension); that response is framed by the HTTP exchange of
adapters/asgi.py, as any other response.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol, cast

from corral.adapters.asgi import AsgiTransport, ClientGone, Exchange, Message
from corral.http.parser import Request
from corral.http.websocket import (
    ABNORMAL_CLOSURE,
    CLOSED,
    GOING_AWAY,
    INTERNAL_ERROR,
    NORMAL_CLOSURE,
    OPEN,
    BinaryMessage,
    CloseReceived,
    Ping,
    Pong,
    TextMessage,
    WebSocket,
    WebSocketError,
)
from corral.http.websocket_deflate import PerMessageDeflate, negotiate_deflate
from corral.http.websocket_handshake import Handshake, accept_response
from corral.http.writer import error_response

if TYPE_CHECKING:
    from corral.workers.asgi import AsgiWorker
    from corral.workers.asgi_h2_stream import H2Stream

log = logging.getLogger("corral.error")

CLOSE_TIMEOUT = 5.0  # seconds to wait for the client's Close after ours (RFC 6455 §7.1.1)
DENIAL = "websocket.http.response"  # the ASGI extension that refuses with an HTTP response

# What the HTTP exchange needs to know of a handshake request to frame the denial response:
# check_upgrade only lets through GET, HTTP/1.1 and no body.
_HANDSHAKE_REQUEST = Request("GET", "/", "/", "", "HTTP/1.1", [], None, False, False, False)


class WebSocketTransport(Protocol):
    """What a WebSocket session moves its bytes through: an HTTP/1.1 connection
    (asgi_http.HttpProtocol) or an HTTP/2 stream (asgi_h2_websocket.StreamTransport)."""

    worker: AsgiWorker
    client: tuple[str, int] | None
    reading: bool
    transport_gone: bool

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    @property
    def must_drain(self) -> bool: ...

    def pause(self) -> None: ...

    def resume_reading(self) -> None: ...

    def upgraded(self, session: WebSocketSession) -> None: ...

    def close_transport(self) -> None: ...

    def abort(self) -> None: ...


def websocket_scope(http_scope: dict[str, Any], handshake: Handshake) -> dict[str, Any]:
    scope = dict(http_scope)
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if http_scope["scheme"] == "https" else "ws"
    scope["subprotocols"] = list(handshake.subprotocols)
    scope.pop("method", None)
    # The HTTP scope's own extensions (pathsend, trailers...) mean nothing here; the
    # connection's (tls) do.
    extensions = {
        name: value
        for name, value in (http_scope.get("extensions") or {}).items()
        if not name.startswith("http.")
    }
    extensions[DENIAL] = {}
    scope["extensions"] = extensions
    return scope


class WebSocketSession:
    """One WebSocket's ASGI side: messages in order, the handshake, the close handshake."""

    def __init__(self, protocol: WebSocketTransport, handshake: Handshake, max_size: int) -> None:
        self.protocol = protocol
        self.handshake = handshake
        self.max_size = max_size
        settings = protocol.worker.settings
        self.max_queue = settings.websocket_max_queue
        self.ping_interval = float(settings.websocket_ping_interval)
        self.ping_timeout = float(settings.websocket_ping_timeout)
        self.deflate_allowed = settings.websocket_per_message_deflate
        self.socket = WebSocket(max_message_size=max_size)
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.accepted = False
        self.finished = False  # closed, refused or gone: nothing more may be sent
        self.told_disconnect = False
        self.closing = False  # our Close was out before the bytes being read came
        # The HTTP response refusing the handshake.
        self.denial: Exchange | H2Stream | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.ping_timer: asyncio.TimerHandle | None = None
        self.abort_timer: asyncio.TimerHandle | None = None
        self.last_read = 0.0  # loop time of the last bytes from the client
        # Bytes came since our last Ping: a flag, not a time comparison, because uvloop's
        # clock is cached per iteration in milliseconds and an answer can carry the same time.
        self.heard = False
        self.ping_sent: float | None = None  # loop time of the Ping awaiting an answer

    # --- the application's side ------------------------------------------------------------

    async def receive(self) -> Message:
        message = await self.inbox.get()
        # The application caught up (with half the queue as slack, so that a flood does not
        # pause and resume the socket at every message): read the socket again (see `read`).
        reading = self.protocol.reading
        if not reading and self.accepted and self.inbox.qsize() <= self.max_queue // 2:
            self.protocol.resume_reading()
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.finished:
            raise ClientGone("the WebSocket is closed")
        if self.denial is not None and kind != f"{DENIAL}.body":
            raise RuntimeError(f"{kind!r} after {DENIAL}.start")
        handler = _SENDERS.get(kind)
        if handler is None:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} for websocket")
        await handler(self, message)

    async def send_accept(self, message: Message) -> None:
        if self.accepted:
            raise RuntimeError("websocket.accept sent twice")
        headers = [
            (bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
            for k, v in message.get("headers", ())
        ]
        deflate, extensions = self.negotiate()
        try:
            self.accept_head(message.get("subprotocol"), extensions, headers)
        except ValueError as exc:
            raise RuntimeError(str(exc)) from None
        self.socket = WebSocket(max_message_size=self.max_size, deflate=deflate)
        self.accepted = True
        self.last_read = asyncio.get_running_loop().time()
        self.heard = True
        if self.ping_interval > 0:
            self.arm_ping(self.ping_interval)
        self.protocol.upgraded(self)

    # --- what differs between HTTP/1.1 and HTTP/2 (asgi_h2_websocket.py overrides these) -----

    def accept_head(self, subprotocol: str | None, extensions: str, headers: Any) -> None:
        """Accept the handshake: the 101 head (ValueError for a header that cannot be sent)."""
        self.protocol.write(accept_response(self.handshake, subprotocol, extensions, headers))

    def refuse(self, status: int) -> None:
        """Refuse the handshake with a whole error response."""
        self.protocol.write(error_response(status))

    def make_denial(self) -> Exchange | H2Stream:
        """The HTTP exchange that frames a `websocket.http.response` refusal."""
        return Exchange(cast(AsgiTransport, self.protocol), _HANDSHAKE_REQUEST, False)

    def denial_failed(self) -> None:
        """The application returned in the middle of its refusal: 500 if its head is not out."""
        assert isinstance(self.denial, Exchange)
        self.protocol.write(self.denial.error_answer(500) or b"")

    def negotiate(self) -> tuple[PerMessageDeflate | None, str]:
        """permessage-deflate when it is on and offered (RFC 7692 §5): windows of at most
        2**15 bytes each way, inflated messages bounded by the maximum message size."""
        if not self.deflate_allowed:
            return None, ""
        params = negotiate_deflate(self.handshake.extensions)
        if params is None:
            return None, ""
        return PerMessageDeflate(params, self.max_size), params.response()

    async def send_message(self, message: Message) -> None:
        if not self.accepted:
            raise RuntimeError("websocket.send before websocket.accept")
        if self.socket.state != OPEN:
            raise ClientGone("the WebSocket is closing")
        text, data = message.get("text"), message.get("bytes")
        if (text is None) == (data is None):
            raise RuntimeError("websocket.send needs exactly one of text and bytes")
        if text is not None:
            self.protocol.write(self.socket.send_text(text))
        elif data is not None:
            self.protocol.write(self.socket.send_binary(bytes(data)))
        await self.protocol.drain()

    async def send_close(self, message: Message) -> None:
        if not self.accepted:
            # Closing before accepting refuses the handshake with 403 (ASGI spec).
            self.refuse(403)
            self.disconnect(NORMAL_CLOSURE)
            self.end()
            return
        code, reason = message.get("code", NORMAL_CLOSURE), message.get("reason") or ""
        self.protocol.write(self.socket.close(code, reason))
        self.after_frames()

    async def send_denial_start(self, message: Message) -> None:
        """The `websocket.http.response` extension: refuse with this status and headers."""
        if self.accepted:
            raise RuntimeError(f"{DENIAL}.start after websocket.accept")
        status = message.get("status")
        if type(status) is not int or not 200 <= status <= 999:
            raise RuntimeError(f"invalid status {status!r} for {DENIAL}.start")
        denial = self.make_denial()
        headers = message.get("headers", ())
        await denial.send({"type": "http.response.start", "status": status, "headers": headers})
        self.denial = denial

    async def send_denial_body(self, message: Message) -> None:
        denial = self.denial
        if denial is None:
            raise RuntimeError(f"{DENIAL}.body before {DENIAL}.start")
        body = {"type": "http.response.body", "body": message.get("body", b"")}
        body["more_body"] = bool(message.get("more_body", False))
        try:
            await denial.send(body)
        finally:
            if denial.ended:  # the whole response is written: the connection ends with it
                self.disconnect(NORMAL_CLOSURE)
                self.end()

    # --- the socket's side -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_read = asyncio.get_running_loop().time()
        self.heard = True
        try:
            self.read(data)
        except Exception:
            log.exception("Unexpected error on the WebSocket from %s", self.protocol.client)
            self.disconnect(ABNORMAL_CLOSURE)
            self.end()

    def read(self, data: bytes) -> None:
        # Messages are dropped only when our Close was out before these bytes came: those
        # the client sent before its own Close, in the same read, are the application's.
        self.closing = self.socket.state != OPEN
        try:
            events = self.socket.receive(data)
        except WebSocketError as exc:
            for event in exc.events:
                _RECEIVERS[type(event)](self, event)
            log.info("WebSocket from %s closed: %s", self.protocol.client, exc.reason)
            self.protocol.write(self.socket.fail(exc))
            self.disconnect(exc.code)
            self.end()
            return
        for event in events:
            _RECEIVERS[type(event)](self, event)
        # Read backpressure: an application that does not receive makes us stop reading, so
        # the client's bytes wait in its socket buffers, not in our memory. One read may
        # bring a few messages past the limit; no further read comes until it catches up.
        if self.inbox.qsize() >= self.max_queue and self.socket.state == OPEN:
            self.protocol.pause()
        self.after_frames()

    def on_text(self, event: TextMessage) -> None:
        if not self.closing:  # after our Close, only the client's Close matters
            self.inbox.put_nowait({"type": "websocket.receive", "text": event.data})

    def on_binary(self, event: BinaryMessage) -> None:
        if not self.closing:  # (a client flooding then is not held in memory)
            self.inbox.put_nowait({"type": "websocket.receive", "bytes": event.data})

    def on_ping(self, event: Ping) -> None:
        # After our Close only a Close may follow; and a client that sends Pings but does not
        # read our Pongs gets none while the transport is full (RFC 6455 §5.5.3 lets a Pong
        # answer only the latest Ping), so its Pings cannot fill our memory.
        if self.socket.state == OPEN and not self.protocol.must_drain:
            self.protocol.write(self.socket.send_pong(event.data))

    def on_pong(self, event: Pong) -> None:
        """An answer to our Ping; `data_received` has already noted the client is there."""

    def on_close(self, event: CloseReceived) -> None:
        self.disconnect(event.code, event.reason)
        self.protocol.write(self.socket.close())  # answer with the same code (§5.5.1)

    def disconnect(self, code: int, reason: str = "") -> None:
        """Tell the application the WebSocket is over, once (ASGI: websocket.disconnect)."""
        if not self.told_disconnect:
            self.told_disconnect = True
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})

    def after_frames(self) -> None:
        """Close the socket once both Close frames have crossed; wait a bounded time for the
        client's after ours."""
        if self.socket.state == CLOSED:
            self.end()
        elif self.socket.state != OPEN and self.close_timer is None:
            # Our Close is out: read again even if the application is behind, since the
            # client's answer must be heard; the inbox is no longer growing with messages.
            self.protocol.resume_reading()
            loop = asyncio.get_running_loop()
            self.close_timer = loop.call_later(CLOSE_TIMEOUT, self.end)

    # --- server pings --------------------------------------------------------------------

    def arm_ping(self, delay: float) -> None:
        self.ping_timer = asyncio.get_running_loop().call_later(delay, self.ping_due)

    def ping_due(self) -> None:
        """websocket_ping_interval seconds without hearing from the client: Ping it, then
        close with 1011 if nothing comes back within websocket_ping_timeout."""
        self.ping_timer = None
        if self.finished or self.socket.state != OPEN:
            return
        if not self.protocol.reading:
            # Paused by us for an application that is behind: the client cannot be heard,
            # which says nothing about it.
            self.ping_sent = None
            self.arm_ping(self.ping_interval)
            return
        if self.ping_sent is not None:
            if not self.heard:
                self.ping_unanswered()
                return
            self.ping_sent = None
        now = asyncio.get_running_loop().time()
        quiet = now - self.last_read
        if quiet < self.ping_interval:
            self.arm_ping(self.ping_interval - quiet)
            return
        self.protocol.write(self.socket.send_ping(b""))
        if self.ping_timeout > 0:
            self.ping_sent = now
            self.heard = False
            self.arm_ping(self.ping_timeout)
        else:
            self.arm_ping(self.ping_interval)

    def ping_unanswered(self) -> None:
        log.info(
            "WebSocket from %s closed: no answer to a ping in %g s",
            self.protocol.client,
            self.ping_timeout,
        )
        self.protocol.write(self.socket.close(INTERNAL_ERROR, "ping timeout"))
        self.disconnect(INTERNAL_ERROR, "ping timeout")
        self.end()

    # --- the end -----------------------------------------------------------------------------

    def going_away(self) -> None:
        """The worker is stopping: close 1001 once (RFC 6455 §7.4.1), then the close timeout;
        the application hears of it as a disconnect."""
        if self.accepted and not self.finished and self.socket.state == OPEN:
            self.protocol.write(self.socket.close(GOING_AWAY, ""))
            self.disconnect(GOING_AWAY)
            self.after_frames()

    def connection_lost(self) -> None:
        self.cancel_timers()
        if not self.finished:
            self.finished = True
            self.disconnect(ABNORMAL_CLOSURE)

    def end(self) -> None:
        """Close the socket; one that does not flush within the close timeout (a client that
        reads nothing) is aborted."""
        self.disconnect(ABNORMAL_CLOSURE)  # an application still receiving hears of it (once)
        self.finished = True
        self.cancel_timers()
        self.protocol.close_transport()
        if not self.protocol.transport_gone:
            loop = asyncio.get_running_loop()
            self.abort_timer = loop.call_later(CLOSE_TIMEOUT, self.protocol.abort)

    def cancel_timers(self) -> None:
        for timer in (self.close_timer, self.ping_timer, self.abort_timer):
            if timer is not None:
                timer.cancel()
        self.close_timer = self.ping_timer = self.abort_timer = None

    def app_returned(self, failed: bool) -> None:
        """The application's coroutine ended. Before accepting, that refuses the handshake
        (500 when it raised, 403 otherwise); after, the WebSocket is closed (1011 when it
        raised, 1000 otherwise) unless it already was."""
        if self.finished:
            return
        if not self.accepted:
            if self.denial is not None:  # an unfinished denial: 500 if its head is not out
                self.denial_failed()
            else:
                self.refuse(500 if failed else 403)
            self.disconnect(NORMAL_CLOSURE)
            self.end()
            return
        self.protocol.write(self.socket.close(INTERNAL_ERROR if failed else NORMAL_CLOSURE, ""))
        self.after_frames()


_SENDERS = {
    "websocket.accept": WebSocketSession.send_accept,
    "websocket.send": WebSocketSession.send_message,
    "websocket.close": WebSocketSession.send_close,
    f"{DENIAL}.start": WebSocketSession.send_denial_start,
    f"{DENIAL}.body": WebSocketSession.send_denial_body,
}

_RECEIVERS: dict[type, Any] = {
    TextMessage: WebSocketSession.on_text,
    BinaryMessage: WebSocketSession.on_binary,
    Ping: WebSocketSession.on_ping,
    Pong: WebSocketSession.on_pong,
    CloseReceived: WebSocketSession.on_close,
}
