"""WebSocket on the asgi worker, with the `websockets` library as the client (nobody here
wrote it) and raw sockets for what a well-behaved client never sends."""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import pytest

from support.client import connect, read_response
from support.server import Server

sync_client = pytest.importorskip("websockets.sync.client")
exceptions = pytest.importorskip("websockets.exceptions")

APP = "support.asgi_apps:websocket_app"


def test_echo_text_and_bytes_with_subprotocol() -> None:
    with Server(APP, "-k", "asgi") as srv:
        url = f"ws://127.0.0.1:{srv.port}/ws"
        with sync_client.connect(url, subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            ws.send("hello")
            assert ws.recv(timeout=5) == "echo: hello"
            payload = os.urandom(200_000)  # several frames' worth, and a 64-bit length
            ws.send(payload)
            assert ws.recv(timeout=5) == payload
            ws.send("close please")
            with pytest.raises(exceptions.ConnectionClosed) as closed:
                ws.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "asked")


def test_close_before_accept_is_403_and_crash_after_is_1011() -> None:
    with Server(APP, "-k", "asgi") as srv:
        with pytest.raises(exceptions.InvalidStatus) as refused:
            sync_client.connect(f"ws://127.0.0.1:{srv.port}/refuse")
        assert refused.value.response.status_code == 403
        with (
            sync_client.connect(f"ws://127.0.0.1:{srv.port}/crash") as ws,
            pytest.raises(exceptions.ConnectionClosed) as closed,
        ):
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        assert "crash after accept" in srv.log()


def handshake(port: int, path: str = "/ws") -> tuple[object, bytes]:
    sock = connect(port, timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    resp, rest = read_response(sock, head_only=True)
    assert resp.status == 101
    return sock, rest


def test_unmasked_client_frame_is_closed_1002() -> None:
    with Server(APP, "-k", "asgi") as srv:
        sock, rest = handshake(srv.port)
        with sock:  # type: ignore[attr-defined]
            sock.sendall(b"\x81\x05hello")  # type: ignore[attr-defined]
            data = rest
            while len(data) < 4:
                chunk = sock.recv(100)  # type: ignore[attr-defined]
                if not chunk:
                    break
                data += chunk
        assert data[:2] == b"\x88\x02" and int.from_bytes(data[2:4], "big") == 1002


def test_bad_version_is_426_and_plain_http_still_works() -> None:
    with Server(APP, "-k", "asgi") as srv, connect(srv.port) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        assert read_response(sock)[0].status == 426
        with connect(srv.port) as plain:
            plain.sendall(b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(plain)[0].status == 200


def test_the_example_chat_app() -> None:
    examples = str(Path(__file__).resolve().parents[2] / "examples")
    with Server("chat:app", "-k", "asgi", "--pythonpath", examples) as srv:
        with sync_client.connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "HELLO"
        with connect(srv.port) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(sock)[0].body == b"ok"


def test_ping_after_our_close_does_not_break_the_close_handshake() -> None:
    with Server("support.asgi_apps:close_then_wait", "-k", "asgi") as srv:
        sock, rest = handshake(srv.port)
        with sock:  # type: ignore[attr-defined]
            data = rest
            while len(data) < 4:
                data += sock.recv(100)  # type: ignore[attr-defined]
            assert data[:2] == b"\x88\x02"  # our Close, 1000
            mask = b"\x01\x02\x03\x04"
            sock.sendall(b"\x89\x80" + mask)  # type: ignore[attr-defined]  # a masked Ping
            close = bytes(b ^ mask[i % 4] for i, b in enumerate((1000).to_bytes(2, "big")))
            sock.sendall(b"\x88\x82" + mask + close)  # type: ignore[attr-defined]
            assert sock.recv(100) in (b"",)  # type: ignore[attr-defined]  # then the server closes
        assert "Fatal error" not in srv.log() and "Traceback" not in srv.log()


def test_message_over_the_limit_is_closed_1009() -> None:
    with Server(APP, "-k", "asgi", "--websocket-max-message-size", "1000") as srv:
        with sync_client.connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
            ws.send("x" * 500)
            assert ws.recv(timeout=5) == "echo: " + "x" * 500
            ws.send("y" * 2000)
            with pytest.raises(exceptions.ConnectionClosed) as closed:
                ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# --- the websocket.http.response extension ---------------------------------------------------

DENIER = "support.asgi_websocket_apps:denier"


def upgrade_request(path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("path", "framing"), [("/length", "Content-Length"), ("/chunked", "Transfer-Encoding")]
)
def test_denial_with_a_full_http_response(path: str, framing: str) -> None:
    with Server(DENIER, "-k", "asgi") as srv, connect(srv.port) as sock:
        sock.sendall(upgrade_request(path))
        resp, rest = read_response(sock)
        assert (resp.status, resp.body) == (401, b"log in first")
        assert resp.header(framing) is not None
        assert resp.header("X-Reason") == "token expired"
        assert resp.header("Connection") == "close"
        assert resp.header("Upgrade") is None and resp.header("Sec-WebSocket-Accept") is None
        assert rest == b"" and sock.recv(100) == b""  # then the connection ends
        assert "Traceback" not in srv.log()


def test_denial_seen_by_the_websockets_client() -> None:
    with Server(DENIER, "-k", "asgi") as srv:
        with pytest.raises(exceptions.InvalidStatus) as refused:
            sync_client.connect(f"ws://127.0.0.1:{srv.port}/length")
        assert refused.value.response.status_code == 401
        assert refused.value.response.body == b"log in first"


@pytest.mark.parametrize("path", ["/unfinished", "/twice"])
def test_denial_left_unfinished_or_mixed_with_close_is_500(path: str) -> None:
    with Server(DENIER, "-k", "asgi") as srv, connect(srv.port) as sock:
        sock.sendall(upgrade_request(path))
        assert read_response(sock)[0].status == 500
        assert sock.recv(100) == b""
        with connect(srv.port) as plain:  # the worker goes on
            plain.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(plain)[0].status == 200
        if path == "/twice":
            assert "after websocket.http.response.start" in srv.log()


def test_scope_advertises_the_denial_extension() -> None:
    with (
        Server(DENIER, "-k", "asgi") as srv,
        sync_client.connect(f"ws://127.0.0.1:{srv.port}/extensions") as ws,
    ):
        extensions = json.loads(ws.recv(timeout=5))
        assert extensions["websocket.http.response"] == {}
        assert not [name for name in extensions if name.startswith("http.")]


# --- graceful stop --------------------------------------------------------------------------


def test_term_closes_open_websockets_with_1001() -> None:
    with Server(APP, "-k", "asgi", "--graceful-timeout", "10") as srv:
        with sync_client.connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
            ws.send("before")
            assert ws.recv(timeout=5) == "echo: before"
            srv.signal(signal.SIGTERM)
            with pytest.raises(exceptions.ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert srv.wait_exit() == 0
