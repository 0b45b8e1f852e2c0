"""What the WSGI workers have, on the asgi worker, through a real server: the access log,
metrics, the health path, the PROXY protocol (also before TLS), secure scheme headers from
trusted proxies, and worker_connections enforced."""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import ssl
import time
from pathlib import Path

import pytest

from support.client import connect, read_response
from support.pki import make_pki, tls_args
from support.server import Server, wait_for

APP = "support.asgi_ext_apps:app"


def get(port: int, target: str, *headers: str) -> tuple[int, bytes]:
    with connect(port) as sock:
        lines = [f"GET {target} HTTP/1.1", "Host: h", *headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        resp, _ = read_response(sock)
        return resp.status, resp.body


def test_access_log_lines(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    args = ["-k", "asgi", "--access-logfile", str(log)]
    fmt = '%(h)s "%(r)s" %(s)s %(b)s "%(a)s" %({x-app}o)s %({x-trace}i)s'
    with Server(APP, *args, "--access-logformat", fmt) as srv:
        assert get(srv.port, "/x?y=1", "User-Agent: tester/1", "X-Trace: t-9")[0] == 200
        assert get(srv.port, "/boom")[0] == 500
        wait_for(lambda: log.exists() and log.read_text().count("\n") >= 2, what="access lines")
    first, second = log.read_text().splitlines()[:2]
    length = len(json.dumps({"path": "/x"}))
    assert first == f'127.0.0.1 "GET /x?y=1 HTTP/1.1" 200 {length} "tester/1" ext t-9'
    assert second.startswith('127.0.0.1 "GET /boom HTTP/1.1" 500 ')


def test_health_path_is_answered_without_the_app() -> None:
    with Server(APP, "-k", "asgi", "--health-path", "/healthz") as srv, connect(srv.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n")
        health, rest = read_response(sock)
        assert (health.status, health.body) == (200, b"ok\n")
        after, _ = read_response(sock, rest)
        assert json.loads(after.body) == {"path": "/y"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_prometheus_counts_asgi_requests() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    metrics_port = free_port()
    with Server(APP, "-k", "asgi", "--metrics-bind", f"127.0.0.1:{metrics_port}") as srv:
        for i in range(7):
            assert get(srv.port, f"/m{i}")[0] == 200
        assert get(srv.port, "/boom")[0] == 500
        # A request is counted as its task ends, which may be just after the client has its
        # answer: scrape until all eight are in (or the deadline says they never will be).
        deadline = time.monotonic() + 10
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            conn.close()
            samples = {}
            for family in parser.text_string_to_metric_families(text):
                for sample in family.samples:
                    samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
            total = sum(v for (name, _), v in samples.items() if name == "corral_requests_total")
            if total >= 8 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert samples[("corral_requests_total", (("method", "GET"), ("status_class", "2xx")))] == 7
    assert samples[("corral_requests_total", (("method", "GET"), ("status_class", "5xx")))] == 1
    assert samples[("corral_requests_in_flight", ())] == 0


def test_proxy_protocol_names_the_client() -> None:
    with Server(APP, "-k", "asgi", "--proxy-protocol", "auto") as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n")
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: h\r\n\r\n")
            resp, _ = read_response(sock)
        assert json.loads(resp.body)["client"] == ["203.0.113.7", 40000]
        with connect(srv.port) as sock:
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: h\r\n\r\n")  # no header: closed
            data = b"unanswered"
            with contextlib.suppress(ConnectionResetError):
                data = sock.recv(100)
            assert data in (b"", b"unanswered")
        assert "Closing connection from 127.0.0.1: " in srv.log()


def test_secure_scheme_headers_from_a_trusted_proxy() -> None:
    with Server(APP, "-k", "asgi") as srv:  # forwarded_allow_ips is 127.0.0.1 by default
        status, body = get(srv.port, "/scope", "X-Forwarded-Proto: https")
        assert json.loads(body)["scheme"] == "https"
        status, _ = get(srv.port, "/scope", "X-Forwarded-Proto: https", "X-Forwarded-Ssl: off")
        assert status == 400  # a proxy that says both is refused, as for WSGI
    with Server(APP, "-k", "asgi", "--forwarded-allow-ips", "192.0.2.1") as srv:
        status, body = get(srv.port, "/scope", "X-Forwarded-Proto: https")
        assert json.loads(body)["scheme"] == "http"  # not from an untrusted peer


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_proxy_header_before_tls(tmp_path: Path) -> None:
    make_pki(tmp_path)
    args = ["-k", "asgi", *tls_args(tmp_path), "--proxy-protocol", "v1"]
    with Server(APP, *args) as srv:
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        raw.sendall(b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n")
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            data = b""
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                while chunk := sock.recv(65536):
                    data += chunk
        info = json.loads(data.partition(b"\r\n\r\n")[2])
        assert info["client"] == ["203.0.113.7", 40000] and info["scheme"] == "https"


def test_worker_connections_is_enforced() -> None:
    """At worker_connections the worker stops accepting; a closed connection makes room."""
    args = ["-k", "asgi", "--worker-connections", "2", "--keep-alive", "30"]
    with Server(APP, *args) as srv:
        held = [connect(srv.port) for _ in range(2)]
        for sock in held:  # both accepted and served
            sock.sendall(b"GET /held HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(sock)[0].status == 200
        with connect(srv.port, timeout=1.5) as third:
            third.sendall(b"GET /third HTTP/1.1\r\nHost: h\r\n\r\n")
            with pytest.raises(TimeoutError):
                third.recv(100)  # queued in the kernel, not taken by the full worker
            held.pop().close()
            third.settimeout(10)
            resp, _ = read_response(third)
            assert json.loads(resp.body) == {"path": "/third"}
        for sock in held:
            sock.close()
