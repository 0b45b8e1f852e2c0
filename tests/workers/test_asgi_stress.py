"""Thousands of requests through the asgi worker's racy paths, on a real server: the acceptor
at worker_connections (connections waiting in the kernel while the worker is full), new
connections per request, keep-alive, pipelining, bodies, and deadlines swept while requests
come and go. Every request must be answered, in order, with its own body."""

from __future__ import annotations

import threading

from support.client import connect, read_response
from support.server import Server

THREADS = 8
ROUNDS = 120


def one_client(port: int, n: int, failures: list[str]) -> None:
    try:
        for round_ in range(ROUNDS):
            tag = f"{n}-{round_}"
            kind = round_ % 3
            with connect(port, timeout=30) as sock:
                if kind == 0:  # one request, then close
                    sock.sendall(f"GET /c{tag} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
                    resp, _ = read_response(sock)
                    if resp.body != b'{"path": "/c%s"}' % tag.encode():
                        failures.append(f"close {tag}: {resp.status} {resp.body!r}")
                elif kind == 1:  # keep-alive with bodies
                    rest = b""
                    for i in range(5):
                        body = f"{tag}-{i}".encode()
                        head = f"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}"
                        sock.sendall(head.encode() + b"\r\n\r\n" + body)
                        resp, rest = read_response(sock, rest)
                        if resp.body != body:
                            failures.append(f"keep-alive {tag}/{i}: {resp.body!r}")
                else:  # pipelined
                    raw = b"".join(
                        f"GET /p{tag}-{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode() for i in range(5)
                    )
                    sock.sendall(raw)
                    rest = b""
                    for i in range(5):
                        resp, rest = read_response(sock, rest)
                        if resp.body != b'{"path": "/p%s-%d"}' % (tag.encode(), i):
                            failures.append(f"pipelined {tag}/{i}: {resp.body!r}")
    except Exception as exc:  # reported below with the server log
        failures.append(f"client {n}: {exc!r}")


def test_thousands_of_requests_at_worker_connections() -> None:
    args = ["-k", "asgi", "--worker-connections", "3", "--keep-alive", "1", "--timeout", "2"]
    with Server("support.stress_apps:app", *args) as srv:
        failures: list[str] = []
        threads = [
            threading.Thread(target=one_client, args=(srv.port, n, failures))
            for n in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not failures, failures[:10]
        assert "Traceback" not in srv.log()
