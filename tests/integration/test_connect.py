"""CONNECT through the real server: after its response the connection closes, and nothing sent
behind it is ever served.

A WSGI application cannot be a tunnel, and the bytes after a CONNECT are tunnel data (RFC 9110
§9.3.6): read as HTTP, they would be requests a proxy in front never saw (request smuggling).
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from support.client import connect
from support.server import Server

KINDS = {
    "sync": ["-k", "sync"],
    "gthread": ["-k", "gthread", "--threads", "4"],
    "gthread-inline": ["-k", "gthread", "--threads", "1"],
}

CONNECT = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


def read_until_closed(sock: socket.socket) -> bytes:
    """All the server sends until it closes; fails if it keeps the connection open."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"connection left open after {b''.join(chunks)!r}") from None
        except ConnectionResetError:
            data = b""
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def seen(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_nothing_pipelined_behind_connect_is_served(kind: str, tmp_path: Path) -> None:
    log = tmp_path / "seen"
    with Server("support.apps:echo", *KINDS[kind], env={"CORRAL_TEST_SEEN": str(log)}) as srv:
        # Both requests in one write: the second is already buffered when the first is served.
        with connect(srv.port, timeout=5.0) as sock:
            sock.sendall(CONNECT + SMUGGLED)  # no half-close: the server must close by itself
            reply = read_until_closed(sock)
        assert reply.count(b"HTTP/1.1 ") == 1, reply
        head = reply.partition(b"\r\n\r\n")[0]
        assert b"\r\nConnection: close" in head, head
        assert "CONNECT example.com:443" in seen(log)
        assert "/smuggled" not in seen(log)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_connect_closes_before_a_later_request(kind: str, tmp_path: Path) -> None:
    log = tmp_path / "seen"
    with Server("support.apps:echo", *KINDS[kind], env={"CORRAL_TEST_SEEN": str(log)}) as srv:
        with connect(srv.port, timeout=5.0) as sock:
            sock.sendall(CONNECT)
            reply = b""
            while b"\r\n\r\n" not in reply:
                data = sock.recv(65536)
                assert data, f"closed before a response: {reply!r}"
                reply += data
            assert reply.startswith(b"HTTP/1.1 200 "), reply
            # The next request arrives only after the response: the server has closed (or
            # closes now), and never answers it.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(SMUGGLED)
            reply += read_until_closed(sock)
        assert reply.count(b"HTTP/1.1 ") == 1, reply
        assert "/smuggled" not in seen(log)
