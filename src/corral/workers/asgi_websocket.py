"""WebSocket connections of the asgi worker (ASGI WebSocket spec 2.5 over RFC 6455).

`WebSocketSession` is the receive/send pair handed to the application for a WebSocket scope,
and the connection's reader once the handshake is accepted. The framing, the close handshake
and the opening handshake are the sans-IO modules in http/ (websocket.py,
websocket_handshake.py); this module only moves their bytes and events between the socket and
the application. What it must never do: parse frames itself, or send a frame the close
handshake no longer allows.

Not yet here (issue 11): permessage-deflate negotiation, server pings, the
`websocket.http.response` extension, and a bounded receive queue with read backpressure.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from corral.adapters.asgi import ClientGone, Message
from corral.http.websocket import (
    CLOSED,
    BinaryMessage,
    CloseReceived,
    Ping,
    TextMessage,
    WebSocket,
    WebSocketError,
)
from corral.http.websocket_handshake import Handshake, accept_response
from corral.http.writer import error_response

if TYPE_CHECKING:
    from corral.workers.asgi_http import HttpProtocol

log = logging.getLogger("corral.error")

CLOSE_TIMEOUT = 5.0  # seconds to wait for the client's Close after ours (RFC 6455 §7.1.1)
_ABNORMAL = 1006


def websocket_scope(http_scope: dict[str, Any], handshake: Handshake) -> dict[str, Any]:
    scope = dict(http_scope)
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if http_scope["scheme"] == "https" else "ws"
    scope["subprotocols"] = list(handshake.subprotocols)
    scope.pop("method", None)
    return scope


class WebSocketSession:
    """One WebSocket's ASGI side: messages in order, the handshake, the close handshake."""

    def __init__(self, protocol: HttpProtocol, handshake: Handshake, max_size: int) -> None:
        self.protocol = protocol
        self.handshake = handshake
        self.socket = WebSocket(max_message_size=max_size)
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.accepted = False
        self.finished = False  # closed, refused or gone: nothing more may be sent
        self.close_timer: asyncio.TimerHandle | None = None

    # --- the application's side ------------------------------------------------------------

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.finished:
            raise ClientGone("the WebSocket is closed")
        if kind == "websocket.accept":
            if self.accepted:
                raise RuntimeError("websocket.accept sent twice")
            headers = [
                (bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
                for k, v in message.get("headers", ())
            ]
            try:
                head = accept_response(self.handshake, message.get("subprotocol"), "", headers)
            except ValueError as exc:
                raise RuntimeError(str(exc)) from None
            self.accepted = True
            self.protocol.write(head)
            self.protocol.upgraded(self)
        elif kind == "websocket.send":
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            if self.socket.state != "open":
                raise ClientGone("the WebSocket is closing")
            text, data = message.get("text"), message.get("bytes")
            if (text is None) == (data is None):
                raise RuntimeError("websocket.send needs exactly one of text and bytes")
            if text is not None:
                self.protocol.write(self.socket.send_text(text))
            elif data is not None:
                self.protocol.write(self.socket.send_binary(bytes(data)))
            await self.protocol.drain()
        elif kind == "websocket.close":
            if not self.accepted:
                # Closing before accepting refuses the handshake with 403 (ASGI spec).
                self.protocol.write(error_response(403))
                self.end()
                return
            code, reason = message.get("code", 1000), message.get("reason") or ""
            self.protocol.write(self.socket.close(code, reason))
            self.after_frames()
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} for websocket")

    # --- the socket's side -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            self.read(data)
        except Exception:
            log.exception("Unexpected error on the WebSocket from %s", self.protocol.client)
            self.connection_lost()
            self.end()

    def read(self, data: bytes) -> None:
        try:
            events = self.socket.receive(data)
        except WebSocketError as exc:
            for event in exc.events:
                self.deliver(event)
            log.info("WebSocket from %s closed: %s", self.protocol.client, exc.reason)
            self.protocol.write(self.socket.fail(exc))
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": exc.code, "reason": ""})
            self.end()
            return
        for event in events:
            self.deliver(event)
        self.after_frames()

    def deliver(self, event: object) -> None:
        if isinstance(event, TextMessage):
            self.inbox.put_nowait({"type": "websocket.receive", "text": event.data})
        elif isinstance(event, BinaryMessage):
            self.inbox.put_nowait({"type": "websocket.receive", "bytes": event.data})
        elif isinstance(event, Ping):
            if self.socket.state == "open":  # after our Close only a Close may follow
                self.protocol.write(self.socket.send_pong(event.data))
        elif isinstance(event, CloseReceived):
            message = {"type": "websocket.disconnect", "code": event.code, "reason": event.reason}
            self.inbox.put_nowait(message)
            self.protocol.write(self.socket.close())  # answer with the same code (§5.5.1)

    def after_frames(self) -> None:
        """Close the socket once both Close frames have crossed; wait a bounded time for the
        client's after ours."""
        if self.socket.state == CLOSED:
            self.end()
        elif self.socket.state != "open" and self.close_timer is None:
            loop = asyncio.get_running_loop()
            self.close_timer = loop.call_later(CLOSE_TIMEOUT, self.end)

    def going_away(self) -> None:
        """The worker is stopping: close 1001 once (RFC 6455 §7.4.1), then the close timeout;
        the application hears of it as a disconnect."""
        if self.accepted and not self.finished and self.socket.state == "open":
            self.protocol.write(self.socket.close(1001, ""))
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1001, "reason": ""})
            self.after_frames()

    def connection_lost(self) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if not self.finished:
            self.finished = True
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": _ABNORMAL, "reason": ""})

    def end(self) -> None:
        self.finished = True
        if self.close_timer is not None:
            self.close_timer.cancel()
        self.protocol.close_transport()

    def app_returned(self, failed: bool) -> None:
        """The application's coroutine ended. Before accepting, that refuses the handshake
        (500 when it raised, 403 otherwise); after, the WebSocket is closed (1011 when it
        raised, 1000 otherwise) unless it already was."""
        if self.finished:
            return
        if not self.accepted:
            self.protocol.write(error_response(500 if failed else 403))
            self.end()
            return
        self.protocol.write(self.socket.close(1011 if failed else 1000, ""))
        self.after_frames()
