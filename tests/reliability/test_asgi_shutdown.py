"""Graceful stop of the asgi worker with long-lived work in flight: TERM while WebSockets are
open and an endless streamed response is being read. Every WebSocket is closed with 1001
("going away", RFC 6455 §7.4.1); the stream ends and the application learns it (it sees
`http.disconnect`, or its send fails, never only a cancellation); the lifespan shutdown runs;
and the server exits with status 0 without the master having to kill the worker, that is within
`graceful_timeout` (3 s here). And a connection waiting for its next (or first) request when the
stop begins still has that request answered, with Connection: close.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from apps.asgi_common import SHUTDOWN_FILE
from reliability.figures import Figures
from reliability.procfs import largest_fds, largest_rss
from support.client import Response, connect, read_response
from support.server import Server, wait_for

sync_client = pytest.importorskip("websockets.sync.client")
ws_exceptions = pytest.importorskip("websockets.exceptions")

APP = "apps.asgi_events_app:app"
SOCKETS = 5
GRACEFUL = 3


def start_stream(port: int) -> tuple[socket.socket, bytes]:
    """An endless chunked GET whose first chunk has arrived: it is in flight."""
    sock = connect(port, timeout=15)
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
    data = b""
    while b"tick 0\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the stream closed before its first chunk: {data!r}"
        data += chunk
    return sock, data


def read_to_end(sock: socket.socket, data: bytes) -> bytes:
    """Everything until the server closes (a reset counts as the end too)."""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@dataclass
class Outcome:
    codes: list[int | None]  # the close code each WebSocket received
    body: bytes  # the whole streamed response as it went over the wire
    status: int  # the master's exit status
    seen: list[str]  # what the application recorded
    log: str


def term_in_flight(figures: Figures, tmp_path: Path) -> Outcome:
    """TERM with SOCKETS WebSockets open and a stream in flight; what everyone saw."""
    events, mark = tmp_path / "events", tmp_path / "shutdown"
    env = {"CORRAL_TEST_EVENTS": str(events), SHUTDOWN_FILE: str(mark)}
    args = ["-k", "asgi", "--graceful-timeout", str(GRACEFUL)]
    with Server(APP, *args, env=env) as srv, contextlib.ExitStack() as opened:
        url = f"ws://127.0.0.1:{srv.port}/ws"
        sockets = [opened.enter_context(sync_client.connect(url)) for _ in range(SOCKETS)]
        for n, ws in enumerate(sockets):
            ws.send(f"hello {n}")
            assert ws.recv(timeout=5) == f"hello {n}"
        stream, head = start_stream(srv.port)
        figures.rss_mib = (largest_rss(srv), None)
        figures.fds = (largest_fds(srv), None)
        srv.signal(signal.SIGTERM)
        codes = []
        for ws in sockets:
            with pytest.raises(ws_exceptions.ConnectionClosed) as closed:
                ws.recv(timeout=15)
            codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
        body = read_to_end(stream, head)
        stream.close()
        status = srv.wait_exit(timeout=GRACEFUL + 15)
        wait_for(mark.exists, 5, "the lifespan shutdown's file")
        assert mark.read_text().startswith("shutdown ")
        outcome = Outcome(codes, body, status, events.read_text().splitlines(), srv.log())
    figures.sent = SOCKETS + 1
    figures.lost = sum(code != 1001 for code in codes)
    figures.note(f"TERM, {SOCKETS} WebSockets and a stream; app saw {outcome.seen[1:]}")
    figures.report()
    return outcome


def test_term_with_websockets_and_a_stream_in_flight(figures: Figures, tmp_path: Path) -> None:
    outcome = term_in_flight(figures, tmp_path)
    seen, body = outcome.seen, outcome.body
    assert outcome.codes == [1001] * SOCKETS
    assert outcome.status == 0, outcome.log
    assert seen[0] == "startup" and seen[-1] == "shutdown", seen
    assert seen.count("ws disconnect 1001") == SOCKETS, seen
    assert body.startswith(b"HTTP/1.1 200 ")
    completed = body.endswith(b"\r\n0\r\n\r\n")
    assert completed or "stream disconnect" in seen or "stream send failed" in seen, seen
    assert "stream cancelled" not in seen, seen
    # The master kills a worker still there at graceful_timeout, and says so; and the stop's
    # own doing is no application failure.
    assert "SIGKILL" not in outcome.log and "Traceback" not in outcome.log, outcome.log


@pytest.mark.parametrize("kind", ["idle keep-alive", "fresh"])
def test_request_on_a_waiting_connection_during_the_stop_is_answered(kind: str) -> None:
    """A connection waiting for its next (or first) request when TERM comes: the request the
    client sends during the stop is answered, and the connection then closed."""
    args = ["-k", "asgi", "--graceful-timeout", "6"]
    with Server(APP, *args) as srv, connect(srv.port) as waiting:
        if kind == "idle keep-alive":
            waiting.sendall(b"GET /load HTTP/1.1\r\nHost: a\r\n\r\n")
            first, rest = read_response(waiting)
            assert (first.status, first.body, rest) == (200, b"ok", b"")
        # Connections are accepted in the order they came: once the WebSocket is open, the
        # worker holds `waiting` too.
        with sync_client.connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
            stream, _ = start_stream(srv.port)  # keeps the worker draining for seconds
            srv.signal(signal.SIGTERM)
            with pytest.raises(ws_exceptions.ConnectionClosed):
                ws.recv(timeout=15)  # the worker has begun its graceful stop
            # Now the client sends its request, as a browser or a connection pool may.
            try:
                waiting.sendall(b"GET /load HTTP/1.1\r\nHost: a\r\n\r\n")
                answer: Response | str
                answer, _ = read_response(waiting)
            except (ConnectionError, OSError) as exc:
                answer = repr(exc)
            stream.close()
        assert isinstance(answer, Response), f"no answer: {answer}"
        assert (answer.status, answer.body) == (200, b"ok")
        assert answer.header("Connection") == "close"
