"""The ASGI HTTP extensions of the asgi worker through a real server: early hints (103),
response trailers, pathsend (sendfile, also under TLS) and the `tls` scope extension."""

from __future__ import annotations

import hashlib
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
from support.server import Server

APP = "support.asgi_ext_apps:app"


def request(port: int, target: str, *headers: str, version: str = "1.1") -> bytes:
    """One request with Connection: close; everything the server sent back."""
    lines = [f"GET {target} HTTP/{version}", "Host: h", "Connection: close", *headers]
    with connect(port) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return recv_all(sock)


def dechunk(data: bytes) -> tuple[bytes, bytes]:
    """A chunked body and its trailer section (the raw field lines)."""
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            trailers, _, rest = (
                data.partition(b"\r\n\r\n")
                if not data.startswith(b"\r\n")
                else (
                    b"",
                    b"",
                    data[2:],
                )
            )
            assert rest == b""
            return body, trailers
        body, data = body + data[:size], data[size + 2 :]


def test_scope_advertises_what_is_implemented() -> None:
    with Server(APP, "-k", "asgi") as srv, connect(srv.port) as sock:
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: h\r\n\r\n")
        plain = json.loads(read_response(sock)[0].body)
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n")
        with_te = json.loads(read_response(sock)[0].body)
    assert plain["extensions"] == ["http.response.early_hint", "http.response.pathsend"]
    assert "http.response.trailers" in with_te["extensions"]
    assert plain["tls"] is None and plain["scheme"] == "http"


def test_early_hints_come_before_the_response_to_http11_only() -> None:
    with Server(APP, "-k", "asgi") as srv:
        data = request(srv.port, "/hints")
        hint, _, rest = data.partition(b"\r\n\r\n")
        assert hint.split(b"\r\n") == [
            b"HTTP/1.1 103 Early Hints",
            b"link: </style.css>; rel=preload; as=style",
            b"link: </app.js>; rel=preload; as=script",
        ]
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b'{"hinted": true}')
        # RFC 9110 §15.2: no interim responses to an HTTP/1.0 client.
        old = request(srv.port, "/hints", version="1.0")
        assert old.startswith(b"HTTP/1.1 200 OK\r\n") and b" 103 " not in old


def test_trailers_sent_to_a_client_that_accepts_them() -> None:
    with Server(APP, "-k", "asgi") as srv:
        data = request(srv.port, "/trailers", "TE: trailers")
        head, _, payload = data.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        body, trailers = dechunk(payload)
        assert body == b"part one,part two"
        # Both trailer messages; the framing field the app put there is never sent.
        assert trailers.split(b"\r\n") == [b"x-checksum: abc123", b"x-rows: 2"]
        # Without TE: trailers the body is the same and the section is empty.
        data = request(srv.port, "/trailers")
        body, trailers = dechunk(data.partition(b"\r\n\r\n")[2])
        assert (body, trailers) == (b"part one,part two", b"")


def test_announced_trailers_never_sent_still_end_the_response_and_keep_alive() -> None:
    with Server(APP, "-k", "asgi") as srv, connect(srv.port) as sock:
        sock.sendall(b"GET /trailers-forgotten HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n")
        resp, rest = read_response(sock)
        assert resp.body == b"no trailers follow"
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        resp, _ = read_response(sock, rest)
        assert json.loads(resp.body) == {"path": "/after"}


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pathsend") / "big.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


def test_pathsend_sends_the_file_and_head_sends_none(big_file: Path) -> None:
    with Server(APP, "-k", "asgi") as srv, connect(srv.port) as sock:
        target = f"/file?{quote(str(big_file))}"
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        resp, rest = read_response(sock)
        assert resp.header("Content-Length") == str(big_file.stat().st_size)
        assert hashlib.sha256(resp.body).digest() == hashlib.sha256(big_file.read_bytes()).digest()
        sock.sendall(f"HEAD {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        resp, rest = read_response(sock, rest, head_only=True)
        assert resp.header("Content-Length") == str(big_file.stat().st_size)
        sock.sendall(b"GET /missing-file-next HTTP/1.1\r\nHost: h\r\n\r\n")
        resp, _ = read_response(sock, rest)
        assert resp.status == 200  # the HEAD left nothing behind on the connection
        missing = request(srv.port, "/file?/no/such/file")
        assert missing.startswith(b"HTTP/1.1 500 ")


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    directory = tmp_path_factory.mktemp("pki")
    make_pki(directory)
    return directory


def tls_get(port: int, pki: Path, target: str, client_cert: bool = False) -> bytes:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if client_cert:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


@needs_openssl
def test_tls_extension_and_pathsend_over_tls(pki: Path, big_file: Path) -> None:
    args = [*tls_args(pki), "--ca-certs", str(pki / "ca.pem"), "--cert-reqs", "1"]
    with Server(APP, "-k", "asgi", *args) as srv:
        info = json.loads(tls_get(srv.port, pki, "/scope").partition(b"\r\n\r\n")[2])
        assert info["scheme"] == "https" and "tls" in info["extensions"]
        tls = info["tls"]
        assert tls["server_cert"] == (pki / "server.pem").read_text()
        assert tls["tls_version"] in (0x0303, 0x0304)
        assert isinstance(tls["cipher_suite"], int) and tls["cipher_suite"] > 0
        assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
        info = json.loads(
            tls_get(srv.port, pki, "/scope", client_cert=True).partition(b"\r\n\r\n")[2]
        )
        chain = info["tls"]["client_cert_chain"]
        assert len(chain) == 1 and chain[0].startswith("-----BEGIN CERTIFICATE-----")
        assert info["tls"]["client_cert_name"] == "CN=client"
        data = tls_get(srv.port, pki, f"/file?{quote(str(big_file))}")
        assert data.partition(b"\r\n\r\n")[2] == big_file.read_bytes()
