"""Review of HTTP/2 on the gthread worker: races between request threads and the loop, and
what one stream or one client can do to the others, through the real server and the h2 client.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import ssl
import threading
from pathlib import Path

import h2.errors
import pytest
from hyperframe.frame import GoAwayFrame

from support.gthread_h2_client import Client
from support.h2_client import PREFACE, FrameReader, frame, settings
from support.pki import make_pki, tls_args
from support.server import Server

APP = "support.gthread_h2_review_apps:app"
H2_ARGS = ("-k", "gthread", "--http-protocols", "h2,h1", "--http2-cleartext", "both")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    make_pki(directory)
    return directory


def server(*extra: str, threads: int = 4) -> Server:
    return Server(APP, *H2_ARGS, "--threads", str(threads), *extra)


def test_reset_stream_close_does_not_block_the_loop() -> None:
    # The iterable of a reset stream is closed; its close() waits for /release on another
    # connection. Run in the loop, it would hold every connection until it gave up.
    with server() as srv, Client(srv.port) as first, Client(srv.port) as second:
        sid = first.request("/hold-close")
        first.until(lambda: len(first.data[sid]) > 0, "first bytes")
        first.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        first.flush()
        assert first.response(first.request("/")) == (200, b"hello")
        assert second.response(second.request("/release")) == (200, b"released")


# ---- stress: resets, abrupt closes and worker stops, mixed ---------------------------------

_EXPECTED = {
    "/": b"hello",
    "/stream?n=24": b"s" * 16384 * 24,  # past PULL_BUDGET: pulled in several goes
    "/write?n=24": b"w" * 16384 * 24,  # past PUSH_LIMIT: write() waits
}
_UPLOAD = b"u" * 100000
LOST_GOAWAYS: list[int] = []


def _client(port: int, tls: ssl.SSLContext | None) -> Client:
    return Client(port, ssl_context=tls)


def _open(client: Client, rng: random.Random) -> tuple[int, bytes]:
    """One stream of a random kind; (stream id, the body it must answer)."""
    kind = rng.randrange(5)
    if kind < 3:
        path = list(_EXPECTED)[kind]
        return client.request(path), _EXPECTED[path]
    sid = client.conn.get_next_available_stream_id()
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"localhost")]
    fields.append((b":path", b"/read"))
    if kind == 3:  # a Content-Length: the loop collects it first
        fields.append((b"content-length", b"%d" % len(_UPLOAD)))
    # else no Content-Length: streamed to wsgi.input as it comes
    client.conn.send_headers(sid, fields)
    client.data[sid] = bytearray()
    client.flush()
    client.send_body(sid, _UPLOAD)
    return sid, b"%d" % len(_UPLOAD)


def _settled(client: Client, sid: int) -> bool:
    goaway = client.goaway
    return (
        sid in client.ended
        or sid in client.resets
        or (goaway is not None and sid > goaway.last_stream_id)
    )


def _round(port: int, rng: random.Random, tls: ssl.SSLContext | None) -> int:
    """One connection: a batch of streams, some reset (at once or once data came), maybe an
    abrupt close; every stream not reset must be answered in full (or be beyond the GOAWAY).
    The number of streams answered."""
    with _client(port, tls) as client:
        wanted: dict[int, bytes] = {}
        reset: set[int] = set()
        try:
            for _ in range(rng.randrange(1, 10)):
                if client.goaway is not None:
                    break
                sid, body = _open(client, rng)
                wanted[sid] = body
                if rng.random() < 0.2:
                    client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                    client.flush()
                    reset.add(sid)
            if rng.random() < 0.1:
                return 0  # closed with everything in flight
            for sid in wanted:
                if sid not in reset and rng.random() < 0.1:
                    client.until(lambda s=sid: client.data[s] or _settled(client, s))
                    if not _settled(client, sid):
                        client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                        client.flush()
                        reset.add(sid)
            client.until(lambda: all(_settled(client, s) for s in wanted if s not in reset))
        except (EOFError, OSError) as exc:
            # The server may close after its GOAWAY once the streams it named are done (a
            # send may fail first): read what is left, the GOAWAY included.
            with contextlib.suppress(EOFError, OSError):
                while True:
                    client.pump()
            if client.goaway is None and not isinstance(exc, EOFError):
                # Our send met the closed connection. Closed with our frames unread, the
                # server's kernel would answer them with a reset, which can destroy the
                # GOAWAY and the last responses before we read them: the server lingers.
                LOST_GOAWAYS.append(1)
            assert client.goaway is not None, "closed without GOAWAY"
            last = client.goaway.last_stream_id
            lost = [s for s in wanted if s <= last and s not in reset and not _settled(client, s)]
            assert not lost, f"streams {lost} dropped"
        served = 0
        for sid, body in wanted.items():
            if sid in client.ended and sid not in reset and sid not in client.resets:
                assert int(client.headers[sid][b":status"]) == 200
                assert bytes(client.data[sid]) == body, sid
                served += 1
        return served


def _stress(port: int, tls: ssl.SSLContext | None, rounds: int, seed: int) -> int:
    served = [0] * 4
    errors: list[BaseException] = []

    def run(n: int) -> None:
        rng = random.Random(seed * 10 + n)
        try:
            for _ in range(rounds):
                served[n] += _round(port, rng, tls)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(served)


def _assert_clean(log: str) -> None:
    for word in ("Traceback", "Unexpected error", "CRITICAL", "[ERROR]"):
        assert word not in log, log[-5000:]
    # Workers retire (max_requests) all along; none may exit for another reason.
    for line in log.splitlines():
        if "Worker exiting (pid: " in line:
            assert "max_requests reached" in line, line


@pytest.mark.parametrize(("threads", "tls"), [(4, False), (1, False), (4, True)])
def test_stress_resets_closes_and_stops(threads: int, tls: bool, pki: Path) -> None:
    # A request_body_buffer of 1.5 uploads: some bodies are received first, some streamed.
    args = ["--max-requests", "150", "--max-requests-jitter", "50", "--request-body-buffer"]
    args.append("150000")
    context = None
    if tls:
        args += tls_args(pki)
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        context.set_alpn_protocols(["h2"])
    runs = int(os.environ.get("CORRAL_H2_REVIEW_RUNS", "1"))
    with Server(APP, *H2_ARGS, "--threads", str(threads), *args, workers=2) as srv:
        total = 0
        for run in range(runs):
            served = _stress(srv.port, context, 40, run)
            assert served > 0
            total += served
            with _client(srv.port, context) as client:
                assert client.response(client.request("/")) == (200, b"hello")
        _assert_clean(srv.log())
    print(f"served {total} requests; GOAWAYs lost to a reset: {len(LOST_GOAWAYS)}")


@pytest.mark.parametrize("threads", [4, 1])
def test_stream_opened_with_a_reset_after_max_requests_is_served(threads: int) -> None:
    # One packet: a request that retires the worker (max_requests 1) and waits for its body,
    # its reset, and another request. The reset stream was the only one the worker held, but
    # the session had the next one open already: the GOAWAY that follows names it, so it
    # must be served, not dropped with the connection.
    with server("--max-requests", "1", threads=threads) as srv, Client(srv.port) as client:
        client.flush()
        upload = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"localhost")]
        client.conn.send_headers(1, [*upload, (b":path", b"/read"), (b"content-length", b"10")])
        client.conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        get = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost")]
        client.conn.send_headers(3, [*get, (b":path", b"/")], end_stream=True)
        client.data[3] = bytearray()
        client.flush()
        with contextlib.suppress(EOFError):
            client.until(lambda: 3 in client.ended or 3 in client.resets, "stream 3")
        assert client.goaway is None or client.goaway.last_stream_id >= 3
        assert 3 in client.ended, "stream 3, named by the GOAWAY, was dropped"
        assert int(client.headers[3][b":status"]) == 200 and client.data[3] == b"hello"


def _post_without_length(client: Client) -> int:
    sid: int = client.conn.get_next_available_stream_id()
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"localhost")]
    client.conn.send_headers(sid, [*fields, (b":path", b"/read")])
    client.data[sid] = bytearray()
    client.flush()
    return sid


def test_bodies_without_length_hold_no_thread_before_they_come() -> None:
    # Streams whose body has no Content-Length and has not come: with two threads, four such
    # streams must not keep another connection's request waiting (on HTTP/1.1 a chunked body
    # is received by the loop first, up to request_body_buffer).
    with server(threads=2) as srv, Client(srv.port) as idle, Client(srv.port) as other:
        sids = [_post_without_length(idle) for _ in range(4)]
        idle.conn.send_data(sids[0], b"x" * 1000)
        idle.flush()
        assert other.response(other.request("/")) == (200, b"hello")
        for sid in sids:
            idle.send_body(sid, b"y" * 5000)
        for n, sid in enumerate(sids):
            assert idle.response(sid) == (200, b"6000" if n == 0 else b"5000")


def test_body_without_length_past_the_budget_is_streamed_whole() -> None:
    body = os.urandom(700000)
    with server("--request-body-buffer", "100000") as srv, Client(srv.port) as client:
        sids = [_post_without_length(client) for _ in range(3)]
        for sid in sids:
            client.send_body(sid, body)
        for sid in sids:
            assert client.response(sid) == (200, b"700000")
        assert client.response(client.request("/")) == (200, b"hello")


def test_a_stuck_stream_does_not_cut_the_others_short() -> None:
    # A stream running past `timeout` retires the worker; the other stream of the same
    # connection (a body the client sends slowly, then ends once the GOAWAY came) must
    # still be served within graceful_timeout.
    with server("--timeout", "3") as srv, Client(srv.port) as client:
        client.request("/hang")
        fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"localhost")]
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(sid, [*fields, (b":path", b"/read"), (b"content-length", b"40")])
        client.data[sid] = bytearray()
        sent = 0
        client.sock.settimeout(0.5)
        while client.goaway is None and sent < 39:
            client.conn.send_data(sid, b"x")
            client.flush()
            sent += 1
            with contextlib.suppress(TimeoutError):
                client.pump()
        assert client.goaway is not None, "the stuck stream did not retire the worker"
        client.sock.settimeout(15)
        client.conn.send_data(sid, b"x" * (40 - sent), end_stream=True)
        client.flush()
        assert client.response(sid) == (200, b"40")
        srv.wait_log("has run for")


def test_a_stream_waiting_for_a_thread_is_not_reported_stuck() -> None:
    # Ten 1-second requests on two threads: the last ones wait for a thread longer than
    # `timeout` (3 s) but none runs for so long; none may be reported stuck (which retires
    # the worker). The time a request runs is counted from when a thread takes it up.
    with server("--timeout", "3", threads=2) as srv, Client(srv.port) as client:
        sids = [client.request("/nap?ms=1000") for _ in range(10)]
        for sid in sids:
            assert client.response(sid) == (200, b"rested")
        assert client.response(client.request("/")) == (200, b"hello")
        assert "has run for" not in srv.log()
        assert client.goaway is None


def test_goaway_survives_what_the_client_sent_after_it() -> None:
    # A connection error, followed by a megabyte the server will never read: the GOAWAY must
    # still reach the client, not be destroyed by the reset a close with unread input sends.
    with server() as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
        # DATA on stream 0 is a connection error (RFC 9113 §6.1): PROTOCOL_ERROR.
        bad = frame(0x0, 0, 0, b"x")
        junk = frame(0x6, 0, 0, b"12345678") * 60000
        sock.sendall(PREFACE + settings() + bad)
        with contextlib.suppress(OSError):
            sock.sendall(junk)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        reader, frames = FrameReader(), []
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                frames += reader.feed(data)
        sock.close()
        assert any(isinstance(f, GoAwayFrame) for f in frames), frames
