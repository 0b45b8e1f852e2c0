"""The WebSocket frame parser, server side (RFC 6455 §5.2-§5.5), sans-IO.

`FrameParser.feed(data)` turns the client's bytes into events (`TextMessage`, `BinaryMessage`,
`Ping`, `Pong`, `CloseReceived`) or raises `WebSocketError` carrying the close code to answer
with (1002 protocol error, 1007 invalid UTF-8, 1009 message too big) and the events that came
before the bad frame.

It is strict where a lenient reading would let a peer waste memory or make two readers
disagree: a frame's length is judged from its header, before any of its payload is buffered,
so a message over the limit costs us nothing; text is validated as it arrives, fragment by
fragment, so invalid UTF-8 fails before the message ends; a compressed message is inflated
frame by frame against the same limit.

It never does I/O: it must never import socket, select, selectors, ssl, threading or asyncio.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

from corral.http.websocket_frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    DEFAULT_MAX_MESSAGE_SIZE,
    INVALID_DATA,
    MAX_CONTROL_PAYLOAD,
    MESSAGE_TOO_BIG,
    NO_STATUS,
    PING,
    PONG,
    PROTOCOL_ERROR,
    TEXT,
    UINT16,
    UINT64,
    VALID_CLOSE_CODES,
    BinaryMessage,
    CloseReceived,
    Event,
    Ping,
    Pong,
    TextMessage,
    WebSocketError,
    unmask,
)

if TYPE_CHECKING:  # websocket_deflate is optional per connection: the type only
    from corral.http.websocket_deflate import PerMessageDeflate

_KNOWN_OPCODES = frozenset({CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG})


def _close_event(payload: bytes) -> CloseReceived:
    """RFC 6455 §5.5.1: an empty body, or a 2-byte code then a UTF-8 reason."""
    if not payload:
        return CloseReceived(NO_STATUS, "")
    if len(payload) == 1:
        raise WebSocketError(PROTOCOL_ERROR, "close frame with a 1-byte body")
    code = UINT16.unpack_from(payload)[0]
    if code not in VALID_CLOSE_CODES:
        raise WebSocketError(PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError(INVALID_DATA, "close reason is not UTF-8") from None
    return CloseReceived(code, reason)


class FrameParser:
    """Frames from a client, assembled into messages.

    `max_message_size` bounds a whole message (all its fragments); a frame whose header
    announces more is refused with 1009 before its payload is read. `deflate` is the
    permessage-deflate state when it was negotiated: RSV1 then marks a compressed message
    (RFC 7692 §6), inflated frame by frame as it arrives, so that what it inflates to is
    judged against max_message_size before the next frame is even read; without deflate any
    RSV bit is a protocol error (§5.2). After a Close frame the parser ignores everything
    (§5.5.1: the client sends nothing after it).

    State per connection: the unparsed bytes (at most one frame header and payload, so bounded
    by max_message_size plus 14, plus deflate's worst-case expansion for a compressed frame),
    the fragments of the current message (bounded by max_message_size once inflated) and one
    incremental UTF-8 decoder.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_compressed",
        "_decoder",
        "_fragments",
        "_message_opcode",
        "_message_size",
        "_text",
        "_wire_limit",
        "_wire_size",
        "deflate",
        "max_message_size",
        "rsv_allowed",
    )

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        deflate: PerMessageDeflate | None = None,
    ) -> None:
        self.max_message_size = max_message_size
        self.deflate = deflate
        self.rsv_allowed = 0x00 if deflate is None else 0x40
        self._compressed = False
        self._buffer = bytearray()
        self._closed = False
        self._message_opcode = 0  # TEXT or BINARY while a fragmented message is open
        self._message_size = 0  # bytes of the current message, inflated if it was compressed
        # A compressed message's bytes as sent: a frame is buffered whole before it is
        # inflated, so these are bounded too, by the size deflate may expand data to at worst
        # (zlib's compressBound is below this).
        self._wire_size = 0
        self._wire_limit = max_message_size + (max_message_size >> 10) + 64
        self._fragments: list[bytes] = []
        self._text: list[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")

    @property
    def closed(self) -> bool:
        """Whether the client's Close frame has been parsed."""
        return self._closed

    def feed(self, data: bytes) -> list[Event]:
        """Parse what data completes; return the events, or raise WebSocketError."""
        if self._closed:
            return []
        buffer = self._buffer
        # Nothing left over from the last read (the usual case): parse data where it is,
        # and keep only its unfinished tail, instead of copying it all into the buffer.
        source: bytes | bytearray = buffer if buffer else data
        if buffer:
            buffer += data
        events: list[Event] = []
        pos = 0
        try:
            while True:
                used = self._parse_frame(source, pos, events)
                if used == 0:
                    break
                pos += used
                if self._closed:
                    buffer.clear()
                    return events
        except WebSocketError as exc:
            self._closed = True
            buffer.clear()
            exc.events = events
            raise
        if source is buffer:
            del buffer[:pos]
        elif pos < len(data):
            buffer += data[pos:] if pos else data
        return events

    def _parse_frame(self, buffer: bytes | bytearray, pos: int, events: list[Event]) -> int:
        """Parse one frame at pos; return the bytes it used, or 0 if it is not all here.

        The header is checked as soon as its fields are here, even when the payload is not,
        so a bad or oversized frame fails before we wait for (or buffer) its payload.
        """
        available = len(buffer) - pos
        if available < 2:
            return 0
        first, second = buffer[pos], buffer[pos + 1]
        opcode = first & 0x0F
        fin = first & 0x80
        self._check_first_byte(first, opcode, fin)
        # §5.1: a server MUST close the connection upon receiving an unmasked frame.
        if not second & 0x80:
            raise WebSocketError(PROTOCOL_ERROR, "client frame is not masked")
        length = second & 0x7F
        header = 6  # 2 bytes, then the 4-byte masking key after the extended length if any
        if length == 126:
            header = 8
            if available < 4:
                return 0
            length = UINT16.unpack_from(buffer, pos + 2)[0]
            # §5.2: the minimal number of bytes MUST be used to encode the length.
            if length < 126:
                raise WebSocketError(PROTOCOL_ERROR, "frame length not minimally encoded")
        elif length == 127:
            header = 14
            if available < 10:
                return 0
            length = UINT64.unpack_from(buffer, pos + 2)[0]
            # §5.2: the most significant bit of a 64-bit length MUST be 0.
            if length >> 63 or length < 65536:
                raise WebSocketError(PROTOCOL_ERROR, "frame length not minimally encoded")
        self._check_length(first, opcode, length)
        if available < header + length:
            return 0
        start = pos + header
        payload = unmask(buffer[start : start + length], bytes(buffer[start - 4 : start]))
        if opcode >= CLOSE:
            self._control(opcode, payload, events)
        else:
            self._data(opcode, first, payload, events)
        return header + length

    def _check_length(self, first: int, opcode: int, length: int) -> None:
        """Refuse a frame from its announced length, before its payload is buffered."""
        if opcode >= CLOSE:
            # §5.5: control frames have at most 125 bytes of payload.
            if length > MAX_CONTROL_PAYLOAD:
                raise WebSocketError(PROTOCOL_ERROR, "control frame longer than 125 bytes")
        elif first & 0x40 if opcode else self._compressed:
            # A compressed frame: its inflated size is judged as it inflates.
            if self._wire_size + length > self._wire_limit:
                raise WebSocketError(MESSAGE_TOO_BIG, "message larger than the maximum size")
        elif self._message_size + length > self.max_message_size:
            raise WebSocketError(MESSAGE_TOO_BIG, "message larger than the maximum size")

    def _check_first_byte(self, first: int, opcode: int, fin: int) -> None:
        # §5.2: RSV1-3 MUST be 0 unless an extension was negotiated that defines them.
        if first & 0x70 & ~self.rsv_allowed:
            raise WebSocketError(PROTOCOL_ERROR, "reserved bits set")
        if opcode not in _KNOWN_OPCODES:
            raise WebSocketError(PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if opcode >= CLOSE:
            # §5.5: control frames MUST NOT be fragmented. RFC 7692 §6.1: an extension's RSV1
            # means nothing on a control frame.
            if not fin:
                raise WebSocketError(PROTOCOL_ERROR, "fragmented control frame")
            if first & 0x70:
                raise WebSocketError(PROTOCOL_ERROR, "reserved bits set on a control frame")
        # §5.4: a continuation belongs to an open message; a new message cannot start while
        # one is open (control frames may come in between, handled above).
        elif opcode == CONTINUATION:
            if not self._message_opcode:
                raise WebSocketError(PROTOCOL_ERROR, "continuation frame without a message")
            # RFC 7692 §6.1: RSV1 marks the first frame of a compressed message only.
            if first & 0x40:
                raise WebSocketError(PROTOCOL_ERROR, "RSV1 set on a continuation frame")
        elif self._message_opcode:
            raise WebSocketError(PROTOCOL_ERROR, "new message before the last one ended")

    def _control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        if opcode == PING:
            events.append(Ping(payload))
        elif opcode == PONG:
            events.append(Pong(payload))
        else:
            events.append(_close_event(payload))
            self._closed = True

    def _data(self, opcode: int, first: int, payload: bytes, events: list[Event]) -> None:
        fin = first & 0x80
        if opcode != CONTINUATION:
            self._message_opcode = opcode
            self._compressed = bool(first & 0x40)
        if self._compressed:
            assert self.deflate is not None  # RSV1 is refused without it
            self._wire_size += len(payload)
            # RFC 7692 §6.2, inflated now: a small frame that would inflate past the limit
            # fails (1009) with at most the limit inflated, and the next frame is not awaited.
            budget = self.max_message_size - self._message_size
            payload = self.deflate.inflate(payload, bool(fin), budget)
        if self._message_opcode == TEXT:
            # §8.1: invalid UTF-8 fails the connection (1007), checked per fragment so that a
            # long bad message fails early; a character may straddle two fragments.
            try:
                self._text.append(self._decoder.decode(payload, bool(fin)))
            except UnicodeDecodeError:
                raise WebSocketError(INVALID_DATA, "text message is not UTF-8") from None
        else:
            self._fragments.append(payload)
        self._message_size += len(payload)
        if not fin:
            return
        if self._message_opcode == TEXT:
            events.append(TextMessage("".join(self._text)))
            self._text = []
        else:
            parts = self._fragments
            events.append(BinaryMessage(parts[0] if len(parts) == 1 else b"".join(parts)))
            self._fragments = []
        self._message_opcode = 0
        self._message_size = 0
        self._wire_size = 0
