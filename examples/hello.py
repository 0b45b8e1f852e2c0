"""A small WSGI application with no dependencies: what `make run` serves.

`make run` starts `corral --workers 2 --bind 127.0.0.1:8000 hello:application` from this
directory, so each route below is one curl away:

    curl http://127.0.0.1:8000/                          plain text
    curl http://127.0.0.1:8000/json                      a JSON object
    curl --data-binary @somefile http://127.0.0.1:8000/echo   the body, sent back
    curl -N http://127.0.0.1:8000/stream                 chunks, as they are produced

Anything else answers 404. It doubles as the application the benchmarks and smoke tests use,
so it stays plain WSGI (PEP 3333) with no framework.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

# Read the request body in pieces of this size, so a large upload never sits whole in memory
# while it is being read.
READ_SIZE = 64 * 1024


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    body = b"Hello, World!\n"
    start_response("200 OK", _headers("text/plain; charset=utf-8", len(body)))
    return [body]


def json_route(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    document = {
        "message": "Hello, World!",
        "server": environ.get("SERVER_SOFTWARE", ""),
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "pid": os.getpid(),
    }
    body = json.dumps(document).encode()
    start_response("200 OK", _headers("application/json", len(body)))
    return [body]


def echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    if environ["REQUEST_METHOD"] != "POST":
        return method_not_allowed(environ, start_response)
    chunks = list(_read_body(environ))
    total = sum(len(chunk) for chunk in chunks)
    content_type = environ.get("CONTENT_TYPE") or "application/octet-stream"
    start_response("200 OK", _headers(content_type, total))
    return chunks


def stream(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    # No Content-Length: the server frames the body itself (chunked on HTTP/1.1, or closes
    # the connection on HTTP/1.0), and sends each chunk as the generator yields it.
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return _count_to(5)


def not_found(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    body = b"Not Found\n"
    start_response("404 Not Found", _headers("text/plain; charset=utf-8", len(body)))
    return [body]


def method_not_allowed(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    body = b"Method Not Allowed: use POST\n"
    headers = [*_headers("text/plain; charset=utf-8", len(body)), ("Allow", "POST")]
    start_response("405 Method Not Allowed", headers)
    return [body]


ROUTES: dict[str, Callable[[Environ, StartResponse], Iterable[bytes]]] = {
    "/": hello,
    "/json": json_route,
    "/echo": echo,
    "/stream": stream,
}


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI entry point: dispatch on the path."""
    route = ROUTES.get(environ.get("PATH_INFO") or "/", not_found)
    return route(environ, start_response)


def _headers(content_type: str, length: int) -> list[tuple[str, str]]:
    return [("Content-Type", content_type), ("Content-Length", str(length))]


def _read_body(environ: Environ) -> Iterator[bytes]:
    """Yield the request body in READ_SIZE pieces.

    With a Content-Length, never ask for more than is left; without one (a chunked upload)
    read until the server says the body is over.
    """
    body = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    remaining = int(length) if length else None
    while remaining is None or remaining > 0:
        size = READ_SIZE if remaining is None else min(READ_SIZE, remaining)
        chunk = body.read(size)
        if not chunk:
            break
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def _count_to(count: int) -> Iterator[bytes]:
    for number in range(1, count + 1):
        yield f"chunk {number} of {count}\n".encode()
