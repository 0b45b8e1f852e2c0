"""Which connections become HTTP/2, seen from clients: Python's ssl offering ALPN protocols
(and then speaking HTTP/2 or HTTP/1.1 on the socket), and corral's cleartext rules
(`http2_cleartext` off / prior-knowledge / upgrade / both, `http_protocols` without h2, and
peers outside `forwarded_allow_ips`) with raw sockets and curl, on the gthread and asgi workers.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl
from pathlib import Path

import pytest

from support.client import connect, read_response
from support.h2_apps import HELLO
from support.h2_servers import WORKERS, corral_only, make_tls, need, worker_server
from support.h2_sync_client import H2Client
from support.h2_tools import EMPTY_SETTINGS, PREFACE, curl, http1_peer, run, url

pytest.importorskip("h2")

worker_ids = pytest.mark.parametrize("worker", list(WORKERS))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls(tmp_path_factory.mktemp("pki"))


# -- Python's ssl with ALPN -----------------------------------------------------------------------


def tls_socket(port: int, pki: Path, offer: list[str]) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.set_alpn_protocols(offer)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


@worker_ids
def test_alpn_h2_is_selected_and_served(worker: str, pki: Path) -> None:
    with (
        worker_server(worker, tls=pki) as srv,
        tls_socket(srv.port, pki, ["h2", "http/1.1"]) as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        client = H2Client(tls, f"127.0.0.1:{srv.port}", scheme="https")
        peer = client.request("GET", "/peer")
        assert peer.status == 200 and json.loads(peer.data)["protocol"] == "HTTP/2"
        echoed = client.request("POST", "/sha256", body=b"x" * 200_000)
        assert echoed.status == 200 and bytes(echoed.data) == b"x" * 200_000
        assert echoed.header("x-body-sha256") == hashlib.sha256(b"x" * 200_000).hexdigest()


@worker_ids
def test_alpn_offers_http1_only_when_h2_is_not_served(worker: str, pki: Path) -> None:
    corral_only()
    with (
        worker_server(worker, tls=pki, protocols="h1") as srv,
        tls_socket(srv.port, pki, ["h2", "http/1.1"]) as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert http1_peer(tls) == (200, {"protocol": "HTTP/1.1", "port": tls.getsockname()[1]})


@worker_ids
def test_alpn_http1_client_of_an_h2_server_is_served_http1(worker: str, pki: Path) -> None:
    with worker_server(worker, tls=pki) as srv, tls_socket(srv.port, pki, ["http/1.1"]) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        status, peer = http1_peer(tls)
        assert (status, peer["protocol"]) == (200, "HTTP/1.1")


@worker_ids
def test_h2_with_client_certificates(worker: str, pki: Path, tmp_path: Path) -> None:
    """`--cert-reqs 2`: HTTP/2 is negotiated for a client that presents a certificate the CA
    signed; one without is refused in the handshake."""
    corral_only()
    extra = ("--cert-reqs", "2", "--ca-certs", str(pki / "ca.pem"))
    with worker_server(worker, tls=pki, extra=extra) as srv:
        cacert = ["--cacert", str(pki / "ca.pem")]
        mine = ["--cert", str(pki / "client.pem"), "--key", str(pki / "client.key")]
        lines, [body], _ = curl(tmp_path, "--http2", *cacert, *mine, url(srv, "/peer", tls=True))
        assert lines == ["2 200"] and json.loads(body)["protocol"] == "HTTP/2"
        refused = run(need("curl"), "-sS", "--http2", *cacert, url(srv, "/peer", tls=True))
        assert refused.returncode != 0 and not refused.stdout


# -- Negotiation rules (corral's settings) --------------------------------------------------------


def preface_answer(port: int) -> bytes:
    """What a prior-knowledge client hears back: everything until the server closes."""
    with connect(port) as sock:
        sock.sendall(PREFACE + EMPTY_SETTINGS)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def assert_refused_as_http1(answer: bytes) -> None:
    # Not HTTP/2 (its first frame would be the server's SETTINGS): the preface's first line,
    # `PRI * HTTP/2.0`, read as an HTTP/1.1 request line and refused (an HTTP version this
    # server does not serve over HTTP/1.1).
    assert re.match(rb"HTTP/1\.1 (400|505) ", answer), answer[:200]


@worker_ids
def test_cleartext_off_refuses_the_preface_as_http1(worker: str) -> None:
    corral_only()
    with worker_server(worker, cleartext="off") as srv:
        assert_refused_as_http1(preface_answer(srv.port))
        with connect(srv.port) as sock:
            assert http1_peer(sock)[1]["protocol"] == "HTTP/1.1"


@worker_ids
def test_cleartext_without_h2_in_http_protocols_is_not_http2(worker: str, tmp_path: Path) -> None:
    corral_only()
    with worker_server(worker, cleartext="both", protocols="h1") as srv:
        assert_refused_as_http1(preface_answer(srv.port))
        with connect(srv.port) as sock:
            assert http1_peer(sock)[1]["protocol"] == "HTTP/1.1"
        lines, bodies, log = curl(tmp_path, "-v", "--http2", url(srv))
        assert (lines, bodies) == (["1.1 200"], [HELLO])
        assert "< HTTP/1.1 101" not in log


@worker_ids
def test_prior_knowledge_mode_answers_http1_with_400(worker: str) -> None:
    corral_only()
    with worker_server(worker, cleartext="prior-knowledge") as srv, connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock)[0].status == 400


@worker_ids
def test_upgrade_mode_serves_plain_http1_and_refuses_the_preface(worker: str) -> None:
    corral_only()
    with worker_server(worker, cleartext="upgrade") as srv:
        with connect(srv.port) as sock:
            assert http1_peer(sock)[1]["protocol"] == "HTTP/1.1"
        assert_refused_as_http1(preface_answer(srv.port))


@worker_ids
def test_both_modes_serve_http1_prior_knowledge_and_upgrade(worker: str, tmp_path: Path) -> None:
    corral_only()
    with worker_server(worker, cleartext="both") as srv:
        with connect(srv.port) as sock:
            assert http1_peer(sock)[1]["protocol"] == "HTTP/1.1"
        assert curl(tmp_path, "--http2-prior-knowledge", url(srv))[:2] == (["2 200"], [HELLO])
        assert curl(tmp_path, "--http2", url(srv))[:2] == (["2 200"], [HELLO])


@worker_ids
def test_untrusted_peer_gets_no_h2c(worker: str, tmp_path: Path) -> None:
    corral_only()
    extra = ("--forwarded-allow-ips", "10.0.0.1")  # 127.0.0.1 is no longer trusted
    with worker_server(worker, cleartext="both", extra=extra) as srv:
        assert_refused_as_http1(preface_answer(srv.port))
        # An upgrade request is served as the HTTP/1.1 request it also is, without a 101.
        lines, bodies, log = curl(tmp_path, "-v", "--http2", url(srv))
        assert (lines, bodies) == (["1.1 200"], [HELLO])
        assert "< HTTP/1.1 101" not in log
        with connect(srv.port) as sock:
            assert http1_peer(sock)[1]["protocol"] == "HTTP/1.1"
