"""`show connections` lists each worker's open connections: the table in shared memory the
worker rewrites once a second (metrics/connections.py), its torn-read handling, and the real
server on every worker class with raw clients left in each engine state (idle, mid-head,
mid-body, in a slow application call, WebSocket, HTTP/2), read back through the control socket
and `corral ctl`."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import pytest

from corral.control.client import CommandFailed, ControlClient
from corral.control.tables import render
from corral.metrics import connections as layout
from corral.metrics.connections import (
    H2,
    HTTP,
    MAX_ROWS,
    NO_PORT,
    UNKNOWN,
    WS,
    ConnectionTable,
    Entry,
    decode,
)
from support.pki import make_pki, tls_args
from support.server import ROOT, Server, wait_for

HAS_GEVENT = (
    importlib.util.find_spec("gevent") is not None
)  # looked up: this process stays unpatched
STATES = ("head", "body", "queued", "serving", "writing", "idle")

# ---- the table, in one process --------------------------------------------------------------


def entry(key: object, port: int, state: int = 5, since: float = 100.0, requests: int = 1) -> Entry:
    return (key, "127.0.0.1", port, state, HTTP, False, since, requests, UNKNOWN)


def test_rows_round_trip_and_keep_their_first_accept_time() -> None:
    table = ConnectionTable(capacity=8)
    try:
        assert table.read() is not None and table.read().total == 0  # type: ignore[union-attr]
        a, b = object(), object()
        table.publish([entry(a, 1000, since=10.0), entry(b, 1001, state=0, since=11.0)], 12.0)
        listing = table.read()
        assert listing is not None and listing.total == 2 and listing.published == 12.0
        assert [(r.port, r.state, r.accepted, r.requests) for r in listing.rows] == [
            (1000, "idle", 10.0, 1),
            (1001, "head", 11.0, 1),
        ]
        # Later estimates of a known connection do not move its accept time; a new one's do.
        c = object()
        table.publish([entry(a, 1000, since=20.0, requests=3), entry(c, 1002, since=21.0)], 22.0)
        listing = table.read()
        assert listing is not None
        assert [(r.port, r.accepted, r.requests) for r in listing.rows] == [
            (1000, 10.0, 3),
            (1002, 21.0, 1),
        ]
        # Gone and back (a key the table no longer holds) starts again.
        table.publish([entry(b, 1001, since=30.0)], 30.0)
        assert table.read().rows[0].accepted == 30.0  # type: ignore[union-attr]
    finally:
        table.close()
        table.close()
    assert table.closed


def test_more_connections_than_rows_are_counted() -> None:
    table = ConnectionTable(capacity=4)
    try:
        keys = [object() for _ in range(10)]
        table.publish([entry(k, 2000 + i) for i, k in enumerate(keys)], 1.0)
        listing = table.read()
        assert listing is not None and listing.total == 10 and listing.unlisted == 6
        assert [r.port for r in listing.rows] == [2000, 2001, 2002, 2003]
        # Values a row cannot hold leave that row out; the total still counts it.
        bad = (object(), "x", 70000, 0, HTTP, False, 1.0, 0, UNKNOWN)
        table.publish([bad, entry(keys[0], 2000)], 2.0)
        listing = table.read()
        assert listing is not None and listing.total == 2 and len(listing.rows) == 1
    finally:
        table.close()


def test_addresses_unix_ports_protocols() -> None:
    table = ConnectionTable(capacity=4)
    try:
        long = "unix:/" + "é" * 80  # 165 bytes in UTF-8: cut
        table.publish(
            [
                (1, long, NO_PORT, 3, WS, True, 1.0, UNKNOWN, UNKNOWN),
                (2, "::1", 443, 5, H2, True, 1.0, UNKNOWN, 7),
            ],
            2.0,
        )
        listing = table.read()
        assert listing is not None
        unix, v6 = listing.rows
        assert unix.port is None and unix.protocol == "ws" and unix.tls and unix.requests is None
        assert long.startswith(unix.address.rstrip("\ufffd")) and len(unix.address) < len(long)
        assert (v6.address, v6.port, v6.protocol, v6.streams, v6.state) == (
            "::1",
            443,
            "h2",
            7,
            "idle",
        )
    finally:
        table.close()


def test_garbage_never_raises_and_never_shows() -> None:
    table = ConnectionTable(capacity=16)
    try:
        table.publish([entry(i, 3000 + i) for i in range(16)], 5.0)
        generation = 1
        # The published buffer, as the master copies it.
        size = layout._HEADER_SIZE + 16 * layout._ROW.size
        base = layout._FIRST_BUFFER + (generation & 1) * size
        good = bytearray(table._mem[base : base + size])
    finally:
        table.close()
    assert decode(bytes(good), generation, 16) is not None
    assert decode(bytes(good), generation + 2, 16) is None  # another write's buffer
    assert decode(b"", generation, 16) is None
    rng = random.Random(13)
    for _ in range(300):
        raw = bytearray(good)
        for _ in range(rng.randint(1, 60)):
            raw[rng.randrange(layout._HEADER_SIZE, len(raw))] = rng.randrange(256)
        listing = decode(bytes(raw), generation, 16)
        assert listing is not None and listing.total >= len(listing.rows)
        for row in listing.rows:
            assert row.state in STATES and row.protocol in ("http", "h2", "ws", "uwsgi")
            assert row.port is None or 0 <= row.port <= 65535
        noise = bytes(rng.randrange(256) for _ in range(len(good)))
        decode(noise, generation, 16)  # whatever it says, it says it without raising


def test_reads_while_another_process_writes_are_whole_or_none() -> None:
    """A writer in a child process publishes as fast as it can (a real worker does it once a
    second): every copy the reader gets is one publication, never a mix of two."""
    rows = 64
    table = ConnectionTable(capacity=rows)
    pid = os.fork()
    if pid == 0:  # the writer: every row of publication n says n
        try:
            keys = list(range(rows))
            for n in range(1, 1 << 62):
                port = n % 60000
                table.publish([entry(k, port, since=float(n)) for k in keys], float(n))
        finally:
            os._exit(0)
    try:
        wait_for(lambda: getattr(table.read(), "total", 0) == rows, what="a first publication")
        whole = torn = 0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline or whole < 50:
            listing = table.read()
            if listing is None:
                torn += 1
                continue
            whole += 1
            assert listing.total == rows and len(listing.rows) == rows
            assert {r.port for r in listing.rows} == {int(listing.published) % 60000}
            assert {r.accepted for r in listing.rows} == {1.0}  # first seen in publication 1
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        table.close()
    assert whole >= 50


# ---- the real server -------------------------------------------------------------------------

HTTP_APP = "support.apps:echo"
ASGI_APP = "support.asgi_apps:websocket_app"
COMMON = ("--keep-alive", "60", "--graceful-timeout", "1")
KINDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # worker -> (app, arguments, slow target)
    "sync": (HTTP_APP, ("-k", "sync"), ""),
    "gthread": (HTTP_APP, ("-k", "gthread", "--threads", "4"), "/slow?30"),
    "gevent": (HTTP_APP, ("-k", "gevent"), "/slow?30"),
    "asgi": (ASGI_APP, ("-k", "asgi"), "/sleep?30"),
}


def connect(port: int, stack: ExitStack) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    stack.callback(sock.close)
    return sock


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            while len(body) < int(value):
                body += sock.recv(65536)
    return head


def local_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def open_in_states(port: int, kind: str, stack: ExitStack) -> dict[int, tuple[str, str]]:
    """One raw connection per state this worker class can hold still; port -> (state,
    protocol) as `show connections` should list them."""
    want: dict[int, tuple[str, str]] = {}
    head = connect(port, stack)
    head.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n")  # no blank line yet
    want[local_port(head)] = ("head", "http")
    body = connect(port, stack)
    body.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    want[local_port(body)] = ("body", "http")
    if kind == "sync":  # no keep-alive, and the application blocks the loop that reports
        return want
    idle = connect(port, stack)
    idle.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(idle).startswith(b"HTTP/1.1 200")
    want[local_port(idle)] = ("idle", "http")
    slow = connect(port, stack)
    slow.sendall(b"GET " + KINDS[kind][2].encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    want[local_port(slow)] = ("serving", "http")
    if kind == "asgi":
        ws = connect(port, stack)
        ws.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert read_response(ws).startswith(b"HTTP/1.1 101")
        want[local_port(ws)] = ("serving", "ws")
    return want


def worker_rows(path: Path) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    with ControlClient(str(path)) as client:
        data = client.send("show connections")
    (worker,) = data["workers"]
    return worker, {row["port"]: row for row in worker["list"] or []}


def listed(path: Path, want: dict[int, tuple[str, str]]) -> dict[int, dict[str, Any]] | None:
    _, rows = worker_rows(path)
    seen = {port: (rows[port]["state"], rows[port]["protocol"]) for port in want if port in rows}
    return rows if seen == want else None


def server(kind: str, path: Path, *extra: str) -> Server:
    if kind == "gevent" and not HAS_GEVENT:
        pytest.skip("needs gevent (corral[gevent])")
    app, args, _ = KINDS[kind]
    return Server(app, *args, *COMMON, "--control-socket", str(path), *extra, workers=1)


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_connection_listed_with_state_peer_and_age(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "c.ctl"
    with server(kind, path) as srv, ExitStack() as stack:
        srv.wait_log("Control socket listening at")
        want = open_in_states(srv.port, kind, stack)
        first = wait_for(lambda: listed(path, want), what=f"{want} in show connections")
        assert isinstance(first, dict)
        worker, _ = worker_rows(path)
        assert worker["pid"] in srv.worker_pids() and worker["unlisted"] == 0
        for port in want:
            row = first[port]
            assert row["address"] == "127.0.0.1" and row["tls"] is False and row["age"] >= 0
            served = 1 if want[port][0] == "idle" else 0
            assert row["requests"] == (None if kind == "asgi" else served)
        # The counts by state come from the same pass of the worker's loop.
        counts = wait_for(lambda: counted(path, want), what="the counts by state")
        assert counts
        # The age is the connection's, read against the clock when asked: it grows.
        wait_for(
            lambda: all(grown(first, listed(path, want), port) for port in want),
            what="ages that grow",
        )


def counted(path: Path, want: dict[int, tuple[str, str]]) -> bool:
    worker, _ = worker_rows(path)
    expected = dict.fromkeys(STATES, 0)
    for state, _ in want.values():
        expected[state] += 1
    return bool(worker["connections"] == expected and worker["total"] == len(want))


def grown(
    before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]] | None, port: int
) -> bool:
    return after is not None and after[port]["age"] > before[port]["age"]


@pytest.mark.parametrize("kind", ["gthread", "asgi"])
def test_http2_connections_one_row_each(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "c.ctl"
    h2_args = ("--http-protocols", "h2,h1", "--http2-cleartext", "prior-knowledge")
    with server(kind, path, *h2_args) as srv, ExitStack() as stack:
        srv.wait_log("Control socket listening at")
        socks = []
        for streams in (0, 1):
            sock = connect(srv.port, stack)
            client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            client.initiate_connection()
            if streams:
                target = KINDS[kind][2]
                headers = [
                    (":method", "GET"),
                    (":path", target),
                    (":scheme", "http"),
                    (":authority", "x"),
                ]
                client.send_headers(1, headers, end_stream=True)
            sock.sendall(client.data_to_send())
            socks.append(sock)
        idle, busy = (local_port(s) for s in socks)
        want = {idle: ("idle", "h2"), busy: ("serving", "h2")}
        rows = wait_for(lambda: listed(path, want), what=f"{want} in show connections")
        assert isinstance(rows, dict)
        assert rows[idle]["streams"] == 0 and rows[busy]["streams"] == 1
        assert rows[idle]["requests"] is None


def test_more_connections_than_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.ctl"
    extra = 7
    with server("gthread", path) as srv, ExitStack() as stack:
        srv.wait_log("Control socket listening at")
        ports = {local_port(connect(srv.port, stack)) for _ in range(MAX_ROWS + extra)}

        def capped() -> dict[str, Any] | None:
            worker, rows = worker_rows(path)
            full = worker["total"] == len(ports) and worker["connections"]["head"] == len(ports)
            return worker if full and len(rows) == MAX_ROWS else None

        worker = wait_for(capped, what="every connection counted, the list capped")
        assert isinstance(worker, dict) and worker["unlisted"] == extra
        assert {row["port"] for row in worker["list"]} <= ports
        text = render("show connections", {"workers": [worker], "total": {}, "count": 0})
        assert f"and {extra} more not listed" in text


def ctl(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "corral", "ctl", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_corral_ctl_prints_the_rows_and_filters_by_pid(tmp_path: Path) -> None:
    path = tmp_path / "c.ctl"
    with server("gthread", path, "-w", "2") as srv, ExitStack() as stack:
        srv.wait_log("Booting worker with pid", 2)
        srv.wait_log("Control socket listening at")
        want = open_in_states(srv.port, "gthread", stack)

        def all_listed() -> dict[str, Any] | None:
            data = json.loads(ctl("-s", str(path), "-j", "-c", "show connections"))
            rows = [row for w in data["workers"] for row in w["list"] or []]
            seen = {row["port"]: (row["state"], row["protocol"]) for row in rows}
            # Their states held still from then on: the text shows them too.
            return data if all(seen.get(port) == want[port] for port in want) else None

        data = wait_for(all_listed, what="the connections in corral ctl -j")
        assert isinstance(data, dict)
        text = ctl("-s", str(path), "-c", "show connections")
        for port, (state, _) in want.items():
            line = next(line for line in text.splitlines() if f"127.0.0.1:{port} " in line)
            assert state in line.split()
        assert "PEER" in text and "STATE" in text and "AGE" in text
        owner = next(w for w in data["workers"] if w["list"])
        one = json.loads(ctl("-s", str(path), "-j", "-c", f"show connections {owner['pid']}"))
        assert [w["pid"] for w in one["workers"]] == [owner["pid"]]
        assert f"Worker {owner['pid']}" in ctl(
            "-s", str(path), "-c", f"show connections {owner['pid']}"
        )
        with ControlClient(str(path)) as client, pytest.raises(CommandFailed, match="not found"):
            client.send("show connections 1")


def test_answers_without_a_list_still_render() -> None:
    """An older corral's (or Gunicorn's) answer has counts only: the table is the counts."""
    older: dict[str, Any] = {
        "workers": [{"pid": 7, "connections": {"idle": 1}, "total": 1}],
        "total": {"idle": 1},
        "count": 1,
    }
    text = render("show connections", older)
    assert text.splitlines()[0].split() == ["PID", "IDLE", "TOTAL"] and "Worker" not in text
    missing = dict(older, workers=[dict(older["workers"][0], list=None)])
    assert "connections not available" in render("show connections", missing)


@pytest.mark.parametrize("kind", ["gthread", "asgi"])
def test_unix_socket_peers_name_the_socket(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "c.ctl"
    listener = tmp_path / "http.sock"
    app, args, _ = KINDS[kind]
    bind = ("--bind", f"unix:{listener}", "--control-socket", str(path))
    with Server(app, *args, *COMMON, *bind, workers=1, bind=False) as srv, ExitStack() as stack:
        srv.wait_log("Control socket listening at")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stack.callback(sock.close)
        sock.connect(str(listener))
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n")

        def row() -> dict[str, Any] | None:
            worker, _ = worker_rows(path)
            return next(iter(worker["list"] or []), None)

        found = wait_for(row, what="the unix connection in show connections")
        assert found == {
            "address": f"unix:{listener}",
            "port": None,
            "state": "head",
            "protocol": "http",
            "tls": False,
            "age": found["age"] if isinstance(found, dict) else None,
            "requests": None if kind == "asgi" else 0,
            "streams": None,
        }


@pytest.mark.parametrize("kind", ["gthread", "asgi"])
def test_tls_connections_say_so(kind: str, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    path = tmp_path / "c.ctl"
    with (
        server(kind, path, "--http-protocols", "h2,h1", *tls_args(pki)) as srv,
        ExitStack() as stack,
    ):
        srv.wait_log("Control socket listening at")
        want: dict[int, tuple[str, str]] = {}
        for alpn, protocol in (("http/1.1", "http"), ("h2", "h2")):
            context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
            context.set_alpn_protocols([alpn])
            raw = connect(srv.port, stack)
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
            stack.callback(sock.close)
            assert sock.selected_alpn_protocol() == alpn
            if alpn == "h2":
                client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
                client.initiate_connection()
                sock.sendall(client.data_to_send())
            else:
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(sock).startswith(b"HTTP/1.1 200")
            want[local_port(sock)] = ("idle", protocol)
        rows = wait_for(lambda: listed(path, want), what=f"{want} in show connections")
        assert isinstance(rows, dict) and all(rows[port]["tls"] is True for port in want)
        text = render("show connections", worker_answer(path))
        assert "h2+tls" in text and "http+tls" in text


def worker_answer(path: Path) -> dict[str, Any]:
    with ControlClient(str(path)) as client:
        answer: dict[str, Any] = client.send("show connections")
    return answer
