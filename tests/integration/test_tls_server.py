"""TLS through the real server: real clients, client certificates, renewal on HUP."""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from support.pki import make_pki, tls_args
from support.server import Server, run_corral, wait_for

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def https_get(
    port: int, pki: Path, path: str = "/", client_cert: bool = False
) -> tuple[int, bytes, dict[str, object]]:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if client_cert:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.connect()
        assert isinstance(conn.sock, ssl.SSLSocket)
        cert = conn.sock.getpeercert() or {}
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(cert)
    finally:
        conn.close()


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_pki(tmp_path)
    return tmp_path


@pytest.mark.parametrize("kind", [["-k", "sync"], ["-k", "gthread", "--threads", "2"]])
def test_https_with_python_and_curl(pki: Path, kind: list[str]) -> None:
    with Server("support.apps:echo", *tls_args(pki), *kind) as srv:
        status, body, _ = https_get(srv.port, pki, "/secure?x=1")
        assert status == 200
        env = json.loads(body)
        assert env["wsgi.url_scheme"] == "https"
        assert env["PATH_INFO"] == "/secure"
        if shutil.which("curl"):
            out = subprocess.run(
                ["curl", "-sS", "--cacert", str(pki / "ca.pem"), f"https://127.0.0.1:{srv.port}/c"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert json.loads(out.stdout)["wsgi.url_scheme"] == "https", out.stderr
        if shutil.which("openssl"):
            out = subprocess.run(
                [
                    "openssl",
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{srv.port}",
                    "-CAfile",
                    str(pki / "ca.pem"),
                    "-quiet",
                ],
                input=b"GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                capture_output=True,
                timeout=20,
            )
            assert b"HTTP/1.1 200 OK" in out.stdout


def test_client_certificates_required(pki: Path) -> None:
    args = [*tls_args(pki), "--ca-certs", str(pki / "ca.pem"), "--cert-reqs", "2"]
    with Server("support.apps:echo", *args) as srv:
        assert https_get(srv.port, pki, client_cert=True)[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_get(srv.port, pki)
        assert https_get(srv.port, pki, client_cert=True)[0] == 200
        assert "Traceback" not in srv.log()


def test_plain_http_to_tls_port_is_closed_and_others_served(pki: Path) -> None:
    with Server("support.apps:echo", *tls_args(pki)) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            conn.request("GET", "/")
            conn.getresponse()
        conn.close()
        assert https_get(srv.port, pki)[0] == 200


def test_hup_picks_up_renewed_certificate(pki: Path) -> None:
    with Server("support.apps:echo", *tls_args(pki), workers=1) as srv:
        assert https_get(srv.port, pki)[2]["serialNumber"] == "01"
        make_pki(pki, serial="02")
        srv.signal(signal.SIGHUP)
        wait_for(lambda: https_get(srv.port, pki)[2]["serialNumber"] == "02", 15)


def test_bad_certificate_file_is_a_startup_error(pki: Path) -> None:
    result = run_corral(
        ["--certfile", str(pki / "missing.pem"), "--pythonpath", "tests", "support.apps:echo"]
    )
    assert result.returncode != 0
    assert "missing.pem" in result.stderr
    assert "Traceback" not in result.stderr


def tls_socket(port: int, pki: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(sock, server_hostname="127.0.0.1")


@pytest.mark.parametrize("kind", [["-k", "sync"], ["-k", "gthread", "--threads", "2"]])
def test_error_answer_goes_through_tls(pki: Path, kind: list[str]) -> None:
    """A malformed request on a TLS connection gets its 400 inside the TLS session (it used to
    be written in plaintext on the raw socket, which the client reads as a TLS error)."""
    with Server("support.apps:echo", *tls_args(pki), *kind) as srv:
        with tls_socket(srv.port, pki) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
            data = b""
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                while chunk := sock.recv(4096):
                    data += chunk
        assert data.startswith(b"HTTP/1.1 400 "), data


def test_proxy_header_is_read_before_tls(pki: Path) -> None:
    """PROXY protocol and TLS together: the header comes first, in the clear, then the
    handshake, as docs/proxy-protocol.md says."""
    args = [*tls_args(pki), "-k", "gthread", "--proxy-protocol", "v1"]
    with Server("support.apps:echo", *args) as srv:
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        raw.sendall(b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n")
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = b""
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                while chunk := sock.recv(65536):
                    data += chunk
        env = json.loads(data.partition(b"\r\n\r\n")[2])
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.7", "https")
