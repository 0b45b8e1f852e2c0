"""HTTP/2 at startup, through the real server: the one-line refusals (sync worker, no h2
library), the warning for h2 that can never be negotiated, and the ALPN protocols a TLS
listener offers, seen by Python's ssl client in a real handshake."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
from pathlib import Path

import pytest

from support.pki import make_pki, tls_args
from support.server import ROOT, TESTS, Server, run_corral

APP = ("--pythonpath", str(TESTS), "support.apps:echo")


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    make_pki(tmp_path)
    return tmp_path


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("worker", [["-k", "sync"], []])
def test_h2_on_the_sync_worker_exits_with_one_line(worker: list[str]) -> None:
    result = run_corral([*worker, "--http-protocols", "h2", "--bind", "127.0.0.1:0", *APP])
    assert result.returncode != 0
    assert error_lines(result.stderr) == [
        "Error: HTTP/2 (http_protocols includes h2) cannot run on the sync worker, which serves "
        "one request at a time and cannot multiplex streams: use -k gthread or -k asgi"
    ], result.stderr


def test_h2_without_the_h2_library_exits_with_one_line(tmp_path: Path) -> None:
    # An h2 package that cannot be imported, first on the path: as if h2 were not installed.
    blocker = tmp_path / "blocker" / "h2"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('h2 is blocked for this test')\n")
    env = {"PYTHONPATH": f"{blocker.parent}:{ROOT / 'src'}"}
    args = ["-k", "gthread", "--http-protocols", "h2,h1", "--bind", "127.0.0.1:0", *APP]
    result = run_corral(args, env=env)
    assert result.returncode != 0
    assert error_lines(result.stderr) == [
        "Error: HTTP/2 (http_protocols includes h2) needs the h2 library, which cannot be "
        "imported (h2 is blocked for this test): install corral[http2] "
        "(pip install 'corral[http2]')"
    ], result.stderr
    # The same blocked library does not matter while h2 is not asked for.
    checked = run_corral(["--check-config", *APP], env=env)
    assert checked.returncode == 0, checked.stderr


def test_h2_without_tls_or_cleartext_warns_and_serves_http1() -> None:
    with Server("support.apps:echo", "-k", "gthread", "--http-protocols", "h2,h1") as srv:
        srv.wait_log("HTTP/2 will never be negotiated")
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            conn.request("GET", "/")
            assert conn.getresponse().status == 200
        finally:
            conn.close()


def handshake(port: int, pki: Path, offer: list[str] | None) -> str | None:
    """The ALPN protocol the server selects for a client offering `offer` (None: no ALPN)."""
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if offer is not None:
        context.set_alpn_protocols(offer)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.selected_alpn_protocol()


def https_status(port: int, pki: Path, offer: list[str] | None) -> int:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if offer is not None:
        context.set_alpn_protocols(offer)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("app", "worker"),
    [("support.apps:echo", "gthread"), ("support.asgi_apps:app", "asgi")],
)
def test_tls_offers_h2_by_alpn_in_http_protocols_order(pki: Path, app: str, worker: str) -> None:
    with Server(app, "-k", worker, "--http-protocols", "h2,h1", *tls_args(pki)) as srv:
        assert handshake(srv.port, pki, ["h2", "http/1.1"]) == "h2"
        # The server's order decides, not the client's.
        assert handshake(srv.port, pki, ["http/1.1", "h2"]) == "h2"
        # A client that does not speak h2, or offers nothing, still gets HTTP/1.1.
        assert handshake(srv.port, pki, ["http/1.1"]) == "http/1.1"
        assert https_status(srv.port, pki, ["http/1.1"]) == 200
        assert https_status(srv.port, pki, None) == 200
        assert "never be negotiated" not in srv.log()


def test_tls_prefers_http1_when_listed_first(pki: Path) -> None:
    with Server(
        "support.apps:echo", "-k", "gthread", "--http-protocols", "h1,h2", *tls_args(pki)
    ) as srv:
        assert handshake(srv.port, pki, ["h2", "http/1.1"]) == "http/1.1"
        assert handshake(srv.port, pki, ["h2"]) == "h2"


def test_tls_without_h2_offers_http1_only(pki: Path) -> None:
    with Server("support.apps:echo", "-k", "gthread", *tls_args(pki)) as srv:
        assert handshake(srv.port, pki, ["h2", "http/1.1"]) == "http/1.1"
        assert handshake(srv.port, pki, ["h2"]) is None
