"""Graceful shutdown: TERM with 50 slow requests in flight. Every one of them completes with
200; and a connection attempted right after TERM is either served or refused, never accepted
and then reset (which is what happens to connections left in a listen queue when the last
listener closes)."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from reliability.apps import APP
from reliability.figures import Figures
from reliability.procfs import largest_fds, largest_rss
from reliability.traffic import percentile
from support.client import read_response
from support.server import Server, wait_for

# (worker args, workers, requests in flight)
SETUPS = {
    "gthread 1x50": (["-k", "gthread", "--threads", "50"], 1, 50),
    "gthread 2x25": (["-k", "gthread", "--threads", "25"], 2, 50),
    "sync 8": (["-k", "sync"], 8, 8),
}


def http_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/pid")
        return conn.getresponse().status == 200
    finally:
        conn.close()


class Prober:
    """Opens new connections, one after another, until stopped: each is served (200), refused
    at connect (the listeners are closed), or broken after the connection was accepted."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.served = self.refused = 0
        self.broken: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except ConnectionRefusedError:
                self.refused += 1
                time.sleep(0.002)
                continue
            except OSError as exc:  # reset or timed out while connecting: broken too
                self.broken.append(repr(exc))
                continue
            try:
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                resp, _ = read_response(sock)
                if resp.status == 200:
                    self.served += 1
                else:
                    self.broken.append(f"status {resp.status}")
            except OSError as exc:
                self.broken.append(repr(exc))
            finally:
                sock.close()


@pytest.mark.parametrize("setup", list(SETUPS))
def test_term_with_requests_in_flight(setup: str, figures: Figures, tmp_path: Path) -> None:
    args, workers, in_flight = SETUPS[setup]
    seen = tmp_path / "seen"
    seen.touch()
    results: list[tuple[float, str]] = []
    lock = threading.Lock()

    def slow_client(port: int) -> None:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/slow?1")
            resp = conn.getresponse()
            outcome = f"status {resp.status}" if resp.read() == b"slow" else "short body"
        except (OSError, http.client.HTTPException) as exc:
            outcome = repr(exc)
        finally:
            conn.close()
        with lock:
            results.append((time.monotonic() - started, outcome))

    srv = Server(APP, *args, workers=workers, env={"CORRAL_TEST_SEEN": str(seen)})
    with srv:
        assert srv.proc is not None and srv.sock is not None
        # The test's own copy of the listening socket would keep it open after the server
        # closes it; drop it so that "refused" can happen.
        srv.sock.close()
        wait_for(lambda: len(srv.worker_pids()) == workers)
        wait_for(lambda: http_ok(srv.port), 5, "the workers to serve")
        figures.rss_mib = (largest_rss(srv), None)
        figures.fds = (largest_fds(srv), None)
        clients = [threading.Thread(target=slow_client, args=(srv.port,)) for _ in range(in_flight)]
        for thread in clients:
            thread.start()
        wait_for(lambda: seen.read_text().count("/slow") >= in_flight, 10, "every request running")
        figures.rss_mib = (figures.rss_mib[0], largest_rss(srv))  # with every request running
        figures.fds = (figures.fds[0], largest_fds(srv))
        prober = Prober(srv.port)
        srv.signal(signal.SIGTERM)
        prober.thread.start()
        for thread in clients:
            thread.join(30)
        status = srv.wait_exit(30)
        wait_for(lambda: prober.refused >= 10, 10, "connections to be refused")
        prober.stopping.set()
        prober.thread.join(15)
    outcomes = [outcome for _, outcome in results]
    ok = outcomes.count("status 200")
    p99 = percentile([seconds for seconds, _ in results], 0.99)
    figures.sent = len(results) + prober.served + len(prober.broken)
    figures.failed = len(results) - ok
    figures.lost = len(prober.broken)
    figures.p99_ms = None if p99 is None else p99 * 1000
    figures.note(
        f"{in_flight} in flight at TERM; after TERM {prober.served} served, "
        f"{prober.refused} refused, {len(prober.broken)} accepted then broken"
    )
    figures.report()
    assert status == 0
    assert ok == in_flight, outcomes
    assert prober.broken == [], prober.broken[:5]


def test_connection_made_right_after_term_is_served_or_refused() -> None:
    """The deterministic case: a sync worker is inside the application when TERM arrives, so
    it cannot close its listening socket for a second; connections queued meanwhile must be
    served (or refused), not reset when it finally closes it."""
    with Server(APP, "-k", "sync", workers=1) as srv:
        assert srv.sock is not None
        srv.sock.close()  # only the server holds the listening socket now
        busy = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        busy.sendall(b"GET /slow?1 HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.2)  # the worker is now inside the application for a second
        srv.signal(signal.SIGTERM)
        try:
            late = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        except ConnectionRefusedError:
            return  # refused: fine
        with late, busy:
            late.sendall(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
            assert read_response(busy)[0].status == 200
            assert read_response(late)[0].status == 200
