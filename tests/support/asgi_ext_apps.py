"""ASGI apps for the extension and parity tests of the asgi worker (tests/workers)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

Scope = dict[str, Any]


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _json(send: Any, data: object, status: int = 200) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"x-app", b"ext")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path = scope["path"]
    extensions = scope.get("extensions") or {}
    if path == "/scope":
        await _json(
            send,
            {
                "scheme": scope["scheme"],
                "client": scope["client"],
                "extensions": sorted(extensions),
                "tls": extensions.get("tls"),
            },
        )
    elif path == "/hints":
        links = [b"</style.css>; rel=preload; as=style", b"</app.js>; rel=preload; as=script"]
        await send({"type": "http.response.early_hint", "links": links})
        await _json(send, {"hinted": True})
    elif path == "/trailers":
        start = {"type": "http.response.start", "status": 200, "trailers": True, "headers": []}
        await send(start)
        await send({"type": "http.response.body", "body": b"part one,", "more_body": True})
        await send({"type": "http.response.body", "body": b"part two"})
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-checksum", b"abc123"), (b"content-length", b"99")],
                "more_trailers": True,
            }
        )
        await send({"type": "http.response.trailers", "headers": [(b"x-rows", b"2")]})
    elif path == "/trailers-forgotten":
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"no trailers follow"})
    elif path == "/file":
        file = unquote(scope["query_string"].decode())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": file})
    elif path == "/boom":
        raise RuntimeError("boom from the extension test app")
    else:
        await _json(send, {"path": path})
