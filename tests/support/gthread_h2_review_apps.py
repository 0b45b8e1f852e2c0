"""WSGI applications for the review tests of HTTP/2 on the gthread worker
(tests/workers/test_gthread_h2_review.py): iterables whose close() waits on another request,
odd output types, and the routes the stress test mixes with resets, closes and stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

Environ = dict[str, Any]
StartResponse = Any

_released = threading.Event()


def _query(environ: Environ) -> dict[str, str]:
    pairs = (part.partition("=") for part in environ.get("QUERY_STRING", "").split("&") if part)
    return {key: value for key, _, value in pairs}


def _text(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class _HoldOnClose:
    """Yields ticks for ever; its close() waits until /release is served (at most 20 s)."""

    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield b"tick\n" * 100
            time.sleep(0.005)

    def close(self) -> None:
        _released.wait(20)


def _hold_close(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    _released.clear()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _HoldOnClose()


def _release(environ: Environ, start_response: StartResponse) -> list[bytes]:
    _released.set()
    return _text(start_response, b"released")


def _odd(environ: Environ, start_response: StartResponse) -> Iterable[Any]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    kind = _query(environ).get("kind", "str")
    if kind == "str":
        return ["text, not bytes"]
    if kind == "int":
        return [b"ok", 42]
    return [None]


def _read(environ: Environ, start_response: StartResponse) -> list[bytes]:
    size = 0
    stream = environ["wsgi.input"]
    while True:
        chunk = stream.read(8192)
        if not chunk:
            break
        size += len(chunk)
    return _text(start_response, b"%d" % size)


def _write(environ: Environ, start_response: StartResponse) -> list[bytes]:
    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
    chunk = b"w" * 16384
    for _ in range(int(_query(environ).get("n", "64"))):
        write(chunk)
    return []


def _stream(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    chunk = b"s" * 16384
    for _ in range(int(_query(environ).get("n", "64"))):
        yield chunk


def _hang(environ: Environ, start_response: StartResponse) -> list[bytes]:
    _released.wait(60)
    return _text(start_response, b"unstuck")


def _nap(environ: Environ, start_response: StartResponse) -> list[bytes]:
    time.sleep(int(_query(environ).get("ms", "100")) / 1000)
    return _text(start_response, b"rested")


ROUTES = {
    "/nap": _nap,
    "/hang": _hang,
    "/hold-close": _hold_close,
    "/release": _release,
    "/odd": _odd,
    "/read": _read,
    "/write": _write,
    "/stream": _stream,
}


def app(environ: Environ, start_response: StartResponse) -> Iterable[Any]:
    handler = ROUTES.get(environ["PATH_INFO"])
    if handler is None:
        return _text(start_response, b"hello")
    return handler(environ, start_response)
