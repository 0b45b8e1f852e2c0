"""Echo apps (WSGI and ASGI) that say on stderr when they are called, so a test can tell that a
body refused for limit_request_body never reached the application."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any


def _called(path: str) -> None:
    print(f"app called: {path}", file=sys.stderr, flush=True)


def wsgi_echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    _called(environ["PATH_INFO"])
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    _called(scope["path"])
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
