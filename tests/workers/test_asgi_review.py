"""The defects a review of the asgi worker found (races, shared state, crash paths), each
reproduced through a real server: none may hang a connection, hold memory, lose a request or
leak one request's state into another."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from pathlib import Path

from support.client import connect, read_response, recv_all
from support.server import Server, wait_for
from support.ws_client import frame, open_websocket

APP = "support.asgi_review_apps:app"


def test_a_client_flooding_after_our_close_is_not_held_in_memory() -> None:
    """After the application's Close, data frames are parsed for the client's Close and
    dropped, not queued for an application that will never receive them."""
    with Server(APP, "-k", "asgi") as srv:
        (pid,) = srv.worker_pids()
        before = hwm_kib(pid)
        ws = open_websocket(srv.port)
        frame = 0x82, 1024 * 1024
        try:
            sent = 0
            with contextlib.suppress(OSError):
                for _ in range(150):  # 150 MiB within the close handshake's 5 s
                    ws.send_frame(frame[0] & 0x0F, b"x" * frame[1])
                    sent += 1
        finally:
            ws.close()
        assert sent > 20, sent
        assert hwm_kib(pid) - before < 64 * 1024
        assert "Traceback" not in srv.log()


def hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1])


def test_a_head_sent_a_byte_at_a_time_is_cut_off_at_timeout() -> None:
    """The head's deadline is set by its first bytes; later bytes do not move it."""
    with Server(APP, "-k", "asgi", "--timeout", "2") as srv, connect(srv.port) as sock:
        started = time.monotonic()
        closed = False
        for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 40:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            sock.settimeout(0.7)
            try:
                data = sock.recv(1000)
            except TimeoutError:
                continue
            closed = data == b"" or data.startswith(b"HTTP/1.1 408 ")
            break
        assert closed, "the slow head was still open"
        assert time.monotonic() - started < 20


def test_keep_alive_zero_closes_after_each_response() -> None:
    with Server(APP, "-k", "asgi", "--keep-alive", "0") as srv, connect(srv.port) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n")
        data = recv_all(sock)
        assert data.startswith(b"HTTP/1.1 200 ") and b"Connection: close\r\n" in data


def test_background_work_after_the_response_is_not_cancelled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    args = ["-k", "asgi", "--asgi-disconnect-grace-period", "0"]
    with Server(APP, *args) as srv:
        with connect(srv.port) as sock:
            sock.sendall(f"GET /background?{marker} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            assert read_response(sock)[0].body == b"ok"
        # The client has gone; the work it started goes on to its end.
        wait_for(marker.exists, 10, "the background work to end")
    assert marker.read_text() == "done"


def test_a_stop_ends_tasks_whose_client_already_left(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    args = ["-k", "asgi", "--asgi-disconnect-grace-period", "30", "--graceful-timeout", "4"]
    with Server(APP, *args) as srv:
        with connect(srv.port) as sock:
            sock.sendall(f"GET /orphan?{marker} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            time.sleep(0.3)
        time.sleep(0.3)  # the client has gone; its task runs on
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0
        assert marker.read_text() == "finally ran"  # cancelled, and its `finally` ran
        assert "SIGKILL" not in srv.log()


def test_many_pipelined_health_checks_and_a_bad_trailer_never_hang() -> None:
    args = ["-k", "asgi", "--health-path", "/healthz"]
    with Server(APP, *args) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n" * 1500)
            rest = b""
            for _ in range(1500):
                resp, rest = read_response(sock, rest)
                assert resp.status == 200
        with connect(srv.port) as sock:
            sock.sendall(b"GET /bad-trailer HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n")
            sock.settimeout(10)
            recv_all(sock)  # the connection ends (the trailer was the application's error)
        with connect(srv.port) as sock:
            sock.sendall(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(sock)[0].body == b"/after"


def test_context_variables_never_pass_from_one_request_to_the_next() -> None:
    with Server(APP, "-k", "asgi") as srv, connect(srv.port) as sock:
        sock.sendall(
            b"GET /user HTTP/1.1\r\nHost: h\r\nX-User: alice\r\n\r\n"
            b"GET /user HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        first, rest = read_response(sock)
        second, rest = read_response(sock, rest)
        sock.sendall(b"GET /user HTTP/1.1\r\nHost: h\r\n\r\n")
        third, _ = read_response(sock, rest)
    assert (first.body, second.body, third.body) == (b"alice", b"anonymous", b"anonymous")


def test_a_request_followed_by_a_half_close_is_answered() -> None:
    with Server(APP, "-k", "asgi") as srv, connect(srv.port) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = recv_all(sock)
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"slow answer")


# --- the second review ------------------------------------------------------------------------


def test_messages_in_the_same_read_as_the_clients_close_reach_the_application(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "received"
    with Server(APP, "-k", "asgi") as srv:
        ws = open_websocket(srv.port, path=f"/record?{marker}")
        try:
            frames = frame(0x1, b"one") + frame(0x1, b"two") + frame(0x8, b"\x03\xe8")
            ws.sock.sendall(frames)  # two messages and the Close in one write
            first, payload = ws.read_frame()
            assert first == 0x88 and payload[:2] == b"\x03\xe8"
        finally:
            ws.close()
        wait_for(lambda: "disconnect" in (marker.read_text() if marker.exists() else ""))
    assert marker.read_text().splitlines() == ["one", "two", "disconnect 1000"]


def test_pipelined_health_checks_for_a_client_that_does_not_read_stay_bounded() -> None:
    with Server(APP, "-k", "asgi", "--health-path", "/h") as srv:
        (pid,) = srv.worker_pids()
        before = hwm_kib(pid)
        with connect(srv.port) as sock:
            sock.settimeout(3)
            burst = b"GET /h HTTP/1.1\r\nHost: h\r\n\r\n" * 2000
            with contextlib.suppress(OSError):
                for _ in range(2000):  # 120 MB offered; the worker stops reading first
                    sock.sendall(burst)
        assert hwm_kib(pid) - before < 64 * 1024
        with connect(srv.port) as sock:
            sock.sendall(b"GET /h HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(sock)[0].status == 200


def test_half_close_with_a_pipelined_request_that_waits_for_the_end() -> None:
    with Server(APP, "-k", "asgi") as srv, connect(srv.port) as sock:
        sock.sendall(
            b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /wait-disconnect HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        sock.shutdown(socket.SHUT_WR)
        first, rest = read_response(sock)
        second, rest = read_response(sock, rest)
        assert (first.body, second.body) == (b"slow answer", b"heard")
        assert rest == b"" and recv_all(sock) == b""  # then closed


def test_a_client_that_reads_nothing_is_cut_off_after_timeout() -> None:
    with Server(APP, "-k", "asgi", "--timeout", "2") as srv:
        with connect(srv.port) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
            srv.wait_log("no write progress", timeout=20)
        with connect(srv.port) as sock:  # the worker goes on
            sock.sendall(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(sock)[0].body == b"/after"


def test_a_context_variable_never_reaches_the_next_connection() -> None:
    args = ["-k", "asgi", "--worker-connections", "1"]
    with Server(APP, *args) as srv:
        for user, expected in (("alice", b"alice"), (None, b"anonymous"), (None, b"anonymous")):
            with connect(srv.port) as sock:
                header = f"X-User: {user}\r\n" if user else ""
                request = f"GET /user HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{header}\r\n"
                sock.sendall(request.encode())
                assert read_response(sock)[0].body == expected


def test_response_write_timeout_bounds_a_steady_slow_reader() -> None:
    """Progress does not keep a response open past response_write_timeout in total."""
    args = ["-k", "asgi", "--response-write-timeout", "2", "--timeout", "30"]
    with Server(APP, *args) as srv:
        with connect(srv.port) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
            started = time.monotonic()
            # 32 KiB every 0.2 s (8 MiB would take 50 s), until the server gives up.
            while "response_write_timeout" not in srv.log() and time.monotonic() < started + 20:
                assert sock.recv(32768)  # progress all along: it is the total that ends it
                time.sleep(0.2)
        assert "Closing connection from ('127.0.0.1'" in srv.log()
        assert "response_write_timeout" in srv.log()
        with connect(srv.port) as sock:  # the worker goes on
            sock.sendall(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(sock)[0].body == b"/after"
