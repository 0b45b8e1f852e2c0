"""ASGI applications for the WebSocket tests of the asgi worker (one worker per server)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

Scope = dict[str, Any]

_released = asyncio.Event()


async def _plain(send: Any, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def hoarder(scope: Scope, receive: Any, send: Any) -> None:
    """A WebSocket that receives nothing until GET /release, then counts the messages up to
    the text "end" and sends the count; GET /rss answers the worker's resident memory in KiB."""
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "http":
        if scope["path"] == "/release":
            _released.set()
        if scope["path"] == "/rss":
            with open("/proc/self/status") as status:
                rss = next(line for line in status if line.startswith("VmRSS:")).split()[1]
            await _plain(send, rss.encode())
            return
        await _plain(send, b"ok")
        return
    await receive()
    await send({"type": "websocket.accept"})
    await _released.wait()
    count = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "end":
            break
        count += 1
    await send({"type": "websocket.send", "text": str(count)})
    await send({"type": "websocket.close"})


async def denier(scope: Scope, receive: Any, send: Any) -> None:
    """Refuses WebSockets with the websocket.http.response extension: /length with one body
    message, /chunked with several, /unfinished returns after the start, /twice sends a close
    after the start; /extensions accepts and sends the scope's extensions as JSON."""
    if scope["type"] != "websocket":
        if scope["type"] == "http":
            await _plain(send, b"ok")
        return
    await receive()
    path = scope["path"]
    if path == "/extensions":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(scope["extensions"])})
        await receive()
        return
    headers = [(b"content-type", b"text/plain"), (b"x-reason", b"token expired")]
    start = {"type": "websocket.http.response.start", "status": 401, "headers": headers}
    await send(start)
    if path == "/length":
        await send({"type": "websocket.http.response.body", "body": b"log in first"})
    elif path == "/chunked":
        for part in (b"log ", b"in ", b"first"):
            await send({"type": "websocket.http.response.body", "body": part, "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b""})
    elif path == "/twice":
        await send({"type": "websocket.close"})
    elif path == "/unfinished":
        return
    after = await receive()
    assert after["type"] == "websocket.disconnect", after
