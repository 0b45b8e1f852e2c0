"""What a worker tells the master about its open connections, about once a second.

One pass over the worker's connections gives both the gauges of connections by state
(metrics/stats.py, for Prometheus, StatsD and the control socket) and, while the control socket
is on, one row per connection (metrics/connections.py, for `show connections`). The engine's
workers (sync, gthread and its HTTP/2 connections, gevent) report from their sweep; the asgi
worker from its once-a-second metrics turn. An HTTP/2 connection counts as serving while it has
open streams and as idle otherwise; a WebSocket counts as serving.

What this module must never do: run per request, change a connection, or raise into the loop
that calls it (the table's `publish` never raises; what is read here are plain attributes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.metrics.connections import H2 as H2_PROTOCOL
from corral.metrics.connections import HTTP, NO_PORT, UNKNOWN, UWSGI, WS, Entry
from corral.metrics.stats import CONNECTION_STATES
from corral.workers.connection import H2, IDLE, SERVING, Connection

if TYPE_CHECKING:
    from corral.workers.asgi import AsgiWorker
    from corral.workers.asgi_http import HttpProtocol
    from corral.workers.engine import Worker

_STATE_INDEX = {state: i for i, state in enumerate(CONNECTION_STATES)}


def report_engine_connections(worker: Worker, now: float) -> None:
    """The engine's connections (sync, gthread, gevent), from their states."""
    table = worker.connection_table
    counts = [0] * len(CONNECTION_STATES)
    entries: list[Entry] = []
    plain = UWSGI if worker.settings.protocol == "uwsgi" else HTTP
    for conn in worker.conns.values():
        state = conn.state
        if state == H2:
            state = SERVING if conn.h2.streams else IDLE
        if state >= len(counts):
            continue  # closed, and not yet out of the table
        counts[state] += 1
        if table is not None:
            entries.append(_engine_entry(conn, state, plain))
    _publish(worker, counts, entries, now)


def _publish(
    worker: Worker | AsgiWorker, counts: list[int], entries: list[Entry], now: float
) -> None:
    """The gauges by state, and the rows when the control socket keeps a table."""
    if worker.stats is not None:
        worker.stats.set_connections(counts)
    if worker.connection_table is not None:
        worker.connection_table.publish(entries, now)


def _engine_entry(conn: Connection, state: int, plain: int) -> Entry:
    h2 = conn.h2 if conn.state == H2 else None
    return (
        conn,
        conn.remote_addr or f"unix:{conn.server_name}",
        _port(conn.remote_port),
        state,
        plain if h2 is None else H2_PROTOCOL,
        conn.scheme == "https",
        conn.accepted,
        conn.requests if h2 is None else UNKNOWN,
        UNKNOWN if h2 is None else len(h2.streams),
    )


def report_asgi_connections(worker: AsgiWorker, now: float) -> None:
    """The asgi worker's protocols, from the state each names (`HttpProtocol.state`)."""
    table = worker.connection_table
    counts = [0] * len(CONNECTION_STATES)
    entries: list[Entry] = []
    plain = UWSGI if worker.settings.protocol == "uwsgi" else HTTP
    for protocol in worker.protocols:
        state = _STATE_INDEX[protocol.state]
        counts[state] += 1
        if table is not None:
            entries.append(_asgi_entry(protocol, state, plain))
    _publish(worker, counts, entries, now)


def _asgi_entry(protocol: HttpProtocol, state: int, plain: int) -> Entry:
    client = protocol.client
    if client is not None:
        address, port = client[0], client[1]
    else:  # a unix socket: its path, as the engine's rows give it
        transport = protocol.transport
        name = transport.get_extra_info("sockname") if transport is not None else None
        address, port = f"unix:{name or ''}", NO_PORT
    h2 = protocol.h2
    kind = H2_PROTOCOL if h2 is not None else WS if protocol.websocket is not None else plain
    return (
        protocol,
        address,
        port,
        state,
        kind,
        protocol.ssl_object is not None,
        protocol.accepted,
        UNKNOWN,
        len(h2.streams) if h2 is not None else UNKNOWN,
    )


def _port(text: str) -> int:
    try:
        return int(text) if text else NO_PORT
    except ValueError:
        return NO_PORT
