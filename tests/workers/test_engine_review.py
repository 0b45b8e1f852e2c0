"""Defects the race review of the engine found, each reproduced through a real server: a stale
epoll entry left by a forked child, a request's context variables across a parked response,
and a spool file that cannot be written."""

from __future__ import annotations

import contextlib
import os
import socket

from support.client import connect, read_response
from support.server import Server, wait_for


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_child_holding_a_closed_socket_cannot_wake_another_connection() -> None:
    """A connection closed by the worker while a forked child still holds its socket used to
    leave its epoll entry armed: the next connection given the same descriptor had its
    pipelined request read and served while a thread was still serving the one before."""
    args = ["-k", "gthread", "--threads", "4", "--keep-alive", "1"]
    with Server("support.apps:echo", *args) as srv:
        (pid,) = srv.worker_pids()
        with connect(srv.port) as first:
            first.sendall(b"GET /fork?15 HTTP/1.1\r\nHost: a\r\n\r\n")
            assert read_response(first)[0].status == 200
            held = open_fds(pid)
            # The keep-alive sweep closes it in the worker (the child keeps the socket open).
            wait_for(lambda: open_fds(pid) < held, 10, "the idle connection closed")
            with connect(srv.port, timeout=10) as second:
                second.sendall(b"GET /slow?1 HTTP/1.1\r\nHost: a\r\n\r\n")
                second.sendall(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
                first.sendall(b"X")  # readiness on the closed connection's socket
                one, rest = read_response(second)
                two, _ = read_response(second, rest)
        assert one.body == b"slow"
        assert two.status == 200 and b'"/second"' in two.body
        assert "Traceback" not in srv.log()


def test_context_variables_survive_a_parked_response() -> None:
    with Server("support.apps:echo", "-k", "gthread", "--threads", "4") as srv:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", srv.port))
        with sock:
            sock.sendall(b"GET /context-stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(8192):  # small reads: the response parks many times
                data += chunk
        assert b"\r\nlost=0\r\n" in data, data[-60:]


def test_a_body_that_cannot_be_spooled_is_a_503_not_a_dead_worker() -> None:
    """A spool file over RLIMIT_FSIZE (as a full disk would): the request is refused and the
    worker goes on (the OSError used to escape the loop and kill the worker)."""
    args = ["-k", "gthread", "--threads", "2", "--request-body-memory", "65536"]
    limit = ["prlimit", f"--fsize={256 * 1024}"]
    with Server("support.apps:echo", *args, wrapper=limit) as srv:
        (pid,) = srv.worker_pids()
        body = b"b" * (1024 * 1024)
        with connect(srv.port, timeout=10) as sock:
            head = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
            with contextlib.suppress(OSError):  # it may close before taking the whole body
                sock.sendall(head + body)
            assert read_response(sock)[0].status == 503
        with connect(srv.port) as sock:
            sock.sendall(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
            assert read_response(sock)[0].status == 200
        assert srv.worker_pids() == [pid]
