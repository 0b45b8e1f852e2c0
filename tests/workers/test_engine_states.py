"""The engine's connection states in-process, over a socketpair: a response parked when the
socket is full and resumed as it drains, a body received before the application is called, and
pipelined requests parsed one at a time by the loop's single parser."""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from corral.adapters.wsgi import WSGIAdapter
from corral.config.settings import Settings
from corral.workers.connection import BODY, IDLE, WRITING, Connection
from corral.workers.gthread import ThreadWorker
from corral.workers.heartbeat import Heartbeat

CHUNK = 64 * 1024
CHUNKS = 64  # 4 MiB in all


def big(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Length", str(CHUNK * CHUNKS))])
    environ["test.pulled"].append(0)
    for _ in range(CHUNKS):
        environ["test.pulled"][0] += 1
        yield b"z" * CHUNK


def make_worker(app: Any) -> tuple[ThreadWorker, list[int]]:
    """An inline gthread worker (--threads 1) with its loop's parts set up, not running."""
    settings = Settings()
    settings.threads = 1
    pulled: list[int] = []

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        environ["test.pulled"] = pulled
        return app(environ, start_response)

    worker = ThreadWorker(0, os.getppid(), [], settings, wrapped, Heartbeat())
    worker.multithread = False
    worker.adapter = WSGIAdapter(
        wrapped,
        multithread=False,
        sendfile=True,
        secure_scheme_headers={},
        forwarder_headers=[],
        header_map="drop",
        access=None,
        environ={},
    )
    worker.epoll = select.epoll()
    return worker, pulled


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.setblocking(False)
    yield server, client
    server.close()
    client.close()


def connection(worker: ThreadWorker, sock: socket.socket) -> Connection:
    conn = Connection(sock, ("192.0.2.1", 1), ("127.0.0.1", "80"), False, 5.0, time.monotonic())
    worker.conns[conn.fd] = conn
    return conn


def test_full_socket_parks_the_response_and_pulls_as_it_drains(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    worker, pulled = make_worker(big)
    server, client = pair
    conn = connection(worker, server)
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    worker.on_readable(conn, time.monotonic())
    assert conn.state == WRITING
    assert pulled[0] < 4  # only what the socket took: the rest stays in the application
    received = 0
    client.settimeout(5)
    while conn.state == WRITING:
        received += len(client.recv(1 << 20))
        worker.on_writable(conn, time.monotonic())
        assert pulled[0] - received // CHUNK <= 3  # memory bounded by a chunk or so
    while received < CHUNK * CHUNKS:
        data = client.recv(1 << 20)
        received += len(data)
    assert conn.state == IDLE
    assert pulled[0] == CHUNKS


def test_body_is_received_before_the_application_runs(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    calls: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    worker, _ = make_worker(app)
    server, client = pair
    conn = connection(worker, server)
    client.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
    worker.on_readable(conn, time.monotonic())
    assert conn.state == BODY
    assert calls == []
    client.sendall(b"56789GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    worker.on_readable(conn, time.monotonic())
    assert calls == [b"0123456789", b""]  # then the pipelined GET, parsed by the loop
    client.settimeout(5)
    data = b""
    while data.count(b"HTTP/1.1 200") < 2:
        data += client.recv(65536)
    assert conn.state == IDLE
