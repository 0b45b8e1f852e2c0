"""The whole server in a subprocess, driven over loopback by real clients, per worker class."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from support.client import connect, exchange, read_response
from support.server import Server, wait_for

WORKER_ARGS = {
    "sync": ["-k", "sync"],
    "gthread": ["-k", "gthread", "--threads", "4"],
    "gthread-inline": ["-k", "gthread", "--threads", "1"],
}


@pytest.fixture(params=sorted(WORKER_ARGS), scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    seen = tmp_path_factory.mktemp("seen") / "seen.txt"
    srv = Server(
        "support.apps:echo", *WORKER_ARGS[request.param], env={"CORRAL_TEST_SEEN": str(seen)}
    )
    srv.kind = request.param  # type: ignore[attr-defined]
    srv.seen = seen  # type: ignore[attr-defined]
    with srv:
        yield srv


def get(
    server: Server,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def test_get_environ(server: Server) -> None:
    resp, data = get(server, "/a%20b/c?x=1&y=%41")
    assert resp.status == 200
    env = json.loads(data)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/a b/c"
    assert env["RAW_URI"] == "/a%20b/c?x=1&y=%41"
    assert env["QUERY_STRING"] == "x=1&y=%41"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["wsgi.url_scheme"] == "http"
    assert env["SCRIPT_NAME"] == ""
    assert resp.getheader("Server") == "corral"
    assert resp.getheader("Date")


def test_post_body(server: Server) -> None:
    payload = os.urandom(300_000)
    resp, data = get(server, "/echo-body", "POST", payload)
    assert resp.status == 200
    assert data == payload


def test_chunked_upload(server: Server) -> None:
    pieces = [os.urandom(n) for n in (1, 1000, 70000, 5)]
    raw = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    head = (
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
    )
    with connect(server.port) as sock:
        sock.sendall(head + raw)
        resp, _ = read_response(sock)
    assert resp.status == 200
    whole = b"".join(pieces)
    assert json.loads(resp.body) == {
        "size": len(whole),
        "sha256": hashlib.sha256(whole).hexdigest(),
    }


def test_readline_and_iteration(server: Server) -> None:
    _resp, data = get(server, "/lines", "POST", b"one\ntwo\nthree")
    assert json.loads(data) == {"first": "one\n", "rest": ["two\n", "three"]}


def test_head_has_no_body(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"HEAD /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: " in head
    assert body == b""


def test_100_continue(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(
            b"POST /echo-body HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        resp, _ = read_response(sock)
    assert resp.status == 200
    assert resp.body == b"hello"


def test_streamed_response_is_chunked(server: Server) -> None:
    resp, data = get(server, "/stream")
    assert resp.status == 200
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert data == b"".join(f"part {i}\n".encode() for i in range(5))


def test_streamed_response_http10_is_close_delimited(server: Server) -> None:
    data = exchange(server.port, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert b"Connection: close" in head
    assert body == b"".join(f"part {i}\n".encode() for i in range(5))


def test_file_wrapper(server: Server) -> None:
    resp, data = get(server, "/file?100000")
    assert resp.status == 200
    assert resp.getheader("Content-Length") == "100000"
    assert data == bytes(range(256)) * (100000 // 256) + b"x" * (100000 % 256)


def test_write_callable(server: Server) -> None:
    _, data = get(server, "/write")
    assert data == b"written then returned"


def test_no_body_statuses(server: Server) -> None:
    for code in ("204", "304"):
        with connect(server.port) as sock:
            sock.sendall(
                f"GET /status?{code} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {code}".encode())
        assert b"Content-Length" not in head and b"Transfer-Encoding" not in head
        assert body == b""


def test_malformed_request_is_400_and_app_not_called(server: Server) -> None:
    seen = server.seen  # type: ignore[attr-defined]
    before = seen.read_text() if seen.exists() else ""
    data = exchange(
        server.port,
        b"GET /smuggle HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in data
    after = seen.read_text() if seen.exists() else ""
    assert "/smuggle" not in after[len(before) :]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
)
def test_protocol_errors(server: Server, raw: bytes, status: int) -> None:
    data = exchange(server.port, raw)
    assert data.startswith(f"HTTP/1.1 {status} ".encode()), data[:100]


def test_app_exception_is_500_with_traceback_logged(server: Server) -> None:
    resp, _ = get(server, "/boom")
    assert resp.status == 500
    server.wait_log("boom from the test app")


def test_bad_response_header_is_500(server: Server) -> None:
    data = exchange(server.port, b"GET /bad-header HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"Injected" not in data


def test_keepalive_and_pipelining(server: Server) -> None:
    if server.kind == "sync":  # type: ignore[attr-defined]
        # sync closes each connection after its response, as Gunicorn's does.
        data = exchange(
            server.port, b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert data.count(b"HTTP/1.1 200") == 1
        assert b"Connection: close" in data
        return
    with connect(server.port) as sock:
        sock.sendall(
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /echo-body HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        first, rest = read_response(sock)
        second, rest = read_response(sock, rest)
        third, rest = read_response(sock, rest)
        assert json.loads(first.body)["PATH_INFO"] == "/1"
        assert second.body == b"abc"
        assert json.loads(third.body)["PATH_INFO"] == "/3"
        # Still open: a fourth request on the same connection works.
        sock.sendall(b"GET /4 HTTP/1.1\r\nHost: a\r\n\r\n")
        fourth, _ = read_response(sock, rest)
        assert json.loads(fourth.body)["PATH_INFO"] == "/4"


def test_trickled_head_does_not_block_others(server: Server) -> None:
    slow = connect(server.port)
    try:
        slow.sendall(b"GET /slowclient HTTP/1.1\r\nHo")
        resp, _ = get(server, "/fast")
        assert resp.status == 200
        slow.sendall(b"st: a\r\nConnection: close\r\n\r\n")
        resp2, _ = read_response(slow)
        assert resp2.status == 200
    finally:
        slow.close()


def test_large_upload_memory_stays_flat(server: Server) -> None:
    size = 100 * 1024 * 1024
    pid = json.loads(get(server, "/pid")[1])["pid"]
    rss_before = _rss_kib(pid)
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with connect(server.port, timeout=60) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % size
        )
        peak = rss_before
        for i in range(100):
            sock.sendall(block)
            digest.update(block)
            if i % 10 == 0:
                current = _rss_kib(pid)
                peak = max(peak, current)
        resp, _ = read_response(sock)
    assert resp.status == 200
    assert json.loads(resp.body) == {"size": size, "sha256": digest.hexdigest()}
    if server.kind != "gthread" or json.loads(get(server, "/pid")[1])["pid"] == pid:  # type: ignore[attr-defined]
        assert peak - rss_before < 20 * 1024, (rss_before, peak)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_concurrent_clients(server: Server) -> None:
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            for i in range(20):
                resp, data = get(server, f"/c{n}/{i}")
                assert resp.status == 200
                assert json.loads(data)["PATH_INFO"] == f"/c{n}/{i}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_client_gone_mid_body_does_not_hurt_worker(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc")
    time.sleep(0)  # the close above is what matters; the next request must still work
    resp, _ = get(server, "/after")
    assert resp.status == 200


def test_raw_socket_unix_peer_fields_absent_for_tcp(server: Server) -> None:
    _resp, data = get(server, "/", headers={"X-Forwarded-Proto": "https"})
    # 127.0.0.1 is in the default forwarded_allow_ips, so the proxy's word is taken.
    assert json.loads(data)["wsgi.url_scheme"] == "https"


def test_underscore_headers_dropped(server: Server) -> None:
    _resp, data = get(
        server, "/", headers={"X_Forwarded_For": "6.6.6.6", "X-Forwarded-For": "1.2.3.4"}
    )
    env = json.loads(data)
    assert env["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"


_ = (socket, wait_for)


def test_unread_body_is_drained_for_keepalive(server: Server) -> None:
    if server.kind == "sync":  # type: ignore[attr-defined]
        return
    with connect(server.port) as sock:
        sock.sendall(b"POST /ignored HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
        sock.sendall(b"x" * 5000 + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        first, rest = read_response(sock)
        second, _ = read_response(sock, rest)
    assert first.status == 200
    assert json.loads(second.body)["PATH_INFO"] == "/next"


@pytest.mark.parametrize("kind", ["gthread", "gthread-inline"])
def test_stalled_unread_streamed_body_closes_connection(kind: str) -> None:
    """With buffering off the application reads the body itself; one it leaves unread and
    that never completes is given up on within the drain bound."""
    args = [*WORKER_ARGS[kind], "--request-body-buffer", "0"]
    with Server("support.apps:echo", *args) as srv, connect(srv.port) as sock:
        sock.sendall(b"POST /ignored HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\nabc")
        started = time.monotonic()
        resp, _ = read_response(sock)
        assert resp.status == 200
        # The rest of the body never comes: the server gives up within its drain bound.
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("kind", sorted(WORKER_ARGS))
def test_stalled_buffered_body_gets_408(kind: str) -> None:
    """A body the worker buffers that stops arriving: 408 after `timeout` without progress,
    and the application is never called."""
    with Server("support.apps:echo", *WORKER_ARGS[kind], "--timeout", "2") as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\nabc")
            started = time.monotonic()
            resp, _ = read_response(sock)
            assert resp.status == 408
            assert sock.recv(100) == b""
            assert time.monotonic() - started < 10
        with connect(srv.port) as sock:  # the worker goes on
            sock.sendall(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
            assert read_response(sock)[0].status == 200


def test_absolute_form_target_overrides_host(server: Server) -> None:
    data = exchange(
        server.port, b"GET http://example.test:8080/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n"
    )
    env = json.loads(data.partition(b"\r\n\r\n")[2])
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == (
        "example.test:8080",
        "example.test",
        "8080",
    )
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/p", "q=1")


def test_many_short_connections_never_hang() -> None:
    """Thousands of back-to-back connections: descriptors are reused at once, and a thread
    finishing with an old connection must never disturb the new one with the same number."""
    with Server("support.apps:echo", "-k", "gthread", "--threads", "4") as srv:
        for i in range(1500):
            with connect(srv.port, timeout=5) as sock:
                sock.sendall(f"GET /n{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                resp, _ = read_response(sock)
                assert resp.status == 200
