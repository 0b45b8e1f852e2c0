"""The response side of one WSGI call: start_response, write(), and the framing decision.

Framing follows RFC 9112 §6: Content-Length when the length is known, chunked for HTTP/1.1
when it is not, and close-delimited for HTTP/1.0 or a request marked `close_delimited` (uwsgi:
the proxy reads the response until the connection closes, whatever the client's version).
HEAD, 1xx, 204 and 304 never carry a body.
The head is joined into one buffer and leaves with the first body chunk in one send.
This module produces bytes; the engine sends them (only PEP 3333 `write()` sends itself).
What this module must never do: emit an application header without validating it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import TracebackType

from corral.http.grammar import FIELD_TEXT, TOKEN
from corral.http.parser import Request
from corral.http.writer import (
    HOP_BY_HOP,
    LAST_CHUNK,
    NO_BODY_STATUSES,
    SERVER_HEADER,
    check_header,
    check_status,
    date_header,
    encode_chunk,
    error_response,
)

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

# RFC 9110 §5.1 / §5.5: a whole block of "name: value\r\n" lines, checked in one match.
_HEADER_BLOCK = re.compile(rf"(?:{TOKEN}: [{FIELD_TEXT}]*\r\n)*\Z")
_DIGITS = re.compile(r"[0-9]{1,18}\Z")

# Sent with the first chunk in one call when the chunk is at most this large.
_COALESCE = 65536


# What start_response learns from a status and header list, cached: most applications send
# the same few combinations over and over. (code, status line, header block, length, closes)
ParsedHead = tuple[int, bytes, bytes, "int | None", bool]
_PARSED: dict[tuple[object, ...], ParsedHead] = {}
_PARSED_MAX = 512


def _parse_response_head(status: str, headers: list[tuple[str, str]]) -> ParsedHead:
    """Validate an application's status and headers (RFC 9110 §5.5, §15) and digest them."""
    code = check_status(status)
    if type(headers) is not list:
        raise TypeError(f"response headers must be a list, not {type(headers).__name__}")
    lines = []
    content_length = None
    closes = False
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP:
            # The server owns framing and connection management; `Connection: close` from
            # the application is honoured by closing after the response.
            closes = closes or (lower == "connection" and "close" in value.lower())
            continue
        if lower == "content-length":
            if type(value) is not str or _DIGITS.match(value) is None:
                raise ValueError(f"invalid Content-Length from the application: {value!r}")
            content_length = int(value)
            continue
        lines.append(f"{name}: {value}\r\n")
    block = "".join(lines)
    if _HEADER_BLOCK.match(block) is None:
        for name, value in headers:
            check_header(name, value)
        raise ValueError("invalid response header")
    parsed = (
        code,
        b"HTTP/1.1 " + status.encode("latin-1") + b"\r\n",
        block.encode("latin-1"),
        content_length,
        closes,
    )
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    key = (status, *headers)
    _PARSED[key] = parsed
    return parsed


class FileRange:
    """A part of an open file for the engine to send with sendfile, as the socket drains."""

    __slots__ = ("count", "fd", "offset")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self.fd = fd
        self.offset = offset
        self.count = count


class StreamOutput:
    """Output for an HTTP/2 stream (adapters/response_h2.py), which is not bytes."""

    __slots__ = ()


# What an exchange yields for the engine to send.
Output = bytes | FileRange | StreamOutput


class Response:
    """State of one response; `start_response` and `write` are handed to the application.

    The framing methods return bytes (`head`, `frame`, `tail`) and never send: the engine
    sends them when the socket takes them. Only PEP 3333's push-style `write()` sends, through
    the waiting `send` the connection gives it.
    """

    __slots__ = (
        "block",
        "chunked",
        "close_delimited",
        "code",
        "content_length",
        "head_sent",
        "headers",
        "is_head",
        "keep_alive",
        "no_body",
        "send",
        "sent",
        "status",
        "status_line",
        "version",
    )

    def __init__(self, send: Callable[[bytes], None], req: Request, keep_alive: bool) -> None:
        self.send = send
        self.version = req.version
        self.close_delimited = req.close_delimited
        self.is_head = req.method == "HEAD"
        self.keep_alive = keep_alive and req.keep_alive
        self.status: str | None = None
        self.code = 0
        self.headers: list[tuple[str, str]] = []
        self.block = b""
        self.status_line = b""
        self.content_length: int | None = None
        self.chunked = False
        self.no_body = False
        self.head_sent = False
        self.sent = 0

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        try:
            key = (status, *headers)
            parsed = _PARSED.get(key)
        except TypeError:  # unhashable items: the full check below names the problem
            parsed = None
        if parsed is None:
            parsed = _parse_response_head(status, headers)
        self.code, self.status_line, self.block, self.content_length, closes = parsed
        if closes:
            self.keep_alive = False
        self.status = status
        self.headers = headers
        return self.write

    def head(self) -> bytes:
        """Decide the framing and build the head (RFC 9112 §6.1-6.3); marks it sent."""
        if self.status is None:
            raise AssertionError("the application returned without calling start_response")
        framing = b""
        if self.code in NO_BODY_STATUSES:
            self.no_body = True
            self.content_length = None
        elif self.content_length is not None:
            framing = b"Content-Length: %d\r\n" % self.content_length
        elif self.is_head:
            pass
        elif self.version == "HTTP/1.1" and not self.close_delimited:
            self.chunked = True
            framing = b"Transfer-Encoding: chunked\r\n"
        else:
            self.keep_alive = False  # close-delimited (RFC 9112 §6.3, rule 8)
        if self.is_head:
            self.no_body = True
        if not self.keep_alive:
            framing += b"Connection: close\r\n"
        elif self.version == "HTTP/1.0":
            framing += b"Connection: keep-alive\r\n"
        self.head_sent = True
        return b"".join(
            (self.status_line, SERVER_HEADER, date_header.line(), self.block, framing, b"\r\n")
        )

    def pieces(self, data: bytes) -> tuple[bytes, ...]:
        """The output for one body chunk: with the head in front the first time (joined into
        one buffer when the chunk is small, so both leave in one send)."""
        if self.head_sent:
            return (self.frame(data),)
        head = self.head()
        framed = self.frame(data)
        if len(framed) <= _COALESCE:
            return (head + framed,)
        return head, framed

    def write(self, data: bytes) -> None:
        """PEP 3333 write(): push-style, so it sends (waiting up to `timeout` per wait)."""
        if not self.head_sent and self.status is None:
            raise AssertionError("write() before start_response")
        for piece in self.pieces(data):
            if piece:
                self.send(piece)

    def frame(self, data: bytes) -> bytes:
        """The bytes that carry `data` on the wire, counting what the client will receive."""
        if self.no_body or not data:
            return b""
        if self.chunked:
            self.sent += len(data)
            return encode_chunk(data)
        limit = self.content_length
        if limit is not None and self.sent + len(data) > limit:
            # The application sent more than it announced: send what it promised, then
            # close, so the excess can never be read as a second response.
            data = data[: limit - self.sent]
            self.keep_alive = False
        self.sent += len(data)
        return data

    def whole(self, body: bytes) -> tuple[bytes, ...]:
        """The complete body is known before anything is sent: frame it with Content-Length
        (unless the application said otherwise), head and body in one buffer when small."""
        if self.status is None:
            raise AssertionError("the application returned without calling start_response")
        if self.content_length is None and self.code not in NO_BODY_STATUSES:
            self.content_length = len(body)
        head = self.head()
        framed = self.frame(body)
        length = self.content_length
        if length is not None and self.sent < length and not self.no_body:
            self.keep_alive = False  # fewer bytes than announced
        if len(framed) <= _COALESCE:
            return (head + framed,)
        return head, framed

    def tail(self) -> bytes:
        """What ends the response: the head if nothing was sent yet, the last chunk."""
        out = b""
        if not self.head_sent:
            if self.content_length is None and self.code not in NO_BODY_STATUSES:
                self.content_length = 0
            out = self.head()
        if self.chunked:
            out += LAST_CHUNK
        self.check_complete()
        return out

    def error_output(self, status: int) -> bytes:
        """A complete answer for `status`, for an error before the head left (closes)."""
        return error_response(status)

    def check_complete(self) -> None:
        if self.content_length is not None and self.sent < self.content_length and not self.no_body:
            # Fewer bytes than announced: the client would wait for the rest forever.
            self.keep_alive = False
