"""The server end of one WebSocket (RFC 6455): the close handshake (§7) over the frame parser.

`WebSocket` ties the parser (websocket_parser.py) and the frame writer (websocket_frames.py)
to the close handshake: `receive(data)` returns the client's events, the `send_*` methods,
`close` and `fail` return the bytes to write, and `state` says who closed first and what is
still owed. The names of websocket_frames.py and websocket_parser.py are re-exported here, so
that the worker imports one module.

The opening handshake is in websocket_handshake.py, permessage-deflate in
websocket_deflate.py. This module never does I/O: it must never import socket, select,
selectors, ssl, threading or asyncio. The worker feeds it what it reads, writes what it
returns and owns every timer (close handshake timeout, pings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.http.websocket_frames import (
    ABNORMAL_CLOSURE,
    BINARY,
    CLOSE,
    CONTINUATION,
    DEFAULT_MAX_MESSAGE_SIZE,
    GOING_AWAY,
    INTERNAL_ERROR,
    INVALID_DATA,
    MAX_CLOSE_REASON,
    MAX_CONTROL_PAYLOAD,
    MESSAGE_TOO_BIG,
    NO_STATUS,
    NORMAL_CLOSURE,
    PING,
    POLICY_VIOLATION,
    PONG,
    PROTOCOL_ERROR,
    TEXT,
    UNSUPPORTED_DATA,
    VALID_CLOSE_CODES,
    BinaryMessage,
    CloseReceived,
    Event,
    Ping,
    Pong,
    TextMessage,
    WebSocketError,
    encode_close,
    encode_frame,
    encode_message,
    encode_ping,
    encode_pong,
    unmask,
)
from corral.http.websocket_parser import FrameParser

if TYPE_CHECKING:  # websocket_deflate is optional per connection: the type only
    from corral.http.websocket_deflate import PerMessageDeflate

__all__ = [
    "ABNORMAL_CLOSURE",
    "BINARY",
    "CLOSE",
    "CLOSED",
    "CLOSE_RECEIVED",
    "CLOSE_SENT",
    "CONTINUATION",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "GOING_AWAY",
    "INTERNAL_ERROR",
    "INVALID_DATA",
    "MAX_CLOSE_REASON",
    "MAX_CONTROL_PAYLOAD",
    "MESSAGE_TOO_BIG",
    "NORMAL_CLOSURE",
    "NO_STATUS",
    "OPEN",
    "PING",
    "POLICY_VIOLATION",
    "PONG",
    "PROTOCOL_ERROR",
    "TEXT",
    "UNSUPPORTED_DATA",
    "VALID_CLOSE_CODES",
    "BinaryMessage",
    "CloseReceived",
    "Event",
    "FrameParser",
    "Ping",
    "Pong",
    "TextMessage",
    "WebSocket",
    "WebSocketError",
    "encode_close",
    "encode_frame",
    "encode_message",
    "encode_ping",
    "encode_pong",
    "unmask",
]

# ---------------------------------------------------------------------------------------------
# RFC 6455 §7 Closing the Connection

# The states of a connection's close handshake.
OPEN = "open"
CLOSE_SENT = "close-sent"  # we closed first: wait (with a timeout) for the client's Close
CLOSE_RECEIVED = "close-received"  # the client closed first: our answer is due
CLOSED = "closed"  # both Close frames crossed, or the connection failed: close the socket

# What receiving the client's Close does to each state (§5.5.1: the one who sent Close first
# is done once the answer arrives; the one who received it first owes an answer).
_ON_CLOSE_RECEIVED = {OPEN: CLOSE_RECEIVED, CLOSE_SENT: CLOSED}
# What sending our Close does to each state.
_ON_CLOSE_SENT = {OPEN: CLOSE_SENT, CLOSE_RECEIVED: CLOSED}


class WebSocket:
    """The server end of one WebSocket: a parser, the frame writer and the close handshake.

    `receive(data)` returns the client's events; the `send_*` methods, `close` and `fail`
    return the bytes to write. The worker answers each `Ping` with `send_pong(event.data)`,
    and answers a `CloseReceived` with `close()`, which then echoes the client's code
    (§5.5.1). When `state` is CLOSED the worker closes the socket: §7.1.1 wants the server to
    close TCP first. In CLOSE_SENT it waits for the client's Close, bounded by its close
    timeout. After our Close no data frame may be sent (§5.5.1): the `send_*` methods then
    raise RuntimeError.
    """

    __slots__ = ("_peer_close", "deflate", "fragment_size", "parser", "state")

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        fragment_size: int = 0,
        deflate: PerMessageDeflate | None = None,
    ) -> None:
        self.parser = FrameParser(max_message_size, deflate)
        self.deflate = deflate
        self.fragment_size = fragment_size
        self.state = OPEN
        self._peer_close: CloseReceived | None = None

    def receive(self, data: bytes) -> list[Event]:
        """The client's events in data; WebSocketError when it broke the protocol."""
        events = self.parser.feed(data)
        if self.parser.closed and events and isinstance(events[-1], CloseReceived):
            self._peer_close = events[-1]
            self.state = _ON_CLOSE_RECEIVED.get(self.state, self.state)
        return events

    def _check_open(self) -> None:
        if self.state in (CLOSE_SENT, CLOSED):
            raise RuntimeError("cannot send on a WebSocket after its Close frame")

    def send_text(self, data: str) -> bytes:
        return self._message(TEXT, data.encode("utf-8"))

    def send_binary(self, data: bytes) -> bytes:
        return self._message(BINARY, data)

    def _message(self, opcode: int, payload: bytes) -> bytes:
        self._check_open()
        if self.deflate is None or not self.deflate.compresses:
            return encode_message(opcode, payload, self.fragment_size)
        compressed = self.deflate.compress(payload)
        return encode_message(opcode, compressed, self.fragment_size, compressed=True)

    def send_ping(self, data: bytes = b"") -> bytes:
        self._check_open()
        return encode_ping(data)

    def send_pong(self, data: bytes = b"") -> bytes:
        self._check_open()
        return encode_pong(data)

    def close(self, code: int | None = None, reason: str = "") -> bytes:
        """Our Close frame, or b"" when it was already sent.

        code None means: echo the client's code if it closed first (an empty body if its Close
        had none), NORMAL_CLOSURE otherwise.
        """
        if self.state not in _ON_CLOSE_SENT:
            return b""
        if code is None:
            peer = self._peer_close
            code, reason = (peer.code, "") if peer is not None else (NORMAL_CLOSURE, reason)
        frame = encode_close(code, reason)
        self.state = _ON_CLOSE_SENT[self.state]
        return frame

    def fail(self, error: WebSocketError) -> bytes:
        """§7.1.7 Fail the WebSocket Connection: a Close with the error's code, then CLOSED.

        The client's answer is not awaited: the parser ignores everything after the error.
        """
        frame = b"" if self.state in (CLOSE_SENT, CLOSED) else encode_close(error.code)
        self.state = CLOSED
        return frame
