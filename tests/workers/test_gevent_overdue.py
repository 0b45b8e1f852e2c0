"""The gevent worker's stuck-request rule in-process (no gevent needed: nothing is patched, no
greenlet runs): a request counts as stuck after `timeout` seconds, and never with
`--timeout 0`, where the engine's own I/O deadline of 30 s would otherwise apply."""

from __future__ import annotations

import os
import socket

import pytest

from corral.config.settings import Settings
from corral.workers.connection import SERVING, Connection
from corral.workers.gevent import GeventWorker
from corral.workers.heartbeat import Heartbeat


def serving_since(started: float) -> Connection:
    server, client = socket.socketpair()
    client.close()
    conn = Connection(server, ("127.0.0.1", 1), ("127.0.0.1", "80"), False, 30.0, started)
    conn.state = SERVING
    conn.started = started
    return conn


@pytest.mark.parametrize(
    ("timeout", "ran_for", "stuck"),
    [(5, 4.0, False), (5, 6.0, True), (0, 31.0, False), (0, 3600.0, False)],
)
def test_overdue(timeout: int, ran_for: float, stuck: bool) -> None:
    settings = Settings()
    settings.timeout = timeout
    worker = GeventWorker(0, os.getppid(), [], settings, None, Heartbeat())
    conn = serving_since(1000.0)
    try:
        assert worker.overdue(conn, 1000.0 + ran_for) is stuck
    finally:
        conn.close()
