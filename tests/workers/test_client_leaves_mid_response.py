"""A client that leaves in the middle of a response: the application's iterable is closed
(PEP 3333) and the request logged, on every worker that pumps responses on an executor, and
nothing is logged as an unexpected error."""

from __future__ import annotations

import socket

import pytest

from support.server import Server, wait_for

WORKERS = [("sync",), ("gthread", "--threads", "1"), ("gthread", "--threads", "4")]


@pytest.mark.parametrize("worker", WORKERS, ids=lambda w: "-".join(w))
def test_iterable_closed_and_request_logged_when_the_client_leaves(worker: tuple[str, ...]) -> None:
    args = ["-k", worker[0], *worker[1:], "--access-logfile", "-"]
    with Server("support.leaving_apps:app", *args) as srv:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", srv.port)) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
                # Leave with unread data: the close resets the connection.
        wait_for(lambda: srv.log().count("endless response closed") >= 3, what="closes")
        wait_for(lambda: srv.log().count('"GET / HTTP/1.1" 200') >= 3, what="access lines")
        log = srv.log()
        assert "Unexpected error" not in log and "Traceback" not in log, log
