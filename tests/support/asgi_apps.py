"""Plain ASGI applications for the asgi worker's tests (no framework needed)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

Scope = dict[str, Any]


async def _body(receive: Any) -> bytes:
    data = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return data
        data += message.get("body", b"")
        if not message.get("more_body"):
            return data


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hello from lifespan"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/echo":
        body = await _body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for n in range(5):
            await send({"type": "http.response.body", "body": b"part %d\n" % n, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/boom":
        raise RuntimeError("boom from the asgi test app")
    elif path == "/sleep":
        await asyncio.sleep(float(scope["query_string"] or b"1"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"slept"})
    else:
        await _body(receive)
        info = {
            "path": path,
            "root_path": scope["root_path"],
            "query_string": scope["query_string"].decode(),
            "method": scope["method"],
            "http_version": scope["http_version"],
            "state": scope.get("state", {}).get("greeting"),
            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        }
        payload = json.dumps(info).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def no_lifespan(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise ValueError("only http")
    await app(scope, receive, send)


async def failing_startup(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        return
    await app(scope, receive, send)


async def websocket_app(scope: Scope, receive: Any, send: Any) -> None:
    """/ws echoes text and bytes (subprotocol "chat" when offered); /refuse closes before
    accepting; /crash raises after accepting."""
    if scope["type"] != "websocket":
        await app(scope, receive, send)
        return
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/refuse":
        await send({"type": "websocket.close"})
        return
    subprotocol = "chat" if "chat" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    if scope["path"] == "/crash":
        raise RuntimeError("crash after accept")
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "close please":
            await send({"type": "websocket.close", "code": 4000, "reason": "asked"})
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": "echo: " + message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def http_only(scope: Scope, receive: Any, send: Any) -> None:
    """The common shape that ignores other scope types by returning: lifespan must not hang."""
    if scope["type"] != "http":
        return
    await app(scope, receive, send)


async def close_then_wait(scope: Scope, receive: Any, send: Any) -> None:
    """A WebSocket the server closes first, then waits for the client's Close."""
    if scope["type"] != "websocket":
        await app(scope, receive, send)
        return
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1000})
    await receive()


async def ignores_disconnect(scope: Scope, receive: Any, send: Any) -> None:
    """/hold works for 30 s without listening for the client; when it is cancelled (the client
    left and the grace period ran out) it records that in the file named by the query."""
    if scope["type"] != "http" or scope["path"] != "/hold":
        await app(scope, receive, send)
        return
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        with open(scope["query_string"].decode(), "w") as fh:
            fh.write("cancelled")
        raise
