"""The WSGI exchange through a fake transport: what it yields for the engine to send, when it
pulls the application's iterable, and what it returns for the connection."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from corral.adapters.body import EMPTY_BODY
from corral.adapters.response import FileRange
from corral.adapters.wsgi import Exchange, WSGIAdapter
from corral.http.parser import Request, parse_head


class FakeTransport:
    remote_addr = "192.0.2.1"
    remote_port = "5000"
    server_name = "127.0.0.1"
    server_port = "8000"
    trusted = False
    timeout = 5.0
    scheme = "http"

    def __init__(self) -> None:
        self.pushed: list[bytes] = []
        self.leftover: bytes | None = b"unset"

    def recv(self) -> bytes:
        return b""

    def send(self, data: bytes) -> None:
        self.pushed.append(data)


def request(head: bytes) -> Request:
    parsed = parse_head(head)
    assert parsed is not None
    return parsed[0]


def adapter(app: Any, access: Any = None) -> WSGIAdapter:
    return WSGIAdapter(
        app,
        multithread=False,
        sendfile=True,
        secure_scheme_headers={},
        forwarder_headers=[],
        header_map="drop",
        access=access,
        environ={},
    )


def run(exchange: Exchange, transport: FakeTransport) -> tuple[list[object], bytes | None]:
    """Pull everything, as the engine does when the socket always has room."""
    out = list(exchange)
    return out, transport.leftover


GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"


def test_list_response_is_one_buffer_and_keeps_the_connection() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    transport = FakeTransport()
    out, rest = run(
        adapter(app).exchange(transport, request(GET), EMPTY_BODY, b"NEXT", True), transport
    )
    assert len(out) == 1
    assert isinstance(out[0], bytes)
    assert out[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert out[0].endswith(b"Content-Length: 5\r\n\r\nhello")
    assert rest == b"NEXT"  # the pipelined bytes come back for the loop to parse


def test_generator_is_pulled_one_chunk_per_next() -> None:
    pulled: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        for n in range(3):
            pulled.append(n)
            yield b"x" * 10

    transport = FakeTransport()
    exchange = adapter(app).exchange(transport, request(GET), EMPTY_BODY, b"", True)
    first = next(exchange)
    assert isinstance(first, bytes) and b"Transfer-Encoding: chunked" in first
    assert pulled == [0]  # nothing more is produced until the engine asks (the socket drained)
    next(exchange)
    assert pulled == [0, 1]
    out, rest = run(exchange, transport)
    assert out[-1] == b"0\r\n\r\n"
    assert rest == b""


def test_closing_early_closes_the_iterable_and_logs_the_request() -> None:
    closed: list[bool] = []
    logged: list[str] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"a" * 100
            yield b"b" * 100

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    def access(environ: Any, status: str, headers: Any, sent: Any, seconds: float) -> None:
        logged.append(status)

    exchange = adapter(app, access).exchange(FakeTransport(), request(GET), EMPTY_BODY, b"", True)
    next(exchange)
    exchange.close()  # what the engine does when the client leaves mid-response
    assert closed == [True]
    assert logged == ["200 OK"]


def test_exception_before_the_head_is_a_500_and_closes() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    transport = FakeTransport()
    out, rest = run(
        adapter(app).exchange(transport, request(GET), EMPTY_BODY, b"", True), transport
    )
    assert len(out) == 1
    assert isinstance(out[0], bytes) and out[0].startswith(b"HTTP/1.1 500 ")
    assert rest is None


def test_exception_after_the_head_closes_without_a_second_head() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"part"
        raise RuntimeError("boom")

    transport = FakeTransport()
    out, rest = run(
        adapter(app).exchange(transport, request(GET), EMPTY_BODY, b"", True), transport
    )
    assert [o for o in out if isinstance(o, bytes) and o.startswith(b"HTTP/1.1")] == [out[0]]
    assert rest is None


def test_access_log_failure_never_reaches_the_connection() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    def access(*args: object) -> None:
        raise TypeError("a broken access writer")

    transport = FakeTransport()
    exchange = adapter(app, access).exchange(transport, request(GET), EMPTY_BODY, b"", True)
    out, rest = run(exchange, transport)
    assert out and rest == b""


def test_write_callable_pushes_through_the_transport() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Length", "6")])
        write(b"abc")
        return [b"def"]

    transport = FakeTransport()
    out, rest = run(
        adapter(app).exchange(transport, request(GET), EMPTY_BODY, b"", True), transport
    )
    assert transport.pushed[0].startswith(b"HTTP/1.1 200 OK") and transport.pushed[0].endswith(
        b"abc"
    )
    assert out == [b"def"]
    assert rest == b""


def test_file_wrapper_becomes_a_file_range(tmp_path: Any) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")

    def app(environ: dict[str, Any], start_response: Any) -> object:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    transport = FakeTransport()
    out, rest = run(
        adapter(app).exchange(transport, request(GET), EMPTY_BODY, b"", True), transport
    )
    assert isinstance(out[0], bytes) and b"Content-Length: 10\r\n" in out[0]
    assert isinstance(out[1], FileRange) and (out[1].offset, out[1].count) == (0, 10)
    assert rest == b""


def test_buffered_body_is_wsgi_input_and_closed_after() -> None:
    seen: list[bytes] = []
    body = io.BytesIO(b"payload")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["wsgi.input"].read())
        start_response("200 OK", [])
        return [b""]

    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\n"
    transport = FakeTransport()
    run(adapter(app).exchange(transport, request(head), body, b"", True), transport)
    assert seen == [b"payload"]
    assert body.closed
