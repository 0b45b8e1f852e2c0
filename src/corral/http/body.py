"""Decode a request body framed by Content-Length or by the chunked transfer coding.

A decoder is fed the bytes that follow a request head, split however the network split them,
and hands back the body bytes decoded so far plus whatever came after the end of the body (the
next pipelined request). Bad framing raises `ProtocolError` with its status, and so does a
body larger than `limit_request_body` (413): `decoder_for` refuses a Content-Length above it
before any body byte is read, and a chunked body is refused at the chunk-size line that would
take it past the limit, before that chunk's data. Every worker class decodes bodies here, so
the limit holds for all of them.

Sans-IO: it never reads and must never import socket, select, selectors, ssl, threading or
asyncio. Each `feed` is linear in its input: body bytes are sliced out of the data once and
never accumulated here; only an unfinished chunk-size or trailer line is kept, and that is
capped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NoReturn

from corral.errors import ProtocolError
from corral.http.grammar import BWS, PARAMETER_VALUE, TOKEN
from corral.http.parser import Request, parse_field_line


class ContentLengthDecoder:
    """A body of exactly `length` bytes (RFC 9112 §6.2)."""

    __slots__ = ("done", "remaining")

    def __init__(self, length: int) -> None:
        self.remaining = length
        self.done = length == 0

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Return (body bytes in data, bytes after the body)."""
        remaining = self.remaining
        if len(data) < remaining:
            self.remaining = remaining - len(data)
            return data, b""
        self.remaining = 0
        self.done = True
        if len(data) == remaining:
            return data, b""
        return data[:remaining], data[remaining:]


# RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; chunk-size = 1*HEXDIG,
# which we bound to 16 digits (64 bits) including leading zeros.
# RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
# chunk-ext-name = token, chunk-ext-val = token / quoted-string (RFC 9110 §5.6.4). Whitespace
# is allowed only around ";" and "=": "5 " or " 5" is not a chunk size.
_CHUNK_EXT = rf"{BWS};{BWS}{TOKEN}(?:{BWS}={BWS}{PARAMETER_VALUE})?"
_CHUNK_LINE = re.compile(rf"([0-9A-Fa-f]{{1,16}})(?:{_CHUNK_EXT})*".encode())
_HEX_PREFIX = re.compile(rb"[0-9A-Fa-f]*")
_EXT_START = re.compile(rf"{BWS};".encode())
MAX_CHUNK_SIZE_DIGITS = 16

# RFC 9110 §6.5.1: trailers must not carry fields that frame, route, authenticate or modify
# the request, or describe its content. A recipient must not merge them into the header
# section; we refuse the request instead, as a smuggling attempt is the likely reason.
FORBIDDEN_TRAILERS = frozenset(
    {
        # message framing (RFC 9112 §6)
        "CONTENT-LENGTH",
        "TRANSFER-ENCODING",
        "TRAILER",
        # routing (RFC 9110 §7.2) and connection management (RFC 9110 §7.6)
        "HOST",
        "CONNECTION",
        "KEEP-ALIVE",
        "PROXY-CONNECTION",
        "TE",
        "UPGRADE",
        # request modifiers (RFC 9110 §10.1, §13.1, §14.2)
        "EXPECT",
        "MAX-FORWARDS",
        "RANGE",
        "IF-MATCH",
        "IF-NONE-MATCH",
        "IF-MODIFIED-SINCE",
        "IF-UNMODIFIED-SINCE",
        "IF-RANGE",
        "CACHE-CONTROL",
        "PRAGMA",
        # authentication (RFC 9110 §11) and state
        "AUTHORIZATION",
        "PROXY-AUTHORIZATION",
        "COOKIE",
        # content description (RFC 9110 §8)
        "CONTENT-TYPE",
        "CONTENT-ENCODING",
        "CONTENT-RANGE",
    }
)

# Decoder states; each names the step that consumes the next bytes (see _STEPS).
_SIZE, _DATA, _DATA_CR, _DATA_LF, _TRAILER = range(5)


class ChunkedDecoder:
    """A body in the chunked transfer coding (RFC 9112 §7.1), with its trailer section."""

    __slots__ = (
        "_max_body",
        "_max_size_line",
        "_max_trailer_fields",
        "_max_trailer_size",
        "_partial",
        "_remaining",
        "_size",
        "_state",
        "_trailer_size",
        "done",
        "trailers",
    )

    def __init__(
        self,
        max_chunk_ext: int = 4096,
        max_trailer_size: int = 8192,
        max_trailer_fields: int = 100,
        max_body: int = 0,
    ) -> None:
        self.done = False
        self.trailers: list[tuple[str, str]] = []
        self._state = _SIZE
        self._remaining = 0
        self._partial = bytearray()  # an unfinished size or trailer line, capped
        self._max_size_line = MAX_CHUNK_SIZE_DIGITS + max_chunk_ext
        self._max_trailer_size = max_trailer_size
        self._max_trailer_fields = max_trailer_fields
        self._trailer_size = 0
        self._max_body = max_body  # limit_request_body; 0: no limit
        self._size = 0  # body bytes announced by the chunk sizes so far

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Return (body bytes decoded from data, bytes after the body once done)."""
        if self.done:
            return b"", data
        out: list[bytes] = []
        pos = 0
        end = len(data)
        while pos < end:
            pos = _STEPS[self._state](self, data, pos, out)
            if self.done:
                return b"".join(out), data[pos:]
        return b"".join(out), b""

    def _take_line(
        self, data: bytes, pos: int, cap: int, status: int, reason: str
    ) -> tuple[bytes | None, int]:
        """Return (line without CRLF, position after it), or (None, len(data)) when the line
        is unfinished. A line longer than cap raises ProtocolError(status, reason)."""
        partial = self._partial
        # Look no further than where the LF of a line of cap bytes could be.
        lf = data.find(b"\n", pos, pos + cap + 2 - len(partial))
        if lf < 0:
            # Keep one byte of slack for the CR of a CRLF split across two feeds.
            if len(partial) + len(data) - pos > cap + 1:
                raise ProtocolError(status, reason)
            partial += data[pos:]
            return None, len(data)
        if partial:
            partial += data[pos:lf]
            line = bytes(partial)
            partial.clear()
        else:
            line = data[pos:lf]
        # RFC 9112 §2.2 + §7.1: chunk lines end in CRLF; a bare LF is not accepted.
        if not line.endswith(b"\r"):
            raise ProtocolError(400, "chunk line not terminated by CRLF")
        return line[:-1], lf + 1

    def _step_size(self, data: bytes, pos: int, out: list[bytes]) -> int:
        line, pos = self._take_line(data, pos, self._max_size_line, 400, "chunk size line too long")
        if line is None:
            return pos
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            _reject_size_line(line)
        # The line cap allows the longest size; the extension alone has its own cap.
        if len(line) - match.end(1) > self._max_size_line - MAX_CHUNK_SIZE_DIGITS:
            raise ProtocolError(400, "chunk extension too long")
        size = int(match[1], 16)
        if self._max_body:  # limit_request_body; only counted when set
            self._size += size
            if self._size > self._max_body:
                raise ProtocolError(413, "request body larger than limit_request_body")
        if size:
            self._remaining = size
            self._state = _DATA
        else:
            # RFC 9112 §7.1: last-chunk = 1*("0") [ chunk-ext ] CRLF, then the trailer section.
            self._state = _TRAILER
        return pos

    def _step_data(self, data: bytes, pos: int, out: list[bytes]) -> int:
        stop = min(pos + self._remaining, len(data))
        out.append(data[pos:stop])
        self._remaining -= stop - pos
        if not self._remaining:
            self._state = _DATA_CR
        return stop

    # RFC 9112 §7.1: chunk-data is followed by exactly CRLF. Byte by byte, so a CRLF split
    # between two feeds needs no buffering.
    def _step_data_cr(self, data: bytes, pos: int, out: list[bytes]) -> int:
        if data[pos] != 0x0D:
            raise ProtocolError(400, "chunk data not followed by CRLF")
        self._state = _DATA_LF
        return pos + 1

    def _step_data_lf(self, data: bytes, pos: int, out: list[bytes]) -> int:
        if data[pos] != 0x0A:
            raise ProtocolError(400, "chunk data not followed by CRLF")
        self._state = _SIZE
        return pos + 1

    def _step_trailer(self, data: bytes, pos: int, out: list[bytes]) -> int:
        # RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ), then the final CRLF. Its
        # total size is capped like a header section's (431, RFC 6585 §5).
        budget = max(self._max_trailer_size - self._trailer_size - 2, 0)
        line, pos = self._take_line(data, pos, budget, 431, "trailer section too large")
        if line is None:
            return pos
        if not line:
            self.done = True
            return pos
        self._trailer_size += len(line) + 2
        name, value = parse_field_line(line.decode("latin-1"))
        if name in FORBIDDEN_TRAILERS:
            raise ProtocolError(400, f"{name.title()} is not allowed in a trailer")
        if len(self.trailers) >= self._max_trailer_fields:
            raise ProtocolError(431, "too many trailer fields")
        self.trailers.append((name, value))
        return pos


_STEPS: tuple[Callable[[ChunkedDecoder, bytes, int, list[bytes]], int], ...] = (
    ChunkedDecoder._step_size,
    ChunkedDecoder._step_data,
    ChunkedDecoder._step_data_cr,
    ChunkedDecoder._step_data_lf,
    ChunkedDecoder._step_trailer,
)


def _reject_size_line(line: bytes) -> NoReturn:
    """Raise the error that explains why a chunk-size line failed its grammar."""
    digits = _HEX_PREFIX.match(line)
    count = 0 if digits is None else digits.end()
    if count > MAX_CHUNK_SIZE_DIGITS:
        raise ProtocolError(400, "chunk size too long")
    if count == 0 or _EXT_START.match(line, count) is None:
        raise ProtocolError(400, "invalid chunk size")
    raise ProtocolError(400, "invalid chunk extension")


def decoder_for(request: Request, max_body: int = 0) -> ContentLengthDecoder | ChunkedDecoder:
    """The decoder for the body that follows request's head.

    RFC 9112 §6.3: chunked when Transfer-Encoding says so (the parser accepts no other
    coding), else Content-Length, else a request has no body (length 0). `max_body` is
    `limit_request_body` (0: none): a Content-Length above it raises ProtocolError(413) here,
    before the application is called and before any `100 Continue` (RFC 9110 §10.1.1 lets a
    server answer the final status instead).
    """
    if request.chunked:
        return ChunkedDecoder(max_body=max_body)
    length = request.content_length or 0
    if max_body and length > max_body:
        raise ProtocolError(413, "request body larger than limit_request_body")
    return ContentLengthDecoder(length)
