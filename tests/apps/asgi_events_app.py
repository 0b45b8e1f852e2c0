"""A plain ASGI application (no framework) that records what happens to it, for the asgi
worker's reliability scenarios (tests/reliability/test_asgi_*.py):

- `/load`: 200 "ok", for steady client load; `/pid`: the worker's pid;
- `/stream`: an endless chunked response, one line every 20 ms, until the client goes: it then
  records "stream disconnect" (receive gave http.disconnect), "stream send failed" (a send
  raised OSError) or "stream cancelled" (the task was cancelled before either);
- `/ws`: a WebSocket echo that records "ws disconnect <code>" when the connection ends;
- lifespan: "startup" and, at shutdown, "shutdown"; the shutdown also writes "shutdown <pid>" to
  the file named by CORRAL_TEST_SHUTDOWN_FILE (apps/asgi_common.py).

Events are appended, one line each, to the file named by CORRAL_TEST_EVENTS (if set), so the
test reads what the application saw after the server is gone.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from apps.asgi_common import write_shutdown_mark

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def record(event: str) -> None:
    target = os.environ.get("CORRAL_TEST_EVENTS")
    if target:
        with open(target, "a") as events:
            events.write(f"{event}\n")


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            record("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            record("shutdown")
            write_shutdown_mark()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def respond(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def stream(receive: Receive, send: Send) -> None:
    """Chunks until the client leaves; a concurrent receive learns when it does (the first
    message is the empty request body, the next the disconnect)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    pending = asyncio.ensure_future(receive())
    n = 0
    try:
        while True:
            if pending.done():
                if pending.result()["type"] == "http.disconnect":
                    record("stream disconnect")
                    return
                pending = asyncio.ensure_future(receive())
            chunk = {"type": "http.response.body", "body": b"tick %d\n" % n, "more_body": True}
            try:
                await send(chunk)
            except OSError:
                record("stream send failed")
                return
            n += 1
            await asyncio.wait([pending], timeout=0.02)
    except asyncio.CancelledError:
        record("stream cancelled")
        raise
    finally:
        pending.cancel()


async def websocket(receive: Receive, send: Send) -> None:
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            record(f"ws disconnect {message.get('code')}")
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "websocket":
        await websocket(receive, send)
    elif scope["path"] == "/stream":
        await stream(receive, send)
    elif scope["path"] == "/pid":
        await respond(send, str(os.getpid()).encode())
    else:
        while (await receive()).get("more_body"):
            pass
        await respond(send, b"ok")
