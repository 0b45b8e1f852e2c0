"""Response headers from an ASGI application, checked before anything is written: the grammar
of every field line, no line smuggled inside a value, and the fields the server owns."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.adapters.asgi import Exchange
from corral.http.parser import Limits, parse_head


class Transport:
    def __init__(self) -> None:
        self.out = b""

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        return None

    must_drain = False

    def resume_reading(self) -> None:
        return None

    async def sendfile(self, file: Any, offset: int, count: int) -> None:
        raise AssertionError("not used here")


def respond(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, Exchange]:
    parsed = parse_head(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", Limits())
    assert parsed is not None
    transport = Transport()
    exchange = Exchange(transport, parsed[0], True)

    async def run() -> None:
        await exchange.send({"type": "http.response.start", "status": 200, "headers": headers})
        await exchange.send({"type": "http.response.body", "body": b"ok"})

    asyncio.run(run())
    return transport.out, exchange


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-a", b"one\r\nSet-Cookie: evil=1")],  # a line smuggled in a value
        [(b"x-a\r\nSet-Cookie", b"evil=1")],  # ... or in a name
        [(b"bad name", b"x")],
        [(b"x-a", b"bare\nnewline")],
        [(b"x-a", b"nul\x00")],
        [(b"", b"empty name")],
        [(b"content-length", b"12a")],
    ],
)
def test_bad_headers_raise_before_anything_is_written(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(RuntimeError, match="invalid"):
        respond(headers)


def test_good_headers_and_server_owned_fields() -> None:
    out, exchange = respond(
        [
            (b"Content-Type", b"text/plain"),
            (b"x-empty", b""),
            (b"x-tab", b"a\tb"),
            (b"Transfer-Encoding", b"chunked"),  # the server frames the body itself
            (b"connection", b"close"),
            (b"content-length", b"2"),
        ]
    )
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK" and body == b"ok"
    assert b"Content-Type: text/plain" in lines and b"x-empty: " in lines
    assert b"x-tab: a\tb" in lines and b"Content-Length: 2" in lines
    assert b"Connection: close" in lines and not exchange.keep_alive
    assert not any(line.lower().startswith(b"transfer-encoding") for line in lines)
