"""The application the reliability scenarios serve: support.apps:echo plus the routes they need.

- `/bytes?N`: a download of N bytes, generated 64 KiB at a time (never held whole), with a
  Content-Length so that it is framed the same way on HTTP/1.0 and 1.1;
- `/hang`: never returns (the stuck-worker scenario; its name must show in the dumped stack);
- everything else goes to support.apps:echo (`/slow?secs`, `/upload`, `/echo-body`, `/pid`...).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from support.apps import echo

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

CHUNK = 64 * 1024
_BLOCK = bytes(range(256)) * (CHUNK // 256)


def generated_bytes(size: int) -> Iterator[bytes]:
    """The same bytes `/bytes?N` sends (clients can check what they receive)."""
    while size > 0:
        piece = _BLOCK if size >= CHUNK else _BLOCK[:size]
        size -= len(piece)
        yield piece


def _bytes(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    size = int(environ.get("QUERY_STRING") or CHUNK)
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
    )
    return generated_bytes(size)


def hang_forever(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    while True:
        time.sleep(0.05)


ROUTES: dict[str, Callable[[Environ, StartResponse], Iterable[bytes]]] = {
    "/bytes": _bytes,
    "/hang": hang_forever,
}


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    handler = ROUTES.get(environ["PATH_INFO"], echo)
    return handler(environ, start_response)


APP = "reliability.apps:app"
