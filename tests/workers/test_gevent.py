"""The gevent worker through a real server (`-k gevent`): the shared parser and its errors,
keep-alive and pipelining, bodies (buffered and streamed), files, TLS, the access log, the
health path, the deadlines of slow clients, max_requests, graceful stop, worker_connections,
requests stuck past `timeout` (cooperatively: the greenlet's stack; or in a busy loop: the
master's abort and the stack), and Gunicorn's gevent worker names."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import select
import shutil
import signal
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from corral.config.converters import requested_worker_class, worker_class
from support.client import connect, read_response, recv_all
from support.pki import make_pki, tls_args
from support.server import ROOT, Server, run_corral, wait_for

# Looked up, not imported: the test process itself must stay unpatched and gevent-free.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gevent") is None, reason="needs gevent (corral[gevent])"
)

GEVENT = ("-k", "gevent")
FLASK = "apps.gevent_flask_app:app"
GET_B = b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
GET_AGAIN = b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n"
TWO_LENGTHS = b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"


def get(port: int, raw: bytes, timeout: float = 10) -> list[tuple[int, bytes]]:
    out = []
    with connect(port, timeout=timeout) as sock:
        sock.sendall(raw)
        rest = b""
        for _ in range(raw.count(b" HTTP/1.1\r\n")):
            resp, rest = read_response(sock, rest)
            out.append((resp.status, resp.body))
    return out


def test_keep_alive_and_pipelining_with_the_shared_parser() -> None:
    with Server("support.apps:echo", *GEVENT, "--access-logfile", "-") as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n" + GET_B)
            first, rest = read_response(sock)
            second, rest = read_response(sock, rest)
            # The same connection serves a third request after the pipelined two.
            sock.sendall(b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n")
            third, _ = read_response(sock, rest)
        views = [json.loads(r.body) for r in (first, second, third)]
        assert [v["PATH_INFO"] for v in views] == ["/a", "/b", "/c"]
        assert views[0]["QUERY_STRING"] == "x=1"
        assert views[0]["wsgi.multithread"] is True
        srv.wait_log('"GET /c HTTP/1.1" 200')
        assert '"GET /a?x=1 HTTP/1.1" 200' in srv.log()


def test_a_bad_request_gets_400_and_the_worker_goes_on() -> None:
    with Server("support.apps:echo", *GEVENT) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n")
            resp, _ = read_response(sock)
            assert resp.status == 400
            assert recv_all(sock) == b""  # closed after the error
        with connect(srv.port) as sock:
            sock.sendall(TWO_LENGTHS)
            assert read_response(sock)[0].status == 400
        assert get(srv.port, b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")[0][0] == 200
        assert "Traceback" not in srv.log()


@pytest.mark.parametrize("buffer", ["65536", "0"])
def test_request_bodies_buffered_and_streamed(buffer: str) -> None:
    """request_body_buffer 0 streams the body to the application through the connection's
    waits, which the patched select makes cooperative."""
    body = bytes(range(256)) * 4096  # 1 MiB
    with Server("support.apps:echo", *GEVENT, "--request-body-buffer", buffer) as srv:
        head = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body)
        [(status, answer)] = get(srv.port, head + body)
        assert status == 200
        assert json.loads(answer) == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        chunked = b"POST /echo-body HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked += b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        assert get(srv.port, chunked) == [(200, b"hello world")]


def read_large_body(sock: socket.socket, size: int) -> bytes:
    """A response head then `size` body bytes, read without quadratic copying."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % size in head
    body = bytearray(rest)
    while len(body) < size:
        data = sock.recv(1 << 20)
        assert data, "closed mid-body"
        body += data
    return bytes(body)


def test_a_response_larger_than_the_socket_takes_parks_and_resumes() -> None:
    """Responses larger than the socket takes park and resume (the engine's WRITING state),
    as a file (sendfile) and as a streamed iterable; the connection is kept alive after."""
    size = 16 << 20  # more than loopback's socket buffers hold
    with Server("support.apps:echo", *GEVENT) as srv, connect(srv.port) as sock:
        sock.sendall(b"GET /file?%d HTTP/1.1\r\nHost: h\r\n\r\n" % size)
        time.sleep(0.3)  # not synchronisation: lets the server fill the socket and park
        body = read_large_body(sock, size)
        assert body == bytes(range(256)) * (size // 256)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        resp, _ = read_response(sock)
        assert resp.body == b"".join(b"part %d\n" % n for n in range(5))


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    make_pki(tmp_path)
    return tmp_path


def test_tls(pki: Path) -> None:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with Server("support.apps:echo", *GEVENT, *tls_args(pki)) as srv:
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /secure HTTP/1.1\r\nHost: h\r\n\r\n" + GET_AGAIN)
            first, rest = read_response(sock)  # type: ignore[arg-type]
            second, _ = read_response(sock, rest)  # type: ignore[arg-type]
        assert json.loads(first.body)["wsgi.url_scheme"] == "https"
        assert json.loads(second.body)["PATH_INFO"] == "/again"
        # A client that is not speaking TLS is dropped, and the worker goes on.
        with connect(srv.port) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert b"HTTP/1.1 200" not in recv_all(plain)
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            # A file larger than the socket takes at once, and PEP 3333's write(), over TLS.
            size = 8 << 20
            sock.sendall(b"GET /file?%d HTTP/1.1\r\nHost: h\r\n\r\n" % size)
            body = read_large_body(sock, size)  # type: ignore[arg-type]
            assert body == bytes(range(256)) * (size // 256)
            sock.sendall(b"GET /write HTTP/1.1\r\nHost: h\r\n\r\n")
            resp, _ = read_response(sock)  # type: ignore[arg-type]
            assert (resp.status, resp.body) == (200, b"written then returned")


def test_health_path_and_proxy_protocol() -> None:
    args = (*GEVENT, "--health-path", "/healthz", "--proxy-protocol", "v1")
    args += ("--proxy-allow-from", "127.0.0.1")
    with Server("support.apps:echo", *args) as srv:
        raw = b"PROXY TCP4 203.0.113.7 10.0.0.1 4321 80\r\n"
        raw += b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\nGET /who HTTP/1.1\r\nHost: h\r\n\r\n"
        [(health, _), (status, body)] = get(srv.port, raw)
        assert (health, status) == (200, 200)
        assert json.loads(body)["REMOTE_ADDR"] == "203.0.113.7"


def test_a_head_trickling_in_gets_408_after_timeout() -> None:
    """One header byte every 0.1 s, for longer than --timeout: the deadline runs from the
    first byte, not from the last, so the server answers 408 while bytes still arrive."""
    with Server("support.apps:echo", *GEVENT, "--timeout", "1") as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n")
            for _ in range(100):
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable:
                    break  # the answer came; sending more now could reset the connection
                sock.sendall(b"X")
            received = recv_all(sock)
        assert received.startswith(b"HTTP/1.1 408")


def test_max_requests_restarts_the_worker() -> None:
    with Server("support.apps:echo", *GEVENT, "--max-requests", "2") as srv:
        first = srv.worker_pids()
        for n in range(3):
            assert get(srv.port, b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % n)[0][0] == 200
        srv.wait_log("Autorestarting worker after current request.")
        srv.wait_booted(2)
        wait_for(lambda: srv.worker_pids() and srv.worker_pids() != first, what="a new worker")


def test_graceful_stop_finishes_the_request_in_flight() -> None:
    with Server(FLASK, *GEVENT) as srv:
        results: list[list[tuple[int, bytes]]] = []
        client = threading.Thread(
            target=lambda: results.append(
                get(srv.port, b"GET /nap?seconds=1.5 HTTP/1.1\r\nHost: h\r\n\r\n")
            )
        )
        # The worker serves (it has patched and imported the app) before the request starts.
        assert get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")[0][0] == 200
        client.start()
        time.sleep(0.3)  # not synchronisation: the request is very likely in the app by now
        srv.signal(signal.SIGTERM)
        client.join(20)
        assert results == [[(200, b"rested")]]
        assert srv.wait_exit() == 0


def test_worker_connections_is_the_pool_size() -> None:
    with Server("support.apps:echo", *GEVENT, "--worker-connections", "2") as srv:
        idle = [connect(srv.port) for _ in range(2)]
        for sock in idle:  # both connections are the worker's once each has been answered
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(sock)[0].status == 200
        with connect(srv.port, timeout=0.5) as third:
            third.sendall(b"GET /third HTTP/1.1\r\nHost: h\r\n\r\n")
            with pytest.raises(TimeoutError):
                third.recv(1)  # full: not accepted while the two are open
            idle[0].close()
            third.settimeout(10)
            assert read_response(third)[0].status == 200
        idle[1].close()


def test_a_request_waiting_past_timeout_is_reported_with_its_greenlet_stack() -> None:
    with Server(FLASK, *GEVENT, "--timeout", "1") as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET /nap?seconds=30 HTTP/1.1\r\nHost: h\r\n\r\n")
            srv.wait_log("stack of its greenlet")
            assert recv_all(sock) == b""  # the stuck request dies with its worker
        log = srv.log()
        assert "in nap" in log and "time.sleep" in log
        srv.wait_booted(2)  # a replacement
        assert get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n") == [(200, b"hello from gevent")]


def test_a_busy_loop_is_aborted_by_the_master_with_its_stack() -> None:
    """A request that never yields stops the heartbeat greenlet too: the master's timeout."""
    with Server(FLASK, *GEVENT, "--timeout", "2") as srv:
        with connect(srv.port, timeout=30) as sock:
            sock.sendall(b"GET /spin HTTP/1.1\r\nHost: h\r\n\r\n")
            srv.wait_log("timed out; stack of each thread", timeout=20)
            assert recv_all(sock) == b""
        assert "in spin_forever" in srv.log()
        srv.wait_booted(2)
        assert get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n") == [(200, b"hello from gevent")]


GUNICORN_NAMES = [
    "gevent_wsgi",
    "gevent_pywsgi",
    "gunicorn.workers.ggevent.GeventWorker",
    "gunicorn.workers.ggevent.GeventPyWSGIWorker",
    "egg:gunicorn#gevent",
    "egg:gunicorn#gevent_wsgi",
    "egg:gunicorn#gevent_pywsgi",
]


@pytest.mark.parametrize("name", ["gevent", *GUNICORN_NAMES])
def test_gunicorn_names_select_the_gevent_worker(name: str) -> None:
    chosen = worker_class(name)
    assert chosen == "gevent"
    assert requested_worker_class(chosen) == ("" if name == "gevent" else name)


@pytest.mark.parametrize("name", ["gevent_wsgi", "gunicorn.workers.ggevent.GeventPyWSGIWorker"])
def test_the_master_says_which_worker_serves_a_gunicorn_name(name: str) -> None:
    with Server(FLASK, "-k", name) as srv:
        assert get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n") == [(200, b"hello from gevent")]
        log = srv.log()
        assert "Using worker: gevent" in log
        assert f"Worker class {name} is served by corral's gevent worker" in log


def test_without_gevent_the_server_stops_with_a_one_line_reason(tmp_path: Path) -> None:
    shadow = tmp_path / "gevent"
    shadow.mkdir()
    (shadow / "__init__.py").write_text('raise ImportError("no gevent here")\n')
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT / 'src'}"}
    args = ["-k", "gevent", "-b", "127.0.0.1:0", "--pythonpath", str(ROOT / "tests")]
    result = run_corral([*args, "support.apps:echo"], env=env)
    assert result.returncode == 3, result.stderr
    assert "The gevent worker needs gevent: pip install 'corral[gevent]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_metrics_count_requests_waiting_together() -> None:
    """The shared-memory metrics: requests in flight at once, by state, and their totals."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    args = (*GEVENT, "--metrics-bind", f"127.0.0.1:{metrics_port}")
    with Server(FLASK, *args) as srv:
        assert get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")[0][0] == 200
        sleepers = [connect(srv.port) for _ in range(20)]
        for sock in sleepers:
            sock.sendall(b"GET /nap?seconds=3 HTTP/1.1\r\nHost: h\r\n\r\n")

        def scrape() -> str:
            with connect(metrics_port) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                return read_response(sock)[0].body.decode()

        def serving(text: str, line: str) -> bool:
            return line in text.splitlines()

        wait_for(lambda: serving(scrape(), "corral_requests_in_flight 20"), what="20 in flight")
        wait_for(
            lambda: serving(scrape(), 'corral_connections{state="serving"} 20'),
            what="20 connections serving",
        )
        for sock in sleepers:
            assert read_response(sock)[0].status == 200
            sock.close()
        wait_for(
            lambda: serving(scrape(), 'corral_requests_total{method="GET",status_class="2xx"} 21'),
            what="21 requests counted",
        )


def test_a_client_that_stops_reading_is_disconnected_after_timeout() -> None:
    """The sweep closes a parked response whose client read nothing for `timeout`; its
    greenlet, waiting on that socket, is woken and closes it, and the worker goes on."""
    size = 64 << 20
    with Server("support.apps:echo", *GEVENT, "--timeout", "1") as srv:
        with connect(srv.port, timeout=20) as sock:
            sock.sendall(b"GET /file?%d HTTP/1.1\r\nHost: h\r\n\r\n" % size)
            assert sock.recv(12) == b"HTTP/1.1 200"
            # Read nothing until the server has given up on us: what it sent before then is
            # all there is (the socket buffers hold a few MiB, not 64).
            time.sleep(3)  # not synchronisation: the idle time the server must not allow
            received = 0
            with contextlib.suppress(ConnectionResetError):
                while data := sock.recv(1 << 20):
                    received += len(data)
            assert received < size // 2
        assert get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")[0][0] == 200


def test_http2_is_refused_at_startup() -> None:
    pytest.importorskip("h2")
    args = ["-k", "gevent", "-b", "127.0.0.1:0", "--pythonpath", str(ROOT / "tests")]
    args += ["--http-protocols", "h2,h1", "--http2-cleartext", "prior-knowledge"]
    result = run_corral([*args, "support.apps:echo"])
    # A one-line configuration error before any worker is started (exit status 2, usage).
    assert result.returncode == 2, result.stderr
    assert "is not served by the gevent worker: use -k gthread or -k asgi" in result.stderr
    assert "Booting worker" not in result.stderr


@pytest.mark.parametrize("buffer", ["65536", "0"])
def test_expect_100_continue(buffer: str) -> None:
    """The client waits for 100 Continue before sending its body (RFC 9110 §10.1.1), whether
    the worker buffers the body or the application streams it."""
    with Server("support.apps:echo", *GEVENT, "--request-body-buffer", buffer) as srv:
        with connect(srv.port) as sock:
            sock.sendall(
                b"POST /echo-body HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            interim = b""
            while b"\r\n\r\n" not in interim:
                interim += sock.recv(1)
            assert interim.startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(b"hello")
            resp, _ = read_response(sock)
        assert (resp.status, resp.body) == (200, b"hello")
