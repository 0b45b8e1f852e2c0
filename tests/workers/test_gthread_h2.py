"""HTTP/2 on the gthread worker, through the real server: the h2 library's client on a raw
socket for the protocol-level cases, curl (prior knowledge and Upgrade: h2c) and httpx over TLS.

The server is `-k gthread --threads 8 --http-protocols h2,h1 --http2-cleartext both` on
loopback unless a test says otherwise. Nothing here measures time: concurrency is proven with a
barrier every stream must reach together, a freed thread by another stream served meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from support.gthread_h2_client import DEADLINE, Client
from support.pki import make_pki, tls_args
from support.server import Server, wait_for

APP = "support.gthread_h2_apps:app"
H2_ARGS = ("-k", "gthread", "--http-protocols", "h2,h1", "--http2-cleartext", "both")
CURL = shutil.which("curl")
NGHTTP = shutil.which("nghttp")


def server(*extra: str, threads: int = 8, env: dict[str, str] | None = None) -> Server:
    return Server(APP, *H2_ARGS, "--threads", str(threads), *extra, env=env)


# ---- requests and responses ---------------------------------------------------------------


def test_get_and_bodies_small_and_large() -> None:
    small = os.urandom(1000)
    large = os.urandom(1 << 20)
    with server("--access-logfile", "-") as srv, Client(srv.port) as client:
        assert client.response(client.request("/")) == (200, b"hello over HTTP/2")
        for body in (small, large):
            status, data = client.response(client.request("/upload", "POST", body))
            assert status == 200
            assert json.loads(data) == {
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        status, data = client.response(client.request("/big?n=3000000"))
        assert (status, len(data)) == (200, 3000000)
        assert client.headers[1][b"content-length"] == b"17"
        srv.wait_log('"GET / HTTP/2" 200')
        srv.wait_log('"POST /upload HTTP/2" 200', count=2)


def test_response_fields_head_and_no_body_statuses() -> None:
    with server() as srv, Client(srv.port) as client:
        sid = client.request("/headers")
        assert client.response(sid) == (200, b"headers")
        fields = client.headers[sid]
        assert fields[b"x-mixed-case"] == b"kept" and fields[b"content-length"] == b"7"
        for name in (b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"):
            assert name not in fields
        sid = client.request("/blob?n=5000", method="HEAD")
        assert client.response(sid) == (200, b"")
        assert client.headers[sid][b"content-length"] == b"5000"
        sid = client.request("/headers?status=204%20No%20Content")
        assert client.response(sid) == (204, b"")
        assert b"content-length" not in client.headers[sid]
        assert client.response(client.request("/bad-header"))[0] == 500
        assert client.response(client.request("/bytes-like")) == (200, b"array view")
        assert client.response(client.request("/")) == (200, b"hello over HTTP/2")


def test_concurrent_uploads_past_the_connection_body_budget() -> None:
    # request_body_buffer is a budget per connection on HTTP/2: the first two bodies are
    # collected by the loop, the others (past 2 MB together) are streamed to the application.
    bodies = [os.urandom(1000000) for _ in range(5)]
    with server("--request-body-buffer", "2000000") as srv, Client(srv.port) as client:
        sids = []
        for body in bodies:
            sid = client.conn.get_next_available_stream_id()
            fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"h")]
            length = (b"content-length", b"%d" % len(body))
            client.conn.send_headers(sid, [*fields, (b":path", b"/upload"), length])
            sids.append(sid)
        client.flush()
        for sid, body in zip(sids, bodies, strict=True):
            client.send_body(sid, body)
        for sid, body in zip(sids, bodies, strict=True):
            _status, data = client.response(sid)
            assert json.loads(data)["sha256"] == hashlib.sha256(body).hexdigest()


def test_body_of_unknown_length_and_write_and_file() -> None:
    body = os.urandom(200000)
    with server() as srv, Client(srv.port) as client:
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(
            sid,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":authority", b"h"),
                (b":path", b"/upload"),
            ],
        )
        client.send_body(sid, body)
        _status, data = client.response(sid)
        assert json.loads(data)["sha256"] == hashlib.sha256(body).hexdigest()
        assert client.response(client.request("/write?n=3")) == (
            200,
            b"line 0\nline 1\nline 2\nend\n",
        )
        _status, data = client.response(client.request("/file?n=300001"))
        assert data == bytes(range(256)) * (300001 // 256) + b"z" * (300001 % 256)
        assert (
            client.headers[client.conn.highest_outbound_stream_id][b"content-length"] == b"300001"
        )


def test_streams_of_one_connection_run_together() -> None:
    # Every one of the 16 requests waits at a barrier for the 15 others: served one after the
    # other they would each time out there (and answer 500).
    with server(threads=16) as srv, Client(srv.port) as client:
        sids = [client.request("/barrier") for _ in range(16)]
        for sid in sids:
            assert client.response(sid) == (200, b"together")


def test_a_closed_window_holds_no_thread() -> None:
    # Two threads; two streams whose responses the client never makes room for. If a parked
    # stream held its thread, the third request could never be served.
    with (
        server("--timeout", "3", threads=2) as srv,
        Client(srv.port, window=1024, ack=False) as client,
    ):
        stalled = [client.request("/big?n=1000000") for _ in range(2)]
        client.until(lambda: all(len(client.data[sid]) == 1024 for sid in stalled))
        assert client.response(client.request("/")) == (200, b"hello over HTTP/2")
        # Past `timeout` on a closed window, the stalled streams are reset (zero-window stall).
        client.until(lambda: all(sid in client.resets for sid in stalled), "stalled streams reset")
        assert client.response(client.request("/sleep?ms=1")) == (200, b"slept")


def test_a_slow_steady_reader_is_not_taken_for_a_stalled_one() -> None:
    # The client takes 10000 bytes every 0.4 s: the response outlasts `timeout` (2 s) but
    # its window never stays shut that long, so it must complete.
    with server("--timeout", "2") as srv, Client(srv.port, window=10000, ack=False) as client:
        sid = client.request("/blob?n=120000")  # one piece, sent a window at a time
        taken = 0
        while sid not in client.ended:
            client.until(lambda seen=taken: len(client.data[sid]) > seen or sid in client.ended)
            assert sid not in client.resets
            fresh = len(client.data[sid]) - taken
            taken += fresh
            time.sleep(0.4)  # the client's pace, not a synchronisation
            client.conn.acknowledge_received_data(fresh, sid)
            client.flush()
        assert taken == 120000 and sid not in client.resets


def test_peer_reset_ends_the_response(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.touch()
    with server(env={"CORRAL_TEST_MARKS": str(marks)}) as srv, Client(srv.port) as client:
        sid = client.request("/endless?name=one")
        client.until(lambda: len(client.data[sid]) >= 10)
        client.conn.reset_stream(sid, 0x8)
        client.flush()
        wait_for(lambda: "closed one" in marks.read_text(), DEADLINE, "the iterable closed")
        assert client.response(client.request("/")) == (200, b"hello over HTTP/2")


def test_reset_frees_a_thread_waiting_for_the_body() -> None:
    # Bodies without a Content-Length are streamed: the application's thread waits for them.
    # Two threads, two uploads that stop half way: resetting them must free both threads at
    # once (not after `timeout`, 60 s here), or the third request would never be served.
    with server("--timeout", "60", threads=2) as srv, Client(srv.port) as client:
        uploads = []
        for _ in range(2):
            sid = client.conn.get_next_available_stream_id()
            fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"h")]
            client.conn.send_headers(sid, [*fields, (b":path", b"/upload")])
            client.conn.send_data(sid, b"x" * 1000)
            uploads.append(sid)
        client.flush()
        for sid in uploads:
            client.conn.reset_stream(sid, 0x8)
        client.flush()
        assert client.response(client.request("/")) == (200, b"hello over HTTP/2")
        assert client.response(client.request("/sleep?ms=1")) == (200, b"slept")


def test_unread_bodies_give_the_connection_window_back() -> None:
    # Streamed bodies (no Content-Length) the application never reads: 40 x 64 KiB is more
    # than the connection's window (1 MiB), so the uploads below only all get through if the
    # server gives back the window of what it threw away.
    with server() as srv, Client(srv.port) as client:
        for _ in range(40):
            sid = client.conn.get_next_available_stream_id()
            fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"h")]
            client.conn.send_headers(sid, [*fields, (b":path", b"/")])
            client.send_body(sid, b"x" * 65535)
            assert client.response(sid) == (200, b"hello over HTTP/2")


def test_a_body_that_stops_coming_gets_408() -> None:
    with server("--timeout", "2") as srv, Client(srv.port) as client:
        sid = client.conn.get_next_available_stream_id()
        fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"h")]
        client.conn.send_headers(
            sid, [*fields, (b":path", b"/upload"), (b"content-length", b"1000")]
        )
        client.conn.send_data(sid, b"x" * 10)
        client.flush()
        client.until(lambda: sid in client.headers, "an answer")
        assert client.headers[sid][b":status"] == b"408"
        assert client.response(client.request("/")) == (200, b"hello over HTTP/2")


def test_metrics_count_streams_and_connections() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with socket.create_connection(("127.0.0.1", metrics_port)) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            text = recv_all(sock).partition(b"\r\n\r\n")[2].decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in parser.text_string_to_metric_families(text)
            for sample in family.samples
        }

    args = ("--metrics-bind", f"127.0.0.1:{metrics_port}", "--keep-alive", "30")
    with server(*args) as srv, Client(srv.port) as client:
        for _ in range(5):
            assert client.response(client.request("/")) == (200, b"hello over HTTP/2")
        ok = ("corral_requests_total", (("method", "GET"), ("status_class", "2xx")))
        wait_for(lambda: scrape().get(ok) == 5, DEADLINE, "5 requests counted")
        idle = ("corral_connections", (("state", "idle"),))
        wait_for(lambda: scrape().get(idle) == 1, DEADLINE, "the connection counted idle")


def test_idle_connection_gets_goaway_after_keepalive() -> None:
    with server("--keep-alive", "1") as srv, Client(srv.port) as client:
        assert client.response(client.request("/")) == (200, b"hello over HTTP/2")
        client.until(lambda: client.goaway is not None, "GOAWAY")
        assert client.goaway is not None and client.goaway.error_code == 0


def test_hooks_and_max_requests_count_streams(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.touch()
    conf = tmp_path / "conf.py"
    conf.write_text(
        "import os\n"
        "def _note(*args):\n"
        "    with open(os.environ['CORRAL_TEST_MARKS'], 'a') as fh:\n"
        "        fh.write(' '.join(map(str, args)) + '\\n')\n"
        "def pre_request(worker, req):\n"
        "    _note('pre', req.method, req.path, req.version)\n"
        "def post_request(worker, req, environ, resp):\n"
        "    _note('post', environ['PATH_INFO'], resp.status)\n"
    )
    env = {"CORRAL_TEST_MARKS": str(marks)}
    with server("-c", str(conf), "--max-requests", "5", env=env) as srv, Client(srv.port) as client:
        for n in range(3):
            assert client.response(client.request(f"/sleep?ms={n}")) == (200, b"slept")
        text = marks.read_text()
        assert "pre GET /sleep (2, 0)" in text and "post /sleep 200 OK" in text
        assert text.count("pre ") == 3 and text.count("post ") == 3
        sids = [client.request("/") for _ in range(2)]
        for sid in sids:
            assert client.response(sid) == (200, b"hello over HTTP/2")
        srv.wait_log("Autorestarting worker after current request.")
        client.until(lambda: client.goaway is not None, "GOAWAY after max_requests")
        srv.wait_booted(2)


def test_streams_reset_at_once_never_reach_the_application(tmp_path: Path) -> None:
    # Rapid reset (CVE-2023-44487): each request cancelled as soon as it is sent costs the
    # server a stream's bookkeeping, never an application call.
    marks = tmp_path / "marks"
    marks.touch()
    with (
        server(env={"CORRAL_TEST_MARKS": str(marks)}, threads=2) as srv,
        Client(srv.port) as client,
    ):
        for _ in range(50):
            sid = client.conn.get_next_available_stream_id()
            fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"h")]
            client.conn.send_headers(sid, [*fields, (b":path", b"/sleep?ms=100&mark=run")], True)
            client.conn.reset_stream(sid, 0x8)
        client.flush()
        assert client.response(client.request("/")) == (200, b"hello over HTTP/2")
        assert marks.read_text().count("run") < 5


def test_application_errors_before_and_after_the_head() -> None:
    with server() as srv, Client(srv.port) as client:
        status, body = client.response(client.request("/boom-before"))
        assert (status, body) == (500, b"500 Internal Server Error\n")
        sid = client.request("/boom-after")
        client.until(lambda: sid in client.resets or sid in client.ended)
        assert client.resets.get(sid) == 0x2  # INTERNAL_ERROR, never a clean end
        assert client.data[sid] == b"first part\n"
        sid = client.request("/short")
        client.until(lambda: sid in client.resets or sid in client.ended)
        assert client.resets.get(sid) == 0x2  # fewer bytes than its Content-Length
        assert client.response(client.request("/")) == (200, b"hello over HTTP/2")
        assert "boom after the head" in srv.log()


def test_limit_request_body_and_health_path() -> None:
    with (
        server("--limit-request-body", "1000", "--health-path", "/health") as srv,
        Client(srv.port) as client,
    ):
        status, _ = client.response(client.request("/upload", "POST", b"x" * 2000))
        assert status == 413
        assert client.response(client.request("/health")) == (200, b"ok\n")
        assert client.response(client.request("/")) == (200, b"hello over HTTP/2")


def test_inline_with_one_thread() -> None:
    body = os.urandom(300000)
    with server(threads=1) as srv, Client(srv.port) as client:
        sids = [client.request("/big?n=200000") for _ in range(4)]
        assert all(len(client.response(sid)[1]) == 200000 for sid in sids)
        _status, data = client.response(client.request("/upload", "POST", body))
        assert json.loads(data)["size"] == len(body)
        assert client.response(client.request("/write?n=2")) == (200, b"line 0\nline 1\nend\n")


@pytest.mark.skipif(NGHTTP is None, reason="needs nghttp")
def test_graceful_stop_sends_goaway_and_finishes_streams(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.touch()
    with server("--graceful-timeout", "10", env={"CORRAL_TEST_MARKS": str(marks)}) as srv:
        url = f"http://127.0.0.1:{srv.port}/sleep?ms=1500&mark=started"
        client = subprocess.Popen([str(NGHTTP), "-v", url], stdout=subprocess.PIPE)
        try:
            wait_for(lambda: "started" in marks.read_text(), DEADLINE, "the request started")
            srv.signal(signal.SIGTERM)
            out, _ = client.communicate(timeout=DEADLINE)
        finally:
            client.kill()
        text = out.decode()
        assert "recv GOAWAY frame" in text
        assert "slept" in text and ":status: 200" in text
        assert srv.wait_exit() == 0


# ---- negotiation --------------------------------------------------------------------------


@pytest.mark.skipif(CURL is None, reason="needs curl")
@pytest.mark.parametrize("flag", ["--http2-prior-knowledge", "--http2"])
def test_curl_prior_knowledge_and_upgrade(flag: str) -> None:
    # One URL per curl: curl 7.88.1 cannot reuse a prior-knowledge connection (curl #10634).
    with server() as srv:
        for path, expected in (("/", b"hello over HTTP/2"), ("/upload", None)):
            data = ["--data-binary", "x" * 100000] if expected is None else []
            out = subprocess.run(
                [str(CURL), "-sS", "-i", flag, *data, f"http://127.0.0.1:{srv.port}{path}"],
                capture_output=True,
                timeout=DEADLINE,
            )
            assert out.returncode == 0, out.stderr
            head, _, answer = out.stdout.rpartition(b"\r\n\r\n")
            # A request with a body that asks to upgrade is answered in HTTP/1.1 (RFC 7540
            # §3.2 lets the server decline; the body would have to be read as HTTP/1.1 first).
            upgraded = flag == "--http2" and expected is not None
            declined = flag == "--http2" and expected is None
            assert (b"101 Switching Protocols" in head) == upgraded
            assert (b"HTTP/1.1 200" if declined else b"HTTP/2 200") in head
            if expected is None:
                assert json.loads(answer)["size"] == 100000
            else:
                assert answer == expected


def test_http11_still_served_and_prior_knowledge_only_refuses_it() -> None:
    request = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    with server() as srv, socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(request)
        assert recv_all(sock).startswith(b"HTTP/1.1 200")
    args = ("-k", "gthread", "--threads", "4", "--http-protocols", "h2,h1")
    with Server(APP, *args, "--http2-cleartext", "prior-knowledge") as srv:
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            sock.sendall(request)
            assert recv_all(sock).startswith(b"HTTP/1.1 400")
        with Client(srv.port) as client:
            assert client.response(client.request("/")) == (200, b"hello over HTTP/2")


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_proxy_protocol_then_http2(tls: bool, pki: Path) -> None:
    header = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n"
    proxy = ("--proxy-protocol", "v1", "--proxy-allow-from", "127.0.0.1")
    context = None
    if tls:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        context.set_alpn_protocols(["h2"])
    args = (*tls_args(pki),) if tls else ()
    with (
        server(*proxy, *args) as srv,
        Client(srv.port, ssl_context=context, proxy_header=header) as client,
    ):
        status, body = client.response(client.request("/environ"))
        environ = json.loads(body)
        assert (status, environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == (
            200,
            "203.0.113.7",
            "40000",
        )
        assert environ["SERVER_PROTOCOL"] == "HTTP/2"


def test_untrusted_peers_get_no_cleartext_http2() -> None:
    with (
        server("--forwarded-allow-ips", "10.1.2.3") as srv,
        socket.create_connection(("127.0.0.1", srv.port)) as sock,
    ):
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert not recv_all(sock).startswith(b"\x00")  # no SETTINGS frame: not HTTP/2


def recv_all(sock: socket.socket) -> bytes:
    sock.settimeout(DEADLINE)
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    make_pki(directory)
    return directory


@pytest.mark.parametrize("threads", [4, 1])
def test_tls_alpn_with_httpx_and_h2(pki: Path, threads: int) -> None:
    httpx = pytest.importorskip("httpx")
    args = ("-k", "gthread", "--threads", str(threads), "--http-protocols", "h2,h1", *tls_args(pki))
    with Server(APP, *args) as srv:
        url = f"https://127.0.0.1:{srv.port}"
        verify = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        with httpx.Client(http2=True, verify=verify, timeout=DEADLINE) as http:
            got = http.get(url + "/")
            assert (got.http_version, got.status_code, got.text) == (
                "HTTP/2",
                200,
                "hello over HTTP/2",
            )
            body = os.urandom(500000)
            got = http.post(url + "/upload", content=body)
            assert got.json()["sha256"] == hashlib.sha256(body).hexdigest()
            assert json.loads(http.get(url + "/environ").text)["wsgi.url_scheme"] == "https"
        with httpx.Client(http2=False, verify=verify, timeout=DEADLINE) as http:
            got = http.get(url + "/")
            assert (got.http_version, got.text) == ("HTTP/1.1", "hello over HTTP/1.1")
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        context.set_alpn_protocols(["h2"])
        with Client(srv.port, ssl_context=context) as client:
            sids = [client.request("/big?n=400000") for _ in range(4)]
            assert all(len(client.response(sid)[1]) == 400000 for sid in sids)
