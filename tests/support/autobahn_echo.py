"""The echo application the Autobahn|Testsuite fuzzing client talks to (tests/integration/
test_autobahn.py, `make autobahn`).

Every WebSocket message comes back unchanged and of the same kind: text as text, bytes as bytes,
which is what the suite's echo cases expect. It offers no subprotocol and does no framing of its
own: fragmentation, pings, close codes, UTF-8 checks and permessage-deflate are all the worker's,
so a case the suite fails is the worker's behaviour, never this app's. It must never add to or
reshape a message; `reversing_app` does, on purpose, as the control that shows a wrong echo is
caught. Plain HTTP gets a one-line 404 so a stray request is answered; lifespan is
acknowledged so the worker starts the same way with `--asgi-lifespan` on or auto.
"""

from __future__ import annotations

from typing import Any

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    handler = _HANDLERS.get(scope["type"])
    if handler is None:
        raise ValueError(f"unsupported scope type {scope['type']!r}")
    await handler(scope, receive, send)


async def reversing_app(scope: Scope, receive: Any, send: Any) -> None:
    """Echoes every message reversed: each echo case must then fail."""
    if scope["type"] != "websocket":
        await app(scope, receive, send)
        return
    await _websocket(scope, receive, send, transform=_reversed)


def _same(payload: Any) -> Any:
    return payload


def _reversed(payload: Any) -> Any:
    return payload[::-1]


async def _websocket(scope: Scope, receive: Any, send: Any, transform: Any = _same) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": transform(message["text"])})
        else:
            data = message.get("bytes") or b""
            await send({"type": "websocket.send", "bytes": transform(data)})


async def _http(scope: Scope, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"WebSocket echo only\n"})


async def _lifespan(scope: Scope, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


_HANDLERS = {"websocket": _websocket, "http": _http, "lifespan": _lifespan}
