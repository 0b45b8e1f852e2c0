"""What an HTTP request's ASGI side is whatever the protocol under it: the part HTTP/1.1
(`adapters/asgi.Exchange`) and HTTP/2 (`workers/asgi_h2_stream.H2Stream`) share.

`BaseExchange` holds the order of the messages (ASGI HTTP spec 2.5): `receive` once the body is
done (one empty `http.request` if the application has not had one, then `http.disconnect` when
the client leaves or the response ends), `send`'s checks (nothing once the client has gone, one
start, body messages between the start and the end) and its dispatch to the extensions the
subclass lists, the end of the body (at once, or with the trailers the start announced), and
the checks of the trailers and pathsend messages. `field_block` checks the application's
response headers the same way for both.

What each protocol does its own way stays in its class, on purpose: how the body is read
(`receive_body`: HTTP/1.1 resumes reading the socket and sends `100 Continue` as a raw line;
HTTP/2 sends it as a HEADERS frame and credits the peer's window only as the application
takes the bytes), how the response is framed (`start`, `send_body`) and how it ends.

What this module must never do: touch a transport, a socket or a session (it has none), let a
message through out of its order, or pass a header block it has not checked.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, ClassVar

from corral.adapters.asgi_extensions import HEADER_BLOCK, HEADER_LINE

Message = MutableMapping[str, Any]


class ClientGone(OSError):
    """`send` after the client has gone (ASGI HTTP 2.5: an OSError subclass)."""


def field_block(
    headers: Any, owned: frozenset[str], fields: list[tuple[bytes, bytes]] | None
) -> tuple[str, int | None, bool]:
    """The application's response headers as one checked block of `Name: value` lines, less
    the fields the server owns (`owned`); with the Content-Length it announced and whether a
    Connection field asked to close. With `fields`, each kept field is also appended there as
    a lower-case name and a value (HTTP/2). RuntimeError when a header is bad."""
    lines = []
    content_length = None
    close = False
    for name, value in headers:
        key = bytes(name).decode("latin-1")
        text = bytes(value).decode("latin-1")
        lower = key.lower()
        if lower in owned:
            if lower == "content-length":
                if not text.isdigit():
                    raise RuntimeError(f"invalid Content-Length {text!r}")
                content_length = int(text)
            elif lower == "connection" and "close" in text.lower():
                close = True
            continue
        lines.append(f"{key}: {text}\r\n")
        if fields is not None:
            fields.append((lower.encode("latin-1"), text.encode("latin-1")))
    block = "".join(lines)
    # One match over the whole block (only a bad block is searched for its line); as many
    # CRLFs as lines, so a value cannot carry a line of its own.
    if HEADER_BLOCK.fullmatch(block) is None or block.count("\r\n") != len(lines):
        bad = next((line for line in lines if HEADER_LINE.match(line) is None), ":")
        raise RuntimeError(f"invalid response header {bad.partition(':')[0]!r}")
    return block, content_length, close


class BaseExchange:
    """One request's `receive` and `send` in the order ASGI sets; the protocol is the
    subclass's (`receive_body`, `start`, `send_body` and the `extensions` table)."""

    __slots__ = (
        "awaiting_trailers",
        "body_done",
        "client_gone",
        "ended",
        "gone",
        "head_sent",
        "over",
        "request_sent",
        "started",
        "trailer_fields",
        "trailers",
    )

    # The state both keep; the subclass's __init__ sets it.
    body_done: bool  # the application has had the whole body (or will have no more)
    request_sent: bool  # the application has had its last http.request
    over: bool  # the client has gone or the response has ended
    gone: asyncio.Event | None  # set when `over` becomes true (made when someone waits)
    client_gone: bool
    started: bool
    head_sent: bool
    ended: bool
    trailers: bool  # the application announced trailers in its start message
    awaiting_trailers: bool
    trailer_fields: list[Any]

    # The extensions' messages (ASGI HTTP spec 2.5, "Extensions"), each advertised in the scope.
    extensions: ClassVar[dict[str, Callable[[Any, Message], Awaitable[None]]]] = {}

    # --- receive ----------------------------------------------------------------------------

    async def receive(self) -> Message:
        if self.body_done:
            if not self.request_sent:
                self.request_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            # Nothing more comes for this request: wait until the client leaves or the
            # response has ended, then say the request is over.
            if not self.over:
                if self.gone is None:
                    self.gone = asyncio.Event()
                await self.gone.wait()
            return {"type": "http.disconnect"}
        return await self.receive_body()

    async def receive_body(self) -> Message:
        """The next part of a body not yet done (`http.request`, or `http.disconnect` when the
        client left in the middle); it sets `body_done` and `request_sent` at the end."""
        raise NotImplementedError

    # --- send -------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.client_gone:
            raise ClientGone("the client has gone")
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            status = message["status"]
            if type(status) is not int or not 100 <= status <= 999:
                raise RuntimeError(f"invalid status {status!r}")
            self.start(status, message)
        elif kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body before http.response.start")
            if self.ended:
                raise RuntimeError("http.response.body after the response ended")
            if self.awaiting_trailers:
                raise RuntimeError("http.response.body after the last body message")
            body = message.get("body", b"")
            waiter = self.send_body(bytes(body), bool(message.get("more_body", False)))
            if waiter is not None:
                await waiter
        else:
            extension = self.extensions.get(kind)
            if extension is None:
                raise RuntimeError(f"unexpected ASGI message type {kind!r} for http")
            await extension(self, message)

    def start(self, status: int, message: Message) -> None:
        """`http.response.start` with a valid status: check and keep the head."""
        raise NotImplementedError

    def send_body(self, body: bytes, more: bool) -> Awaitable[None] | None:
        """Send one body message's bytes; what to await before `send` returns, if anything
        (HTTP/1.1 writes at once and waits only when its transport must drain)."""
        raise NotImplementedError

    def end_body(self) -> None:
        if self.trailers:
            self.awaiting_trailers = True  # the end comes with http.response.trailers
        else:
            self.ended = True
            self.set_over()

    def set_over(self) -> None:
        self.over = True
        if self.gone is not None:
            self.gone.set()

    # --- the extensions' checks -------------------------------------------------------------

    def take_trailers(self, message: Message) -> bool:
        """`http.response.trailers`, after the last body message of a response whose start
        announced them: keep its fields; True when it is the last of them."""
        if not self.trailers or self.ended:
            raise RuntimeError("http.response.trailers without trailers announced")
        if not self.awaiting_trailers:
            raise RuntimeError("http.response.trailers before the last body message")
        self.trailer_fields.extend(message.get("headers", ()))
        return not message.get("more_trailers", False)

    def pathsend_path(self, message: Message) -> str:
        """`http.response.pathsend`'s file, which must follow the start alone."""
        if not self.started or self.head_sent or self.ended:
            raise RuntimeError("http.response.pathsend must follow http.response.start alone")
        path: str = message["path"]
        if not os.path.isabs(path):
            raise RuntimeError(f"http.response.pathsend needs an absolute path, not {path!r}")
        return path
