"""Slow and hostile clients: trickled heads never hold a worker, and time out with 408."""

from __future__ import annotations

import http.client
import socket
import time

import pytest

from support.server import Server

WORKERS = {"sync": ["-k", "sync"], "gthread": ["-k", "gthread", "--threads", "2"]}


def quick_get(port: int) -> float:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/fast")
    assert conn.getresponse().status == 200
    conn.close()
    return time.monotonic() - started


@pytest.mark.parametrize("kind", sorted(WORKERS))
def test_500_trickling_connections_do_not_starve_others(kind: str) -> None:
    head = b"GET /slowloris HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"a" * 40
    with Server("support.apps:echo", *WORKERS[kind], "--timeout", "4") as srv:
        slow = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(500)]
        try:
            worst = 0.0
            for i in range(3):  # three rounds of one more byte on every slow connection
                for sock in slow:
                    sock.send(head[i : i + 1])
                worst = max(worst, quick_get(srv.port))
                time.sleep(1)
            print(
                f"{kind}: slowest normal request while 500 clients trickle: {worst * 1000:.0f} ms"
            )
            assert worst < 2.0
            # Past --timeout the trickling clients are answered 408 and closed.
            answered = 0
            for sock in slow:
                sock.settimeout(10)
                data = sock.recv(1024)
                answered += data.startswith(b"HTTP/1.1 408 ")
            assert answered == len(slow)
        finally:
            for sock in slow:
                sock.close()
        assert quick_get(srv.port) < 2.0


@pytest.mark.parametrize("kind", sorted(WORKERS))
def test_head_sent_one_byte_at_a_time(kind: str) -> None:
    head = b"GET /bytewise HTTP/1.1\r\nHost: a\r\nX-Long: " + b"v" * 3000 + b"\r\n\r\n"
    with (
        Server("support.apps:echo", *WORKERS[kind]) as srv,
        socket.create_connection(("127.0.0.1", srv.port)) as sock,
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(head)):
            sock.send(head[i : i + 1])
        sock.settimeout(10)
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
