"""WebSocket frames (RFC 6455 §5): opcodes, close codes, events, unmasking and the frame writer.

What the parser (websocket_parser.py) and the connection (websocket.py) share: the protocol's
constants, the `WebSocketError` that carries the close code to answer with, the events a client's
frames become (`TextMessage`, `BinaryMessage`, `Ping`, `Pong`, `CloseReceived`), `unmask` for
the client's payloads and the `encode_*` functions that build the server's frames, which are
never masked (§5.1).

It never does I/O: it must never import socket, select, selectors, ssl, threading or asyncio.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from corral.errors import CorralError

# RFC 6455 §5.2: opcodes. 0x3-0x7 are reserved non-control frames, 0xB-0xF reserved control
# frames; receiving any reserved opcode is a protocol error (websocket_parser.py).
CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA

# RFC 6455 §7.4.1 status codes.
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
NO_STATUS = 1005  # §7.1.5: what a Close frame without a body means; never sent
ABNORMAL_CLOSURE = 1006  # §7.1.5: the connection dropped without a Close frame; never sent
INVALID_DATA = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011

# RFC 6455 §7.4.1 and §7.4.2: the codes a Close frame may carry. 1000-2999 are the protocol's
# own: 1000-1003 and 1007-1011 are defined by RFC 6455 and 1012-1014 were registered later in
# the IANA registry it creates (§11.7); 1004 is reserved, 1005, 1006 and 1015 must never be on
# the wire, the rest is unassigned. 3000-3999 are for libraries and frameworks, 4000-4999 for
# private use. Anything else (0-999, 5000 and up) is invalid.
VALID_CLOSE_CODES = frozenset(
    {*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)},
)

# RFC 6455 §5.5: all control frames MUST have a payload length of 125 bytes or less. A Close
# body is a 2-byte code and the reason, so the reason is at most 123 bytes.
MAX_CONTROL_PAYLOAD = 125
MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2

# Frame lengths and close codes are big-endian (§5.2 "network byte order").
UINT16 = struct.Struct("!H")
UINT64 = struct.Struct("!Q")

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024  # uvicorn's and websockets' ws_max_size is 16 MiB


class WebSocketError(CorralError):
    """The client broke RFC 6455; `code` is the close code to send (§7.4.1).

    `events` holds the events decoded from the same `feed` call before the bad frame: they are
    valid and the application may still be given them before the connection fails (§7.1.7).
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.events: list[Event] = []

    def __repr__(self) -> str:
        return f"WebSocketError({self.code}, {self.reason!r})"


# ---------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class TextMessage:
    data: str


@dataclass(frozen=True, slots=True)
class BinaryMessage:
    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    data: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The client's Close frame; `code` is 1005 (NO_STATUS) when the frame had no body."""

    code: int
    reason: str


Event = TextMessage | BinaryMessage | Ping | Pong | CloseReceived


# ---------------------------------------------------------------------------------------------
# RFC 6455 §5.3 Client-to-Server Masking


# Payloads below this size are unmasked through one big-integer XOR, larger ones through four
# strided bytes.translate calls: measured crossover on CPython 3.11 (at 1 MiB, translate takes
# 1.6 ms, the integer route 3.5 ms, a Python loop over the bytes 70 ms).
_TRANSLATE_THRESHOLD = 8192


@functools.cache
def _xor_table(key_byte: int) -> bytes:
    """The 256-byte translation table that XORs every byte with key_byte."""
    return bytes(octet ^ key_byte for octet in range(256))


def unmask(payload: bytes | bytearray, key: bytes) -> bytes:
    """XOR payload with the 4-byte masking key repeated (§5.3), in C, never byte by byte.

    Small payloads: the payload and the repeated key become two integers, XORed once and turned
    back into bytes. Large ones: byte j of every 4 is XORed with key[j] by bytes.translate on
    the strided slice payload[j::4], so four linear C passes instead of integer conversions.
    """
    size = len(payload)
    if size < _TRANSLATE_THRESHOLD:
        if size == 0:
            return b""
        key_stream = key * (size // 4 + 1)
        mixed = int.from_bytes(payload, "little") ^ int.from_bytes(key_stream[:size], "little")
        return mixed.to_bytes(size, "little")
    out = bytearray(size)
    for j in range(4):
        out[j::4] = payload[j::4].translate(_xor_table(key[j]))
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# RFC 6455 §5.2 Base Framing Protocol: the writer (server frames are never masked, §5.1)


def encode_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """One unmasked frame, its length in the shortest form (§5.2)."""
    size = len(payload)
    first = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    if size < 126:
        head = bytes((first, size))
    elif size < 65536:
        head = bytes((first, 126)) + UINT16.pack(size)
    else:
        head = bytes((first, 127)) + UINT64.pack(size)
    return head + payload


def encode_message(
    opcode: int, payload: bytes, fragment_size: int = 0, compressed: bool = False
) -> bytes:
    """A TEXT or BINARY message, in frames of fragment_size bytes when that is not 0 (§5.4).

    compressed sets RSV1 on the first frame (RFC 7692 §6: the payload is already deflated).
    """
    if fragment_size <= 0 or len(payload) <= fragment_size:
        return encode_frame(opcode, payload, rsv1=compressed)
    pieces = [payload[i : i + fragment_size] for i in range(0, len(payload), fragment_size)]
    last = len(pieces) - 1
    return b"".join(
        encode_frame(
            opcode if i == 0 else CONTINUATION, piece, fin=i == last, rsv1=compressed and i == 0
        )
        for i, piece in enumerate(pieces)
    )


def encode_close(code: int = NORMAL_CLOSURE, reason: str = "") -> bytes:
    """A Close frame (§5.5.1); NO_STATUS sends an empty body. ValueError for a bad code."""
    if code == NO_STATUS:
        if reason:
            raise ValueError("a close reason needs a close code")
        return encode_frame(CLOSE, b"")
    if code not in VALID_CLOSE_CODES:
        raise ValueError(f"close code {code} may not be sent")
    body = reason.encode("utf-8")
    if len(body) > MAX_CLOSE_REASON:
        raise ValueError(f"close reason longer than {MAX_CLOSE_REASON} bytes in UTF-8")
    return encode_frame(CLOSE, UINT16.pack(code) + body)


def _check_control(payload: bytes) -> bytes:
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise ValueError(f"ping/pong payload longer than {MAX_CONTROL_PAYLOAD} bytes")
    return payload


def encode_ping(payload: bytes = b"") -> bytes:
    return encode_frame(PING, _check_control(payload))


def encode_pong(payload: bytes = b"") -> bytes:
    """§5.5.3: the answer to a Ping carries the Ping's payload."""
    return encode_frame(PONG, _check_control(payload))
