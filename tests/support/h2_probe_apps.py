"""The application behind the HTTP/2 conformance and attack tests, as WSGI (`wsgi`) and ASGI
(`asgi`): it counts how many of its calls run at once, so a test can tell whether the server
ever ran more handlers than `http2_max_concurrent_streams`.

Routes (any method):
- `/hold?s=S`: stays in the application until `/release` is called or S seconds (2 by
  default) have passed, then answers 200. While it stays, it counts as running.
- `/release`: lets every waiting `/hold` go.
- `/peak`: JSON `{"peak": most calls ever running at once, "running": now, "started": all}`
  (`/peak` itself is not counted).
- `/big?n=N`: N bytes of body.
- anything else: reads the whole request body and answers 200 with `x-body-length`.

State is per worker process: the tests run one worker. What this module must never do: sleep
where it could wait on an event, or keep state other than the counters.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Counter:
    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.started = 0

    def enter(self) -> None:
        self.running += 1
        self.started += 1
        self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        self.running -= 1

    def json(self) -> bytes:
        return json.dumps(
            {"peak": self.peak, "running": self.running, "started": self.started}
        ).encode()


def _seconds(query: str) -> float:
    return float(urllib.parse.parse_qs(query).get("s", ["2"])[0])


def _size(query: str) -> int:
    return int(urllib.parse.parse_qs(query).get("n", ["0"])[0])


# -- WSGI -------------------------------------------------------------------------------------

_threads = Counter()
_lock = threading.Lock()
_release = threading.Event()


def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    global _release
    path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    if path == "/peak":
        with _lock:
            body = _threads.json()
    elif path == "/release":
        with _lock:
            _release.set()
            _release = threading.Event()
        body = b"released"
    elif path == "/hold":
        with _lock:
            _threads.enter()
            event = _release
        try:
            event.wait(_seconds(query))
        finally:
            with _lock:
                _threads.leave()
        body = b"held"
    elif path == "/big":
        body = b"x" * _size(query)
    else:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("x-body-length", str(len(body)))])
        return [b"ok"]
    start_response("200 OK", [("content-length", str(len(body)))])
    return [body]


# -- ASGI -------------------------------------------------------------------------------------

_tasks = Counter()
_events: list[asyncio.Event] = []


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": kind + ".complete"})
            if kind == "lifespan.shutdown":
                return
    path, query = scope["path"], scope["query_string"].decode()
    headers: list[tuple[bytes, bytes]] = []
    if path == "/peak":
        body = _tasks.json()
    elif path == "/release":
        for event in _events:
            event.set()
        _events.clear()
        body = b"released"
    elif path == "/hold":
        _tasks.enter()
        event = asyncio.Event()
        _events.append(event)
        try:
            await asyncio.wait_for(event.wait(), _seconds(query))
        except asyncio.TimeoutError:
            pass
        finally:
            _tasks.leave()
        body = b"held"
    elif path == "/big":
        body = b"x" * _size(query)
    else:
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body") or message["type"] != "http.request":
                break
        headers.append((b"x-body-length", str(size).encode()))
        body = b"ok"
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
