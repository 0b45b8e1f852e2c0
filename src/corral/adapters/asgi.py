"""ASGI (3.0, HTTP spec 2.5): a parsed request becomes a scope; the application's messages
become a framed response.

`Exchange` holds one HTTP/1.1 request's ASGI state: the `receive` and `send` callables handed
to the application, with the order of messages checked (a body before its start, or anything
after the response ended, raises RuntimeError) by the `BaseExchange` it shares with HTTP/2
(adapters/asgi_exchange.py); what is HTTP/1.1's own is here: reading the body, 100-continue,
the framing of the response. It never touches a socket: it talks to the connection
through the small `AsgiTransport` protocol the worker implements (write, drain, pause and resume
reading). What this module must never do: send a header the application did not have validated,
or keep a connection alive whose framing it is no longer sure of.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, ClassVar, Protocol
from urllib.parse import unquote_to_bytes

from corral.adapters.asgi_exchange import BaseExchange, field_block
from corral.adapters.asgi_exchange import ClientGone as ClientGone  # for the workers
from corral.adapters.asgi_exchange import Message as Message
from corral.adapters.asgi_extensions import early_hints, trailer_section
from corral.http.parser import Request
from corral.http.writer import (
    CONTINUE,
    HOP_BY_HOP,
    LAST_CHUNK,
    NO_BODY_STATUSES,
    REASONS,
    SERVER_HEADER,
    date_header,
    encode_chunk,
    error_response,
)

log = logging.getLogger("corral.error")

Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

_ASGI = {"version": "3.0", "spec_version": "2.5"}


# The status line and Server field of the usual statuses, made once.
_STATUS_LINES = {
    code: f"HTTP/1.1 {code} {reason}\r\n".encode("latin-1") + SERVER_HEADER
    for code, reason in REASONS.items()
}

# Headers the server writes itself: framing and connection management.
_SERVER_OWNED = HOP_BY_HOP | {"content-length"}


class AsgiTransport(Protocol):
    """What the exchange needs from a connection; the asgi worker provides it."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    @property
    def must_drain(self) -> bool: ...

    def resume_reading(self) -> None: ...

    async def sendfile(self, file: Any, offset: int, count: int) -> None: ...


def build_scope(
    req: Request,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    scheme: str,
    root_path: str,
    state: dict[str, Any] | None,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The HTTP connection scope (ASGI HTTP spec 2.5)."""
    path = req.path
    raw_path = path.encode("latin-1")
    if "%" in path:
        path = unquote_to_bytes(path).decode("utf-8", "surrogateescape")
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in req.headers
    ]
    if req.authority is not None and req.method != "CONNECT":
        # RFC 9112 §3.2.2: with an absolute-form target, its authority wins over Host.
        headers = [h for h in headers if h[0] != b"host"]
        headers.append((b"host", req.authority.encode("latin-1")))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": _ASGI,
        "http_version": req.version[5:],
        "method": req.method,
        "scheme": scheme,
        "path": root_path + path,
        "raw_path": raw_path,
        "query_string": req.query.encode("latin-1"),
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
    }
    if extensions is not None:
        scope["extensions"] = extensions
    if state is not None:
        scope["state"] = dict(state)  # each request gets a shallow copy (lifespan spec)
    return scope


class Exchange(BaseExchange):
    """One HTTP/1.1 request's receive/send pair and the framing of its response."""

    __slots__ = (
        "body",
        "chunked",
        "close_delimited",
        "content_length",
        "head_lines",
        "headers",
        "is_head",
        "keep_alive",
        "no_body",
        "send_continue",
        "sent",
        "status",
        "trailers_allowed",
        "transport",
        "version",
    )

    def __init__(self, transport: AsgiTransport, req: Request, keep_alive: bool) -> None:
        self.transport = transport
        self.version = req.version
        self.close_delimited = req.close_delimited  # uwsgi: never chunked, no 1xx
        self.is_head = req.method == "HEAD"
        self.keep_alive = keep_alive and req.keep_alive
        self.body_done = not (req.chunked or req.content_length)
        # Made only when needed: most requests have no body, and few apps wait for the end.
        self.body: asyncio.Queue[tuple[bytes, bool] | None] | None = (
            None if self.body_done else asyncio.Queue()
        )
        self.request_sent = False
        self.over = False  # the client has gone or the response has ended
        self.gone: asyncio.Event | None = None  # set when `over` becomes true
        self.head_lines = ""
        self.send_continue: Callable[[bytes], None] | None = None
        self.client_gone = False
        self.status = 0
        self.started = False
        self.head_sent = False
        self.ended = False
        self.chunked = False
        self.no_body = False
        self.content_length: int | None = None
        self.sent = 0
        self.headers: Any = ()  # as the application gave them, for the access log
        self.trailers = False  # the application announced trailers in its start message
        self.trailers_allowed = False  # the client sent `TE: trailers` (set by the worker)
        self.awaiting_trailers = False
        self.trailer_fields: list[Any] = []

    # --- receive ----------------------------------------------------------------------------

    async def receive_body(self) -> Message:
        if self.send_continue is not None:
            # RFC 9110 §10.1.1: the client waits for this before sending the body.
            if not self.head_sent:
                self.send_continue(CONTINUE)
            self.send_continue = None
        self.transport.resume_reading()  # the application asks: let the body flow again
        assert self.body is not None
        item = await self.body.get()
        if item is None:  # the client left mid-body
            self.body_done = self.request_sent = True
            return {"type": "http.disconnect"}
        chunk, more = item
        if not more:
            self.body_done = self.request_sent = True
        return {"type": "http.request", "body": chunk, "more_body": more}

    def feed_body(self, chunk: bytes, more: bool) -> None:
        """From the worker: decoded body bytes; `more` False once the body is complete."""
        assert self.body is not None
        self.body.put_nowait((chunk, more))

    @property
    def buffered(self) -> int:
        """Body chunks received and not yet taken by the application (read backpressure)."""
        return 0 if self.body is None else self.body.qsize()

    def disconnected(self) -> None:
        """From the worker: the client has gone."""
        self.client_gone = True
        if not self.body_done:
            assert self.body is not None
            self.body.put_nowait(None)
        self.set_over()

    # --- send ------------------------------------------------------------------------------

    def send_body(self, body: bytes, more: bool) -> Awaitable[None] | None:
        transport = self.transport
        transport.write(self.frame(body, more))
        if not more:
            self.end_body()
        # Above its high-water mark, or gone: `send` waits (or raises); else nothing to await.
        return transport.drain() if transport.must_drain else None

    # --- extensions ------------------------------------------------------------------------

    async def send_early_hint(self, message: Message) -> None:
        """`http.response.early_hint`: a 103 before the response (RFC 8297); HTTP/1.0
        clients get no interim responses (RFC 9110 §15.2), nor does nginx over uwsgi (it takes
        a 103 for the response), and once the response has started a hint has no use: all
        are dropped."""
        if self.started or self.version != "HTTP/1.1" or self.close_delimited:
            return
        self.transport.write(early_hints(message.get("links", ())))
        await self.transport.drain()

    async def send_trailers(self, message: Message) -> None:
        """`http.response.trailers`, after the last body message of a response whose start
        announced them. They are sent when the body is chunked and the client accepts
        trailers; otherwise the message only ends the response."""
        if not self.take_trailers(message):
            return
        self.transport.write(self.finish_trailers())
        await self.transport.drain()

    def finish_trailers(self) -> bytes:
        """The end of the response when trailers were announced (also when the application
        returned without sending them: then the section is empty)."""
        self.awaiting_trailers = False
        self.ended = True
        self.set_over()
        if not self.chunked or self.no_body:
            return b""
        return trailer_section(self.trailer_fields if self.trailers_allowed else ())

    async def send_pathsend(self, message: Message) -> None:
        """`http.response.pathsend`: the whole body is the file at `path`, sent with
        sendfile() where the transport allows it."""
        with open(self.pathsend_path(message), "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if self.content_length is None:
                self.content_length = size
            count = min(size, self.content_length)
            if count < self.content_length:
                self.keep_alive = False  # the file is shorter than announced
            self.trailers = False
            self.transport.write(self.head(b"", True))
            self.sent = count
            self.ended = True
            if not self.no_body and count:
                await self.transport.sendfile(file, 0, count)
        self.set_over()
        await self.transport.drain()

    def start(self, status: int, message: Message) -> None:
        headers = message.get("headers", ())
        head_lines, content_length, close = field_block(headers, _SERVER_OWNED, None)
        if content_length is not None:
            self.content_length = content_length
        if close:
            self.keep_alive = False
        self.status = status
        self.started = True
        self.head_lines = head_lines
        self.headers = headers
        self.trailers = bool(message.get("trailers", False))

    def head(self, body: bytes, more: bool) -> bytes:
        """Decide the framing when the first body message comes (RFC 9112 §6)."""
        status = self.status
        framing = ""
        if status in NO_BODY_STATUSES:
            self.no_body = True
            self.content_length = None
        elif self.content_length is not None:
            framing = f"Content-Length: {self.content_length}\r\n"
        elif self.trailers and self.trailers_allowed and not (self.is_head or self.close_delimited):
            self.chunked = True  # trailers travel only after a chunked body
            framing = "Transfer-Encoding: chunked\r\n"
        elif not more:
            self.content_length = len(body)
            framing = f"Content-Length: {len(body)}\r\n"
        elif self.version == "HTTP/1.1" and not self.close_delimited:
            self.chunked = True
            framing = "Transfer-Encoding: chunked\r\n"
        else:
            self.keep_alive = False  # close-delimited
        if self.is_head:
            self.no_body = True
        if not self.keep_alive:
            framing += "Connection: close\r\n"
        elif self.version == "HTTP/1.0":
            framing += "Connection: keep-alive\r\n"
        self.head_sent = True
        status_line = _STATUS_LINES.get(status)
        if status_line is None:
            status_line = f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n".encode("latin-1")
            status_line += SERVER_HEADER
        return b"".join(
            (
                status_line,
                date_header.line(),
                (self.head_lines + framing + "\r\n").encode("latin-1"),
            )
        )

    def frame(self, body: bytes, more: bool) -> bytes:
        out = self.head(body, more) if not self.head_sent else b""
        if self.no_body:
            return out
        if self.chunked:
            if body:
                out += encode_chunk(body)
            if not more and not self.trailers:
                out += LAST_CHUNK
        else:
            limit = self.content_length
            if limit is not None and self.sent + len(body) > limit:
                body = body[: limit - self.sent]  # more than announced: never a second response
                self.keep_alive = False
            out += body
            if not more and limit is not None and self.sent + len(body) < limit:
                self.keep_alive = False  # fewer than announced: the client would wait
        self.sent += len(body)
        return out

    def error_answer(self, status: int) -> bytes | None:
        """The bytes of an error answer if no head left yet (else the connection just ends)."""
        self.keep_alive = False
        if self.head_sent:
            return None
        self.head_sent = True
        self.ended = True
        self.status = status  # what the access log and metrics record
        self.headers = ()
        self.sent = 0
        return error_response(status)

    extensions: ClassVar[dict[str, Callable[[Any, Message], Awaitable[None]]]] = {
        "http.response.early_hint": send_early_hint,
        "http.response.trailers": send_trailers,
        "http.response.pathsend": send_pathsend,
    }
