"""The plain ASGI 3.0 application behind every ASGI scenario.

Routes, one per scenario:

    GET  /         "Hello, World!" (13 bytes, with Content-Length): the server's own cost
    GET  /stream   1 MiB sent as 16 messages of 64 KiB with `more_body`, no Content-Length,
                   so every server frames it itself (chunked)
    WS   /ws       accepts, then echoes every message (text as text, bytes as bytes) until the
                   client leaves

Lifespan is answered (startup and shutdown complete at once), so that no server logs a
lifespan failure or skips it differently from another. It must stay framework-free and do the
same work under every server, so that a difference in the numbers is the server's. It imports
nothing outside the standard library and never sleeps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO = b"Hello, World!"
HELLO_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
STREAM_HEADERS = [(b"content-type", b"application/octet-stream")]
CHUNK_SIZE = 64 * 1024
STREAM_SIZE = 1024 * 1024
_CHUNK = bytes(range(256)) * (CHUNK_SIZE // 256)
NOT_FOUND_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"9")]


async def hello(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
    await send({"type": "http.response.body", "body": HELLO})


async def stream(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
    for _ in range(STREAM_SIZE // CHUNK_SIZE - 1):
        await send({"type": "http.response.body", "body": _CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": _CHUNK})


async def not_found(send: Send) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": NOT_FOUND_HEADERS})
    await send({"type": "http.response.body", "body": b"not found"})


async def echo(receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return  # websocket.disconnect
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message["text"]})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "http":
        path = scope["path"]
        if path == "/":
            await hello(send)
        elif path == "/stream":
            await stream(send)
        else:
            await not_found(send)
    elif kind == "websocket":
        await echo(receive, send)
    elif kind == "lifespan":
        await lifespan(receive, send)
