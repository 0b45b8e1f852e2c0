"""The hand-off between request threads and the loop, hammered: keep-alive clients, several
threads, a few milliseconds of application work, thousands of requests.

The old engine let a finishing thread re-arm a connection and then clear the busy mark the loop
had just set for its next request, so the sweep closed connections threads were still serving
(EBADF in the log, requests dropped within seconds). Every request must get its own answer and
the log must stay clean. CORRAL_SOAK=1 runs it ten times longer.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

from support.client import read_response
from support.server import Server

CLIENTS = 12
PER_CLIENT = 2500 if os.environ.get("CORRAL_SOAK") else 250


def _client(port: int, index: int, errors: list[str], served: list[int]) -> None:
    count = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            rest = b""
            for n in range(PER_CLIENT):
                path = "/slow?0.005"
                # Every fifth request carries a small body, so the body path is raced too.
                if n % 5 == 0:
                    head = f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
                    sock.sendall(head.encode() + b"hello")
                else:
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                resp, rest = read_response(sock, rest)
                if resp.status != 200 or resp.body != b"slow":
                    errors.append(f"client {index} request {n}: {resp.status} {resp.body[:40]!r}")
                    return
                count += 1
    except OSError as exc:
        errors.append(f"client {index} after {count} requests: {exc!r}")
    finally:
        served.append(count)


@pytest.mark.parametrize("threads", [4, 16])
def test_keepalive_clients_through_thread_pool(threads: int) -> None:
    args = ["-k", "gthread", "--threads", str(threads), "--keep-alive", "5", "--timeout", "5"]
    with Server("support.apps:echo", *args) as srv:
        errors: list[str] = []
        served: list[int] = []
        clients = [
            threading.Thread(target=_client, args=(srv.port, i, errors, served))
            for i in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(120)
        log = srv.log()
    assert not errors, errors[:5]
    assert sum(served) == CLIENTS * PER_CLIENT
    for bad in ("EBADF", "Bad file descriptor", "Traceback", "Unexpected error"):
        assert bad not in log, log[-3000:]
