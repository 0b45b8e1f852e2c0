"""The response side of one WSGI call on an HTTP/2 stream: the same start_response, write()
and header checks as HTTP/1.1 (adapters/response.py), but output for a stream instead of bytes.

HTTP/2 frames a body itself (DATA frames, END_STREAM), so there is no chunked coding and no
Connection header: the head is a status code and a header list with lower-case names and
without the connection-specific fields RFC 9113 §8.2.2 forbids; Content-Length is kept when
the length is known (§8.1.1 lets the client check it). Output items:

- `H2Head`: the status and headers, with the first body bytes and END_STREAM when known;
- `bytes`: body data;
- `END`: the body is complete (END_STREAM);
- `RESET`: the response cannot be completed (fewer bytes than the announced Content-Length):
  the stream is reset so the client never takes a truncated body for a whole one.

What this module must never do: send anything itself (the worker's loop moves the items into
the HTTP/2 session as the peer's window allows), or emit a header it did not validate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from corral import SERVER_SOFTWARE
from corral.adapters.response import Response, StreamOutput
from corral.http.parser import Request
from corral.http.writer import HOP_BY_HOP, NO_BODY_STATUSES, REASONS, date_header

# RFC 9113 §8.2.2: fields that make a message malformed in HTTP/2, on top of the hop-by-hop
# fields the HTTP/1.1 writer already keeps for itself.
_CONNECTION_SPECIFIC = HOP_BY_HOP | {"proxy-connection", "content-length"}
_SERVER = (b"server", SERVER_SOFTWARE.split("/")[0].encode())


class H2Head(StreamOutput):
    """A response head for a stream; `body` and `end` let a small response leave as one
    HEADERS frame (and one DATA frame) with END_STREAM."""

    __slots__ = ("body", "end", "headers", "status")

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, end: bool
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.end = end


class _Marker(StreamOutput):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END = _Marker("END")
RESET = _Marker("RESET")


def h2_fields(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """An application's (already validated) header list as HTTP/2 fields."""
    fields = [_SERVER, (b"date", date_header.line()[6:-2])]
    for name, value in headers:
        lower = name.lower()
        if lower not in _CONNECTION_SPECIFIC:
            fields.append((lower.encode("latin-1"), value.encode("latin-1")))
    return fields


def error_head(status: int) -> H2Head:
    """A complete plain-text answer for `status` (an error before the application answered)."""
    body = f"{status} {REASONS.get(status, 'Error')}\n".encode()
    headers = [
        _SERVER,
        (b"date", date_header.line()[6:-2]),
        (b"content-type", b"text/plain"),
        (b"content-length", b"%d" % len(body)),
    ]
    return H2Head(status, headers, body, True)


def _no_send(data: bytes) -> None:
    raise AssertionError("an HTTP/2 response is never sent as bytes")


class H2Response(Response):
    """`Response` for a stream. `push` hands output to the stream from PEP 3333's write()."""

    __slots__ = ("push",)

    def __init__(self, push: Callable[[list[StreamOutput | bytes]], None], req: Request) -> None:
        super().__init__(_no_send, req, True)
        self.push = push

    def head(self) -> H2Head:  # type: ignore[override]
        """The head as a stream item (marks it sent); the body follows as data items."""
        if self.status is None:
            raise AssertionError("the application returned without calling start_response")
        fields = h2_fields(self.headers)
        if self.code in NO_BODY_STATUSES:
            self.no_body = True
            self.content_length = None
        elif self.content_length is not None:
            fields.append((b"content-length", b"%d" % self.content_length))
        if self.is_head:
            self.no_body = True
        self.head_sent = True
        return H2Head(self.code, fields, b"", False)

    def frame(self, data: bytes) -> bytes:
        """The body bytes of `data` (HTTP/2 frames them itself), counted; never past the
        announced Content-Length."""
        if self.no_body or not data:
            return b""
        if type(data) is not bytes:
            data = bytes(data)  # a bytearray or memoryview from the application
        limit = self.content_length
        if limit is not None and self.sent + len(data) > limit:
            data = data[: limit - self.sent]
        self.sent += len(data)
        return data

    def pieces(self, data: bytes) -> tuple[StreamOutput | bytes, ...]:  # type: ignore[override]
        if self.head_sent:
            return (self.frame(data),)
        head = self.head()
        head.body = self.frame(data)
        return (head,)

    def whole(self, body: bytes) -> tuple[StreamOutput, ...]:  # type: ignore[override]
        if self.status is None:
            raise AssertionError("the application returned without calling start_response")
        if self.content_length is None and self.code not in NO_BODY_STATUSES:
            self.content_length = len(body)
        head = self.head()
        head.body = self.frame(body)
        if self.incomplete:
            return (head, RESET)
        head.end = True
        return (head,)

    def tail(self) -> StreamOutput:  # type: ignore[override]
        """What ends the response: the head with END_STREAM if nothing was sent yet, END, or
        RESET when fewer bytes were sent than announced."""
        if not self.head_sent:
            if self.content_length is None and self.code not in NO_BODY_STATUSES:
                self.content_length = 0
            head = self.head()
            head.end = True
            return head
        return RESET if self.incomplete else END

    @property
    def incomplete(self) -> bool:
        length = self.content_length
        return length is not None and self.sent < length and not self.no_body

    def write(self, data: bytes) -> None:
        """PEP 3333 write(): hands the output to the stream (which may wait, within
        `timeout`, for the peer to take earlier output)."""
        if not self.head_sent and self.status is None:
            raise AssertionError("write() before start_response")
        pieces = [piece for piece in self.pieces(data) if piece]
        if pieces:
            self.push(pieces)

    def error_output(self, status: int) -> StreamOutput:  # type: ignore[override]
        return error_head(status)
