"""PROXY protocol v1/v2 through the real server: the client address comes from the header."""

from __future__ import annotations

import json
import socket
import struct

from support.client import connect, exchange, read_response
from support.server import Server

GET = b"GET /who HTTP/1.1\r\nHost: a\r\n\r\n"


def v2_header(src: str, dst: str, sport: int, dport: int) -> bytes:
    addresses = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    return signature + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


def test_v1_and_v2_headers_set_remote_addr_for_every_request() -> None:
    with Server("support.apps:echo", "-k", "gthread", "--proxy-protocol", "auto") as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n" + GET + GET)
            first, rest = read_response(sock)
            second, _ = read_response(sock, rest)
        for resp in (first, second):
            env = json.loads(resp.body)
            assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.7", "40000")
        with connect(srv.port) as sock:
            sock.sendall(v2_header("192.0.2.9", "192.0.2.1", 5555, 80) + GET)
            resp, _ = read_response(sock)
        assert json.loads(resp.body)["REMOTE_ADDR"] == "192.0.2.9"


def test_missing_or_bad_header_closes_without_answer() -> None:
    with Server("support.apps:echo", "--proxy-protocol", "v1") as srv:
        assert exchange(srv.port, GET) == b""
        assert exchange(srv.port, b"PROXY TCP4 300.1.1.1 1.1.1.1 1 2\r\n" + GET) == b""
        assert exchange(srv.port, v2_header("1.2.3.4", "1.2.3.4", 1, 2) + GET) == b""


def test_header_from_untrusted_peer_is_not_interpreted() -> None:
    args = ["--proxy-protocol", "v1", "--proxy-allow-from", "10.0.0.0/8"]
    with Server("support.apps:echo", *args) as srv:
        reply = exchange(srv.port, b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n" + GET)
        assert reply.startswith(b"HTTP/1.1 400 ")
        reply = exchange(srv.port, GET)
        assert json.loads(reply.partition(b"\r\n\r\n")[2])["REMOTE_ADDR"] == "127.0.0.1"
