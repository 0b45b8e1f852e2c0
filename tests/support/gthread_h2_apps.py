"""WSGI applications for the gthread worker's HTTP/2 tests (tests/workers/test_gthread_h2.py).

CORRAL_TEST_MARKS names a file the applications append to when a response's iterable is
closed, so a test can see that a reset stream's response was really ended.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

MARKS = os.environ.get("CORRAL_TEST_MARKS", "")
_barrier = threading.Barrier(int(os.environ.get("CORRAL_TEST_BARRIER", "16")))


def _mark(text: str) -> None:
    if MARKS:
        with open(MARKS, "a") as fh:
            fh.write(text + "\n")


def _query(environ: Environ) -> dict[str, str]:
    pairs = (item.partition("=") for item in environ["QUERY_STRING"].split("&") if item)
    return {key: value for key, _, value in pairs}


def _text(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _upload(environ: Environ, start_response: StartResponse) -> list[bytes]:
    digest = hashlib.sha256()
    size = 0
    while data := environ["wsgi.input"].read(65536):
        digest.update(data)
        size += len(data)
    body = json.dumps({"size": size, "sha256": digest.hexdigest()}).encode()
    return _text(start_response, body)


def _big(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    size = int(_query(environ).get("n", "1048576"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    chunk = b"x" * 16384
    for start in range(0, size, len(chunk)):
        yield chunk[: size - start]


def _blob(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return _text(start_response, b"b" * int(_query(environ).get("n", "100000")))


def _headers(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Fields HTTP/2 forbids (RFC 9113 §8.2.2) beside ordinary ones, and a status to choose."""
    status = _query(environ).get("status", "200 OK").replace("%20", " ")
    start_response(
        status,
        [
            ("Content-Type", "text/plain"),
            ("X-Mixed-Case", "kept"),
            ("Connection", "close"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
        ],
    )
    return [b"" if status.startswith(("204", "304")) else b"headers"]


def _bytes_like(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield bytearray(b"array ")
    yield memoryview(b"view")  # type: ignore[misc]


def _bad_header(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("X-Bad", "line\r\nbreak")])
    return [b"never"]


class _Endless:
    """Yields a chunk every 20 ms until closed; closing is marked."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield b"tick\n"
            time.sleep(0.02)

    def close(self) -> None:
        _mark(f"closed {self.name}")


def _endless(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _Endless(_query(environ).get("name", "endless"))


def _barrier_wait(environ: Environ, start_response: StartResponse) -> list[bytes]:
    # Every party must be in the application at the same time, or this fails.
    _barrier.wait(timeout=20)
    return _text(start_response, b"together")


def _sleep(environ: Environ, start_response: StartResponse) -> list[bytes]:
    mark = _query(environ).get("mark")
    if mark:
        _mark(mark)
    time.sleep(int(_query(environ).get("ms", "50")) / 1000)
    return _text(start_response, b"slept")


def _boom_before(environ: Environ, start_response: StartResponse) -> list[bytes]:
    raise RuntimeError("boom before the head")


def _boom_after(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first part\n"
    raise RuntimeError("boom after the head")


def _short(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "100")])
    return [b"only ten b"]


def _write(environ: Environ, start_response: StartResponse) -> list[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    for n in range(int(_query(environ).get("n", "3"))):
        write(b"line %d\n" % n)
    return [b"end\n"]


def _file(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    size = int(_query(environ).get("n", "300000"))
    fh = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the response)
    fh.write(bytes(range(256)) * (size // 256) + b"z" * (size % 256))
    fh.seek(0)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](fh, 65536)
    return wrapper


def _environ(environ: Environ, start_response: StartResponse) -> list[bytes]:
    view = {k: v for k, v in environ.items() if isinstance(v, str)}
    return _text(start_response, json.dumps(view, sort_keys=True).encode())


ROUTES = {
    "/upload": _upload,
    "/big": _big,
    "/blob": _blob,
    "/headers": _headers,
    "/bad-header": _bad_header,
    "/bytes-like": _bytes_like,
    "/endless": _endless,
    "/barrier": _barrier_wait,
    "/sleep": _sleep,
    "/boom-before": _boom_before,
    "/boom-after": _boom_after,
    "/short": _short,
    "/write": _write,
    "/file": _file,
    "/environ": _environ,
}


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    handler = ROUTES.get(environ["PATH_INFO"])
    if handler is None:
        return _text(start_response, b"hello over " + environ["SERVER_PROTOCOL"].encode())
    return handler(environ, start_response)
