"""The plain WSGI application (PEP 3333) behind every scenario except the Flask one.

Routes, one per scenario:

    GET  /         "Hello, World!" (13 bytes): the server's own cost per request
    GET  /json     a 1 KB JSON document, serialised on every request
    GET  /static   the file named by BENCH_STATIC_FILE, through wsgi.file_wrapper
    POST /echo     the request body, sent back
    GET  /stream?N N bytes (32 MiB if no N), generated 64 KiB at a time, never held whole
    POST /upload   the request body read 64 KiB at a time and counted; answers the count

It must stay framework-free and do the same work under every server, so that a difference in
the numbers is the server's. It imports nothing outside the standard library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]

HELLO = b"Hello, World!"
BLOCK_SIZE = 64 * 1024
STREAM_SIZE = 32 * 1024 * 1024
_BLOCK = bytes(range(256)) * (BLOCK_SIZE // 256)
STATIC_FILE = os.environ.get("BENCH_STATIC_FILE", "")

# About 1 KB once serialised: a list of records, as a typical API answer looks.
DOCUMENT = {
    "status": "ok",
    "page": 1,
    "items": [
        {"id": i, "name": f"item-{i:03d}", "price": i * 1.25, "tags": ["bench", "json"]}
        for i in range(14)
    ],
}


def json_body() -> bytes:
    """The bytes /json answers; nginx returns the same bytes as a fixed string."""
    return json.dumps(DOCUMENT).encode()


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


def json_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    body = json_body()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]


def static(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    file = open(STATIC_FILE, "rb")  # noqa: SIM115 - the server closes it through the wrapper
    wrapper = environ.get("wsgi.file_wrapper")
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(os.fstat(file.fileno()).st_size)),
            # Tells the benchmark which path the server took: some servers have no wrapper.
            ("X-File-Wrapper", "yes" if wrapper else "no"),
        ],
    )
    if wrapper is not None:
        return wrapper(file, BLOCK_SIZE)  # type: ignore[no-any-return]
    return _blocks(file)


def _blocks(file: BinaryIO) -> Iterator[bytes]:
    with file:
        while block := file.read(BLOCK_SIZE):
            yield block


def echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    chunks = []
    while remaining > 0:
        chunk = stream.read(min(remaining, BLOCK_SIZE))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    body = b"".join(chunks)
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]


def stream_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    size = int(environ.get("QUERY_STRING") or STREAM_SIZE)
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
    start_response("200 OK", headers)
    return _generated(size)


def _generated(size: int) -> Iterator[bytes]:
    while size > 0:
        block = _BLOCK if size >= BLOCK_SIZE else _BLOCK[:size]
        size -= len(block)
        yield block


def upload(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    size = 0
    while size < remaining:
        block = stream.read(min(remaining - size, BLOCK_SIZE))
        if not block:
            break
        size += len(block)
    body = str(size).encode()
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]


def not_found(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
    return []


ROUTES: dict[tuple[str, str], App] = {
    ("GET", "/"): hello,
    ("GET", "/json"): json_route,
    ("GET", "/static"): static,
    ("POST", "/echo"): echo,
    ("GET", "/stream"): stream_route,
    ("POST", "/upload"): upload,
}


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    route = ROUTES.get((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")), not_found)
    return route(environ, start_response)
