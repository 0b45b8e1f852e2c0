"""The WSGI Response's framing for a request marked close_delimited (a uwsgi packet): whatever
the request's version, a body of unknown length is never chunked and ends with the connection;
a known length, HEAD, 204 and 304 frame as usual; keep-alive is never offered."""

from __future__ import annotations

import pytest

from corral.adapters.response import Response
from corral.http.parser import Request


def request(version: str, method: str = "GET", close_delimited: bool = True) -> Request:
    keep_alive = not close_delimited  # a uwsgi request never keeps its connection
    return Request(
        method, "/", "/", "", version, [], None, False, keep_alive, False, None, close_delimited
    )


def unsent(data: bytes) -> None:
    raise AssertionError("nothing is pushed in these tests")


def respond(
    req: Request, status: str, headers: list[tuple[str, str]], chunks: list[bytes]
) -> tuple[bytes, Response]:
    resp = Response(unsent, req, keep_alive=True)
    resp.start_response(status, headers)
    out = b"".join(piece for chunk in chunks for piece in resp.pieces(chunk))
    return out + resp.tail(), resp


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3"])
def test_unknown_length_is_close_delimited(version: str) -> None:
    out, resp = respond(request(version), "200 OK", [("X-A", "1")], [b"one", b"", b"two"])
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert b"\r\nConnection: close" in head and b"keep-alive" not in head
    assert body == b"onetwo" and not resp.chunked and not resp.keep_alive


def test_the_same_request_unmarked_is_chunked() -> None:
    """The control: HTTP/1.1 without the mark chunks the same response."""
    out, resp = respond(request("HTTP/1.1", close_delimited=False), "200 OK", [], [b"one"])
    assert b"Transfer-Encoding: chunked\r\n" in out and resp.chunked
    assert out.endswith(b"3\r\none\r\n0\r\n\r\n")


def test_known_length_head_and_no_body_statuses() -> None:
    out, _ = respond(request("HTTP/1.1"), "200 OK", [("Content-Length", "3")], [b"abc"])
    assert b"Content-Length: 3\r\n" in out and out.endswith(b"\r\n\r\nabc")
    out, _ = respond(request("HTTP/1.1", "HEAD"), "200 OK", [], [b"ignored"])
    assert out.endswith(b"Connection: close\r\n\r\n") and b"Transfer-Encoding" not in out
    for status in ("204 No Content", "304 Not Modified"):
        out, _ = respond(request("HTTP/1.1"), status, [], [])
        assert b"Transfer-Encoding" not in out and b"Content-Length" not in out
        assert out.endswith(b"Connection: close\r\n\r\n")
