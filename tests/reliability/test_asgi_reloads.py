"""Reloads of an `asgi` server under steady load: HUPs, and separately a binary upgrade (USR2,
then TERM to the old master), while keep-alive and new-connection clients keep sending
requests. Not one request may fail or go unanswered: an old worker answers what it has read
and closes its idle keep-alive connections, and the listening socket stays open throughout.

tests/reliability/test_reloads.py does the same for the WSGI workers.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from reliability.budget import scaled
from reliability.figures import Figures
from reliability.procfs import children, largest_fds, largest_rss
from reliability.traffic import MeasuredLoad
from support.server import Server, alive, read_pid, wait_for

sync_client = pytest.importorskip("websockets.sync.client")
ws_exceptions = pytest.importorskip("websockets.exceptions")

APP = "apps.asgi_events_app:app"
WORKERS = 2
HUPS = scaled(4, 20)


def test_asgi_hups_under_load(figures: Figures, tmp_path: Path) -> None:
    events = tmp_path / "events"
    env = {"CORRAL_TEST_EVENTS": str(events)}
    with Server(APP, "-k", "asgi", workers=WORKERS, env=env) as srv:
        with MeasuredLoad(srv.port, keepalive=3, fresh=1) as load:
            load.wait_answers(200)
            figures.rss_mib = (largest_rss(srv), None)
            figures.fds = (largest_fds(srv), None)
            for round_ in range(HUPS):
                srv.signal(signal.SIGHUP)
                srv.wait_booted(WORKERS * (round_ + 2))
                load.wait_answers(100)  # traffic flows through every switch
            wait_for(lambda: len(srv.worker_pids()) == WORKERS, 15, "the old workers to exit")
            load.wait_answers(200)
            figures.rss_mib = (figures.rss_mib[0], largest_rss(srv))
            figures.fds = (figures.fds[0], largest_fds(srv))
        log = srv.log()
    figures.sent, figures.failed, figures.lost = load.sent, load.failed, load.lost
    figures.p99_ms = load.p99_ms
    figures.note(f"asgi, {HUPS} HUPs")
    figures.report()
    assert "Traceback" not in log, log
    # Every worker, replaced by a HUP or stopped at the end, ran its lifespan startup and
    # shutdown.
    seen = events.read_text().splitlines()
    assert seen.count("startup") == seen.count("shutdown") == WORKERS * (HUPS + 1), seen
    assert load.errors == [], load.errors[:5]


def test_asgi_upgrade_under_load(figures: Figures, tmp_path: Path) -> None:
    pidfile = tmp_path / "corral.pid"
    new = 0
    with Server(APP, "-k", "asgi", "--pid", str(pidfile), workers=WORKERS) as srv:
        try:
            with MeasuredLoad(srv.port, keepalive=3, fresh=1) as load:
                load.wait_answers(200)
                figures.rss_mib = (largest_rss(srv), None)
                srv.signal(signal.SIGUSR2)
                new = int(wait_for(lambda: read_pid(Path(f"{pidfile}.2")), 15))  # type: ignore[arg-type]
                srv.wait_booted(2 * WORKERS)  # the new master's workers too
                load.wait_answers(200)
                srv.signal(signal.SIGTERM)  # the old master goes; the new one serves on
                assert srv.wait_exit() == 0
                wait_for(lambda: read_pid(pidfile) == new, 15, "the new master to take over")
                load.wait_answers(300)
                figures.rss_mib = (figures.rss_mib[0], largest_rss(children(new)))
            log = srv.log()
        finally:
            if new and alive(new):
                os.kill(new, signal.SIGTERM)
                wait_for(lambda: not alive(new), 15, "the new master to stop")
    figures.sent, figures.failed, figures.lost = load.sent, load.failed, load.lost
    figures.p99_ms = load.p99_ms
    figures.note("asgi, USR2 then TERM to the old master")
    figures.report()
    assert "Traceback" not in log, log
    assert load.errors == [], load.errors[:5]


class EchoClients:
    """Threads that keep a WebSocket open and echo on it; a close with 1001 (going away) is
    what a reload must give, and they connect again; anything else is a failure."""

    def __init__(self, port: int, count: int) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.lock = threading.Lock()
        self.echoes = 0
        self.going_away = 0
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(count)]

    def run(self, n: int) -> None:
        while not self.stopping.is_set():
            try:
                with sync_client.connect(self.url, open_timeout=10) as ws:
                    while not self.stopping.is_set():
                        ws.send(f"client {n}")
                        if ws.recv(timeout=10) != f"client {n}":
                            raise AssertionError("wrong echo")
                        with self.lock:
                            self.echoes += 1
            except ws_exceptions.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                with self.lock:
                    if code == 1001:
                        self.going_away += 1
                    else:
                        self.failures.append(f"client {n}: closed with {code}: {exc!r}")
            except Exception as exc:  # a reset, a refused handshake, a time-out: all failures
                with self.lock:
                    self.failures.append(f"client {n}: {exc!r}")

    def wait_echoes(self, more: int, timeout: float = 15.0) -> None:
        target = self.echoes + more
        wait_for(lambda: self.echoes >= target, timeout, f"{more} more WebSocket echoes")

    def __enter__(self) -> EchoClients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)


def test_asgi_hups_with_websockets_open(figures: Figures) -> None:
    clients = 4
    with Server(APP, "-k", "asgi", workers=WORKERS) as srv:
        with EchoClients(srv.port, clients) as echo:
            echo.wait_echoes(200)
            for round_ in range(HUPS):
                srv.signal(signal.SIGHUP)
                srv.wait_booted(WORKERS * (round_ + 2))
                wait_for(lambda: len(srv.worker_pids()) == WORKERS, 15, "the old workers to exit")
                echo.wait_echoes(200)  # every client is back, on the new workers
        log = srv.log()
    figures.sent = echo.echoes
    figures.lost = len(echo.failures)
    figures.note(f"asgi, {HUPS} HUPs, {clients} WebSockets: {echo.going_away} closed 1001")
    figures.report()
    assert echo.failures == [], echo.failures[:5]
    # Each HUP closed every client's socket (some reconnected to an old worker on its way out).
    assert echo.going_away >= clients * HUPS
    assert "Traceback" not in log, log
