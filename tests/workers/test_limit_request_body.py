"""limit_request_body through real servers: sync and gthread (bodies buffered by the loop, and
streamed with request_body_buffer=0) and asgi, with Content-Length and chunked bodies, with and
without `Expect: 100-continue`. Over the limit: 413 and the connection closed; a Content-Length
over it is refused before the application is called and without a 100 Continue."""

from __future__ import annotations

import socket

import pytest

from support.client import Response, connect, read_response
from support.server import Server

LIMIT = 1000
WSGI = "support.body_limit_apps:wsgi_echo"
ASGI = "support.body_limit_apps:asgi_echo"
CONFIGS = {
    "sync": (WSGI, ["-k", "sync"]),
    "sync-streamed": (WSGI, ["-k", "sync", "--request-body-buffer", "0"]),
    "gthread": (WSGI, ["-k", "gthread", "--threads", "4"]),
    "gthread-streamed": (WSGI, ["-k", "gthread", "--threads", "4", "--request-body-buffer", "0"]),
    "asgi": (ASGI, ["-k", "asgi"]),
}


def server(config: str) -> Server:
    app, args = CONFIGS[config]
    return Server(app, *args, "--limit-request-body", str(LIMIT))


def closed(sock: socket.socket, rest: bytes) -> bool:
    """The server sent nothing more and closed (a reset counts as closed)."""
    if rest:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def refused(sock: socket.socket, rest: bytes = b"") -> None:
    resp, rest = read_response(sock, rest)
    assert resp.status == 413, (resp.status, resp.body)
    assert resp.header("Connection") == "close"
    assert closed(sock, rest)


def post(port: int, head: bytes, body: bytes, expect: bool = False) -> tuple[Response, bytes]:
    with connect(port) as sock:
        extra = b"Expect: 100-continue\r\n" if expect else b""
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\n" + head + extra + b"\r\n")
        rest = b""
        if expect:
            interim, rest = read_response(sock, head_only=True)
            assert interim.status == 100
        sock.sendall(body)
        return read_response(sock, rest)


def chunked(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("config", CONFIGS)
def test_content_length_over_the_limit(config: str) -> None:
    with server(config) as srv:
        for expect in (b"", b"Expect: 100-continue\r\n"):
            with connect(srv.port) as sock:
                head = b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n" % (LIMIT + 1)
                sock.sendall(head + expect + b"\r\n")
                refused(sock)  # 413 at once: no 100 Continue first, even when one is expected
        # At the limit exactly, with and without 100-continue: served.
        body = bytes(range(256)) * 3 + b"x" * (LIMIT - 768)
        for expect in (False, True):
            resp, _ = post(srv.port, b"Content-Length: %d\r\n" % LIMIT, body, expect)
            assert (resp.status, resp.body) == (200, body)
        log = srv.log()
        assert "app called: /echo" in log
        assert "app called: /big" not in log


@pytest.mark.parametrize("config", CONFIGS)
def test_chunked_body_passing_the_limit(config: str) -> None:
    te = b"Transfer-Encoding: chunked\r\n"
    with server(config) as srv:
        # One chunk larger than the limit; then chunks that pass it together (400 + 400 is
        # within, a third 400 would make 1200: refused at its size line).
        over_at_once = [b"%x\r\n" % (LIMIT + 1)]
        over_in_three = [b"190\r\n" + b"a" * 400 + b"\r\n", b"190\r\n" + b"b" * 400 + b"\r\n"]
        for pieces in (over_at_once, [*over_in_three, b"190\r\n"]):
            with connect(srv.port) as sock:
                sock.sendall(b"POST /big HTTP/1.1\r\nHost: h\r\n" + te + b"\r\n")
                for piece in pieces:
                    sock.sendall(piece)
                refused(sock)
        # With 100-continue, the limit is only known as the body arrives: 100, then 413.
        with connect(srv.port) as sock:
            sock.sendall(
                b"POST /big HTTP/1.1\r\nHost: h\r\n" + te + b"Expect: 100-continue\r\n\r\n"
            )
            interim, rest = read_response(sock, head_only=True)
            assert interim.status == 100
            sock.sendall(b"%x\r\n" % (LIMIT + 1))
            refused(sock, rest)
        # Within the limit, in several chunks: served.
        body = b"z" * LIMIT
        resp, _ = post(srv.port, te, chunked(body, 300))
        assert (resp.status, resp.body) == (200, body)
        resp, _ = post(srv.port, te, chunked(body, 300), expect=True)
        assert (resp.status, resp.body) == (200, body)
