"""ASGI apps for tests/workers/test_asgi_review.py: the races and crash paths the review of the
asgi worker found, each behind its own path."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

user = contextvars.ContextVar("user", default="anonymous")

Scope = dict[str, Any]


async def _answer(send: Any, body: bytes, status: int = 200) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _marker(scope: Scope) -> str:
    return scope["query_string"].decode()


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/record":  # what it receives, into the file the query names
            while (message := await receive())["type"] == "websocket.receive":
                with open(_marker(scope), "a") as fh:
                    fh.write(message["text"] + "\n")
            with open(_marker(scope), "a") as fh:
                fh.write(f"disconnect {message['code']}\n")
            return
        await send({"type": "websocket.close", "code": 1000})  # then it never receives
        await asyncio.sleep(30)
        return
    path = scope["path"]
    if path == "/user":  # sets a ContextVar when asked to, and answers what it holds
        for name, value in scope["headers"]:
            if name == b"x-user":
                user.set(value.decode())
        await _answer(send, user.get().encode())
    elif path == "/background":  # work after the response, as Starlette's BackgroundTasks
        await _answer(send, b"ok")
        try:
            await asyncio.sleep(1.5)
            result = "done"
        except asyncio.CancelledError:
            result = "cancelled"
            raise
        finally:
            with open(_marker(scope), "w") as fh:
                fh.write(result)
    elif path == "/orphan":  # its client leaves; the server stops before it ends
        try:
            await asyncio.sleep(20)
        finally:
            with open(_marker(scope), "w") as fh:
                fh.write("finally ran")
    elif path == "/big":  # 8 MiB in one message
        await _answer(send, b"x" * (8 * 1024 * 1024))
    elif path == "/wait-disconnect":  # answers once it hears the client is done
        while (await receive())["type"] != "http.disconnect":
            pass
        await _answer(send, b"heard")
    elif path == "/slow":
        await asyncio.sleep(0.3)
        await _answer(send, b"slow answer")
    elif path == "/bad-trailer":
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"hello"})
        trailer = {"type": "http.response.trailers", "more_trailers": True}
        await send({**trailer, "headers": [(b"x-bad", b"a\r\nb")]})
    else:
        await _answer(send, path.encode())
