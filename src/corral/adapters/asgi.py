"""ASGI (3.0, HTTP spec 2.5): a parsed request becomes a scope; the application's messages
become a framed response.

`Exchange` holds one HTTP request's ASGI state: the `receive` and `send` callables handed to
the application, with the order of messages checked (a body before its start, or anything after
the response ended, raises RuntimeError). It never touches a socket: it talks to the connection
through the small `AsgiTransport` protocol the worker implements (write, drain, pause and resume
reading). What this module must never do: send a header the application did not have validated,
or keep a connection alive whose framing it is no longer sure of.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

from corral.http.grammar import FIELD_TEXT, TOKEN
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

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

# RFC 9110 §5.1 / §5.5: one header line, name and value, checked with the shared grammar.
_HEADER_LINE = re.compile(rf"{TOKEN}: [{FIELD_TEXT}]*\r\n\Z")
_ASGI = {"version": "3.0", "spec_version": "2.5"}


class ClientGone(OSError):
    """`send` after the client has gone (ASGI HTTP 2.5: an OSError subclass)."""


class AsgiTransport(Protocol):
    """What the exchange needs from a connection; the asgi worker provides it."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def resume_reading(self) -> None: ...


def build_scope(
    req: Request,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    scheme: str,
    root_path: str,
    state: dict[str, Any] | None,
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
    if state is not None:
        scope["state"] = dict(state)  # each request gets a shallow copy (lifespan spec)
    return scope


class Exchange:
    """One request's receive/send pair and the framing of its response."""

    __slots__ = (
        "body",
        "body_done",
        "chunked",
        "client_gone",
        "content_length",
        "ended",
        "gone",
        "head_lines",
        "head_sent",
        "is_head",
        "keep_alive",
        "no_body",
        "request_sent",
        "send_continue",
        "sent",
        "started",
        "status",
        "transport",
        "version",
    )

    def __init__(self, transport: AsgiTransport, req: Request, keep_alive: bool) -> None:
        self.transport = transport
        self.version = req.version
        self.is_head = req.method == "HEAD"
        self.keep_alive = keep_alive and req.keep_alive
        self.body: asyncio.Queue[tuple[bytes, bool] | None] = asyncio.Queue()
        self.body_done = not (req.chunked or req.content_length)
        self.request_sent = False
        self.gone = asyncio.Event()  # set when the client has gone or the response ended
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

    # --- receive ----------------------------------------------------------------------------

    async def receive(self) -> Message:
        if self.body_done:
            if not self.request_sent:
                self.request_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            # Nothing more comes for this request: wait until the client leaves or the
            # response has ended, then say the request is over.
            await self.gone.wait()
            return {"type": "http.disconnect"}
        if self.send_continue is not None:
            # RFC 9110 §10.1.1: the client waits for this before sending the body.
            if not self.head_sent:
                self.send_continue(CONTINUE)
            self.send_continue = None
        self.transport.resume_reading()  # the application asks: let the body flow again
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
        self.body.put_nowait((chunk, more))

    @property
    def buffered(self) -> int:
        """Body chunks received and not yet taken by the application (read backpressure)."""
        return self.body.qsize()

    def disconnected(self) -> None:
        """From the worker: the client has gone."""
        self.client_gone = True
        if not self.body_done:
            self.body.put_nowait(None)
        self.gone.set()

    # --- send ------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.client_gone:
            raise ClientGone("the client has gone")
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.start(message)
        elif kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body before http.response.start")
            if self.ended:
                raise RuntimeError("http.response.body after the response ended")
            body = message.get("body", b"")
            more = bool(message.get("more_body", False))
            self.transport.write(self.frame(bytes(body), more))
            if not more:
                self.ended = True
                self.gone.set()
            await self.transport.drain()
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} for http")

    def start(self, message: Message) -> None:
        status = message["status"]
        if type(status) is not int or not 100 <= status <= 999:
            raise RuntimeError(f"invalid status {status!r}")
        lines = []
        for name, value in message.get("headers", ()):
            key = bytes(name).decode("latin-1")
            text = bytes(value).decode("latin-1")
            lower = key.lower()
            if lower in HOP_BY_HOP:
                if lower == "connection" and "close" in text.lower():
                    self.keep_alive = False
                continue
            line = f"{key}: {text}\r\n"
            if _HEADER_LINE.match(line) is None:
                raise RuntimeError(f"invalid response header {key!r}")
            if lower == "content-length":
                if not text.isdigit():
                    raise RuntimeError(f"invalid Content-Length {text!r}")
                self.content_length = int(text)
                continue
            lines.append(line)
        self.status = status
        self.started = True
        self.head_lines = "".join(lines)

    def head(self, body: bytes, more: bool) -> bytes:
        """Decide the framing when the first body message comes (RFC 9112 §6)."""
        status = self.status
        framing = ""
        if status in NO_BODY_STATUSES:
            self.no_body = True
            self.content_length = None
        elif self.content_length is not None:
            framing = f"Content-Length: {self.content_length}\r\n"
        elif not more:
            self.content_length = len(body)
            framing = f"Content-Length: {len(body)}\r\n"
        elif self.version == "HTTP/1.1":
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
        reason = REASONS.get(status, "")
        self.head_sent = True
        return b"".join(
            (
                f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1"),
                SERVER_HEADER,
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
            if not more:
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
        return error_response(status)
