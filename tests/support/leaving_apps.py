"""A WSGI app whose response is longer than any socket buffer, and whose iterable says (on
the error log, through wsgi.errors) when the server closes it: for clients that leave half way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

CHUNK = b"x" * 65536


class Endless:
    def __init__(self, errors: Any) -> None:
        self.errors = errors

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(4096):  # 256 MiB: never all sent before the client leaves
            yield CHUNK

    def close(self) -> None:
        self.errors.write("endless response closed\n")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Endless:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Endless(environ["wsgi.errors"])
