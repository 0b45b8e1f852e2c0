"""The asgi worker on uvloop (`--asgi-loop uvloop`), through a real server: uvloop's transports
are not asyncio's classes and it has no sendfile, so the paths that touch the transport run
here again: keep-alive and pipelining, request bodies, pathsend, trailers, early hints, the
acceptor at worker_connections, TLS with the `tls` extension, and a WebSocket with
permessage-deflate. Without uvloop installed, asking for it is a one-line startup error."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
from pathlib import Path
from urllib.parse import quote

import pytest

from support.client import connect, read_response, recv_all
from support.pki import make_pki, tls_args
from support.server import Server, run_corral

pytest.importorskip("uvloop")
websockets = pytest.importorskip("websockets")

UVLOOP = ("-k", "asgi", "--asgi-loop", "uvloop")


def test_http_paths_on_uvloop(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024 + 3))
    args = ("--worker-connections", "2")
    with Server("support.asgi_ext_apps:app", *UVLOOP, *args) as srv, connect(srv.port) as sock:
        raw = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
        sock.sendall(raw)
        first, rest = read_response(sock)
        second, rest = read_response(sock, rest)
        assert [json.loads(r.body)["path"] for r in (first, second)] == ["/a", "/b"]
        sock.sendall(f"GET /file?{quote(str(big))} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        resp, rest = read_response(sock, rest)
        assert resp.body == big.read_bytes()  # no sendfile on uvloop: reads and writes
        sock.sendall(b"GET /trailers HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n")
        data = rest
        while not data.endswith(b"x-rows: 2\r\n\r\n"):
            data += sock.recv(65536)
        assert b"\r\n0\r\nx-checksum: abc123\r\nx-rows: 2\r\n\r\n" in data
        with connect(srv.port) as second_conn, connect(srv.port, timeout=1) as third:
            second_conn.sendall(b"GET /hints HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            assert recv_all(second_conn).startswith(b"HTTP/1.1 103 Early Hints\r\n")
            third.sendall(b"GET /third HTTP/1.1\r\nHost: h\r\n\r\n")
            answered = read_response(third)[0]  # a slot freed when second_conn closed
            assert json.loads(answered.body) == {"path": "/third"}


def test_echo_body_on_uvloop() -> None:
    with Server("support.stress_apps:app", *UVLOOP) as srv, connect(srv.port) as sock:
        body = os.urandom(300_000)
        head = f"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body)
        assert read_response(sock)[0].body == body


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_tls_on_uvloop(tmp_path: Path) -> None:
    make_pki(tmp_path)
    with Server("support.asgi_ext_apps:app", *UVLOOP, *tls_args(tmp_path)) as srv:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    info = json.loads(data.partition(b"\r\n\r\n")[2])
    assert info["scheme"] == "https" and info["tls"]["tls_version"] in (0x0303, 0x0304)


def test_websocket_with_deflate_on_uvloop() -> None:
    async def talk(port: int) -> list[object]:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("hello " * 1000)
            text = await ws.recv()
            await ws.send(b"\x00\x01" * 5000)
            binary = await ws.recv()
            extensions = [e.name for e in ws.protocol.extensions]
            return [text, binary, extensions]

    with Server("support.asgi_apps:websocket_app", *UVLOOP) as srv:
        text, binary, extensions = asyncio.run(talk(srv.port))
    assert text == "echo: " + "hello " * 1000 and binary == b"\x00\x01" * 5000
    assert extensions == ["permessage-deflate"]


def test_missing_uvloop_is_a_startup_error(tmp_path: Path) -> None:
    """uvloop hidden by a module that refuses to import: one line, a non-zero exit."""
    (tmp_path / "uvloop.py").write_text("raise ImportError('hidden for this test')\n")
    tests = str(Path(__file__).resolve().parents[1])
    args = [*UVLOOP, "--pythonpath", f"{tmp_path},{tests}", "--bind", "127.0.0.1:0"]
    result = run_corral([*args, "support.asgi_apps:app"])
    assert result.returncode != 0
    assert "uvloop is not installed" in result.stderr
