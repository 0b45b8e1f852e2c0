"""ASGI applications for the asgi worker's HTTP/2 tests (no framework needed)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

Scope = dict[str, Any]

# Shared between the streams of one worker (the tests run one).
_released = asyncio.Event()
_gathered: list[asyncio.Event] = []
_disconnects: list[str] = []


async def _start(send: Any, status: int = 200, headers: Any = (), **extra: Any) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers), **extra})


async def _body(receive: Any) -> bytes:
    data = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return data
        data += message.get("body", b"")
        if not message.get("more_body"):
            return data


async def gather(scope: Scope, receive: Any, send: Any) -> None:
    """Waits until `n` requests wait together: only concurrent streams can all finish."""
    n = int(scope["query_string"] or b"16")
    event = asyncio.Event()
    _gathered.append(event)
    if len(_gathered) >= n:
        for waiting in _gathered:
            waiting.set()
        _gathered.clear()
    await event.wait()
    await _start(send)
    await send({"type": "http.response.body", "body": b"together"})


async def hold(scope: Scope, receive: Any, send: Any) -> None:
    """Reads nothing of its body until /release, then all of it."""
    await _start(send)
    await send({"type": "http.response.body", "body": b"holding\n", "more_body": True})
    await _released.wait()
    data = await _body(receive)
    await send({"type": "http.response.body", "body": b"%d" % len(data)})


async def wait_disconnect(scope: Scope, receive: Any, send: Any) -> None:
    """Starts a response, then waits for http.disconnect (the client resets the stream)."""
    await _start(send)
    await send({"type": "http.response.body", "body": b"waiting\n", "more_body": True})
    while (await receive())["type"] != "http.disconnect":
        pass
    _disconnects.append(scope["path"])


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
    if scope["type"] == "websocket":
        await websocket_echo(scope, receive, send)
        return
    path = scope["path"]
    handler = _ROUTES.get(path.split("/")[1] if path.count("/") > 1 else path[1:])
    if handler is not None:
        await handler(scope, receive, send)
        return
    body = await _body(receive)
    info = {
        "path": path,
        "method": scope["method"],
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "client": scope["client"],
        "server": scope["server"],
        "root_path": scope["root_path"],
        "state": scope.get("state", {}).get("greeting"),
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "extensions": sorted(scope.get("extensions") or {}),
        "body": len(body),
    }
    await _start(send, headers=[(b"content-type", b"application/json")])
    await send({"type": "http.response.body", "body": json.dumps(info).encode()})


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    body = await _body(receive)
    await _start(send)
    await send({"type": "http.response.body", "body": body})


async def big(scope: Scope, receive: Any, send: Any) -> None:
    size = int(scope["query_string"] or b"1048576")
    await _start(send)
    chunk = b"x" * 65536
    while size > 0:
        part = chunk[: min(size, len(chunk))]
        size -= len(part)
        await send({"type": "http.response.body", "body": part, "more_body": size > 0})


async def release(scope: Scope, receive: Any, send: Any) -> None:
    _released.set()
    await _start(send)
    await send({"type": "http.response.body", "body": b"released"})


async def disconnects(scope: Scope, receive: Any, send: Any) -> None:
    await _start(send)
    await send({"type": "http.response.body", "body": json.dumps(_disconnects).encode()})


async def boom_before(scope: Scope, receive: Any, send: Any) -> None:
    raise RuntimeError("boom before the head")


async def boom_after(scope: Scope, receive: Any, send: Any) -> None:
    await _start(send)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("boom after the head")


async def short(scope: Scope, receive: Any, send: Any) -> None:
    await _start(send, headers=[(b"content-length", b"10")])
    await send({"type": "http.response.body", "body": b"12345"})


async def bad_header(scope: Scope, receive: Any, send: Any) -> None:
    await _start(send, headers=[(b"x-bad", b"a\r\nb")])


async def hop_by_hop(scope: Scope, receive: Any, send: Any) -> None:
    headers = [(b"Connection", b"close"), (b"Transfer-Encoding", b"chunked"), (b"X-Kept", b"1")]
    await _start(send, headers=headers)
    await send({"type": "http.response.body", "body": b"ok"})


async def trailers(scope: Scope, receive: Any, send: Any) -> None:
    await _start(send, trailers=True)
    await send({"type": "http.response.body", "body": b"data"})
    fields = [(b"grpc-status", b"0"), (b"content-length", b"9")]
    await send({"type": "http.response.trailers", "headers": fields})


async def early(scope: Scope, receive: Any, send: Any) -> None:
    await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]})
    await _start(send)
    await send({"type": "http.response.body", "body": b"after the hint"})


async def pathsend(scope: Scope, receive: Any, send: Any) -> None:
    path = os.environ["CORRAL_TEST_PATHSEND"]
    await _start(send)
    await send({"type": "http.response.pathsend", "path": path})


async def sleep(scope: Scope, receive: Any, send: Any) -> None:
    print("sleeping in", scope["path"], flush=True)  # the test waits for this line
    await asyncio.sleep(float(scope["query_string"] or b"1"))
    await _start(send)
    await send({"type": "http.response.body", "body": b"slept"})


async def no_read(scope: Scope, receive: Any, send: Any) -> None:
    await _start(send)
    await send({"type": "http.response.body", "body": b"unread"})


async def no_response(scope: Scope, receive: Any, send: Any) -> None:
    return


async def websocket_echo(scope: Scope, receive: Any, send: Any) -> None:
    message = await receive()
    assert message["type"] == "websocket.connect"
    if scope["path"] == "/ws/deny":
        await send({"type": "websocket.close"})
        return
    subprotocol = scope["subprotocols"][0] if scope["subprotocols"] else None
    if scope["path"] == "/ws/mute":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "muted"})
        await asyncio.Event().wait()  # never receives
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    await send({"type": "websocket.send", "text": f"hello {scope['http_version']} {scope['path']}"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "close":
            await send({"type": "websocket.close", "code": 1000})
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


_ROUTES = {
    "gather": gather,
    "hold": hold,
    "wait-disconnect": wait_disconnect,
    "echo": echo,
    "big": big,
    "release": release,
    "disconnects": disconnects,
    "boom-before": boom_before,
    "boom-after": boom_after,
    "short": short,
    "bad-header": bad_header,
    "hop-by-hop": hop_by_hop,
    "trailers": trailers,
    "early": early,
    "pathsend": pathsend,
    "no-response": no_response,
    "sleep": sleep,
    "no-read": no_read,
}
