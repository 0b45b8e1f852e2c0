"""h2spec's cases against the real server, on both worker families.

The same table as the sans-IO tests (tests/support/h2_cases.py), sent over loopback by the raw
client of tests/support/h2_client.py to corral serving h2c by prior knowledge
(`--http-protocols h2,h1 --http2-cleartext prior-knowledge`; 127.0.0.1 is trusted by
default). Each case opens its own connection to one server per worker family and asserts the
exact answer: the GOAWAY code (and then the connection closed), the RST_STREAM code (and the
connection still answering a PING), the response status, or nothing but acknowledgements.
After each case a second connection is served: no case may hurt the worker.

With CORRAL_TEST_H2_PEER=hypercorn the table runs against Hypercorn instead (to check the
client and the table, not corral): cases Hypercorn answers otherwise show as failures there.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from support.h2_cases import CASES
from support.h2_client import NO_ERROR, H2Client
from support.h2_servers import h2_server
from support.server import Server

APPS = {
    "asgi": ("support.h2_probe_apps:asgi", ["-k", "asgi"]),
    "gthread": ("support.h2_probe_apps:wsgi", ["-k", "gthread", "--threads", "4"]),
}


# Cases whose answer depends on timing over a real connection, each answer the RFC allows.
EITHER: dict[str, list[tuple[object, ...]]] = {
    # A CONTINUATION on a stream the client reset: a stream error once the server has
    # forgotten the stream, else §6.10's connection error (no header block in progress).
    "http2/5.1/10 CONTINUATION after RST_STREAM": [("reset", 1, 0x5), ("goaway", 0x1)],
}


@pytest.fixture(scope="module", params=list(APPS))
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    app, worker_args = APPS[request.param]
    srv = h2_server(app, worker_args, cleartext="prior-knowledge")
    with srv:
        yield srv


def connect(server: Server) -> H2Client:
    client = H2Client(server.port)
    assert client.read_until(lambda: client.server_settings), "no SETTINGS from the server"
    return client


def served(server: Server) -> bool:
    with connect(server) as client:
        return client.response(client.request("/")).status == 200


def check(client: H2Client, expected: tuple[object, ...]) -> None:
    kind = expected[0]
    if kind == "goaway":
        goaway = client.goaway()
        assert goaway is not None, f"closed without GOAWAY: {client.frames}"
        assert goaway.error_code == expected[1], goaway
        client.wait_closed()
    elif kind == "reset":
        stream_id, code = expected[1], expected[2]
        assert client.read_until(lambda: stream_id in client.resets()), client.frames
        assert client.resets()[stream_id] == code, client.frames
        assert client.ping_pong() and client.last_goaway() is None
    elif kind == "status":
        response = client.response(int(expected[1]))  # type: ignore[call-overload]
        assert response.status == expected[2], client.frames
        assert client.ping_pong() and client.last_goaway() is None
    elif kind == "peer-goaway":
        client.wait_closed()
        goaway = client.last_goaway()
        assert goaway is None or goaway.error_code == NO_ERROR, goaway
    else:
        assert client.ping_pong(), client.frames
        assert client.last_goaway() is None, client.frames
        assert [code for code in client.resets().values() if code != NO_ERROR] == []


@pytest.mark.parametrize("name", list(CASES))
def test_h2spec_case(server: Server, name: str) -> None:
    send, expected = CASES[name]
    with connect(server) as client:
        send(client)
        if name in EITHER:
            client.read_until(lambda: client.resets() or client.last_goaway())
            expected = EITHER[name][0 if client.resets() else 1]
        check(client, expected)
    assert served(server)


def test_http2_3_5_2_invalid_preface_is_refused_and_closed(server: Server) -> None:
    """Not the preface: not HTTP/2 then, and no HTTP/1.1 request either; 400 and closed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400 "), received
    assert served(server)
