"""Client misbehaviour: clients that vanish mid-head, mid-body or mid-response, clients that
never read their response, thousands of idle connections, and slowloris. Through all of it the
server keeps answering everybody else, and once things settle the worker holds exactly the
descriptors it held before: nothing leaks."""

from __future__ import annotations

import contextlib
import http.client
import resource
import socket
import time
from collections.abc import Iterator

from reliability.apps import APP
from reliability.budget import scaled
from reliability.figures import Figures
from reliability.procfs import fd_count, only_worker, rss_mib, settle_fds, steady_fds
from reliability.traffic import MeasuredLoad, percentile
from support.client import read_response
from support.server import Server, wait_for

GTHREAD = ["-k", "gthread", "--threads", "4", "--worker-connections", "3000"]
ROUNDS = scaled(20, 500)
IDLE = scaled(2000, 2000)
SLOWLORIS = scaled(200, 1000)
BIG = 256 << 20  # a response far larger than every socket buffer between us


def quick_gets(port: int, count: int) -> list[float]:
    """`count` GETs on new connections, one after the other; their latencies."""
    latencies = []
    for _ in range(count):
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/pid")
        assert conn.getresponse().status == 200
        conn.close()
        latencies.append(time.monotonic() - started)
    return latencies


@contextlib.contextmanager
def measured(srv: Server, figures: Figures) -> Iterator[tuple[int, MeasuredLoad]]:
    """Background load around the scenario; fills the figures and checks no descriptor leaks."""
    worker = only_worker(srv)
    quick_gets(srv.port, 5)
    idle_fds = steady_fds(worker)
    figures.rss_mib = (rss_mib(worker), None)
    with MeasuredLoad(srv.port, keepalive=2, fresh=1) as load:
        load.wait_answers(20)
        yield worker, load
        load.wait_answers(20)
    after = settle_fds(worker, idle_fds, timeout=15)
    figures.fds = (idle_fds, after)
    figures.rss_mib = (figures.rss_mib[0], rss_mib(worker))
    figures.sent += load.sent
    figures.failed += load.failed
    figures.lost += load.lost
    figures.p99_ms = load.p99_ms
    figures.report()
    assert only_worker(srv) == worker, "the worker died"
    assert load.errors == [], load.errors[:5]


def test_disconnect_mid_head_mid_body_mid_response(figures: Figures) -> None:
    with Server(APP, *GTHREAD, "--timeout", "2") as srv, measured(srv, figures):
        for _ in range(ROUNDS):
            with socket.create_connection(("127.0.0.1", srv.port)) as sock:
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: a\r\nX-Half: ")
            with socket.create_connection(("127.0.0.1", srv.port)) as sock:
                sock.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n")
                sock.sendall(b"x" * 100_000)
            with socket.create_connection(("127.0.0.1", srv.port)) as sock:
                sock.sendall(f"GET /bytes?{BIG} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                received = 0
                while received < 1 << 20:
                    received += len(sock.recv(65536))
        figures.note(f"{ROUNDS} rounds of 3 broken clients")


def test_client_that_never_reads_is_dropped_after_timeout(figures: Figures) -> None:
    with Server(APP, *GTHREAD, "--timeout", "2") as srv:
        worker = only_worker(srv)
        quick_gets(srv.port, 5)
        idle_fds = steady_fds(worker)
        figures.rss_mib = (rss_mib(worker), None)
        stalled = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(2)]
        try:
            for sock in stalled:
                sock.sendall(f"GET /bytes?{BIG} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            started = time.monotonic()
            wait_for(lambda: fd_count(worker) == idle_fds + 2, 5, "both requests taken")
            latencies = quick_gets(srv.port, 50)  # two threads are stuck writing; two serve
            settle_fds(worker, idle_fds, timeout=10)
            dropped_after = time.monotonic() - started
        finally:
            for sock in stalled:
                sock.close()
        p99 = percentile(latencies, 0.99)
        figures.sent, figures.p99_ms = 52, None if p99 is None else p99 * 1000
        figures.lost = 2  # the two that never read: dropped, as they must be
        figures.fds = (idle_fds, fd_count(worker))
        figures.rss_mib = (figures.rss_mib[0], rss_mib(worker))
        figures.note(f"non-readers dropped after {dropped_after:.1f} s (--timeout 2)")
        figures.report()
        assert 2.0 <= dropped_after < 6.0
        assert max(latencies) < 1.0, "others waited for the stalled clients"


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise AssertionError(f"ulimit -n hard limit {hard} is below the {needed} needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_thousands_of_idle_connections(figures: Figures) -> None:
    raise_nofile(IDLE + 1024)  # the server inherits it: it needs as many as we do
    with Server(APP, *GTHREAD, "--timeout", "30") as srv, measured(srv, figures) as (worker, _):
        before = fd_count(worker) or 0
        idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(IDLE)]
        try:
            wait_for(lambda: (fd_count(worker) or 0) >= before + IDLE, 15, "all accepted")
            held = (fd_count(worker) or 0) - before
            latencies = quick_gets(srv.port, 100)
        finally:
            for sock in idle:
                sock.close()
        figures.sent += 100
        figures.note(
            f"{held} idle connections held; slowest quick GET {max(latencies) * 1000:.0f} ms"
        )
        assert max(latencies) < 1.0


def test_slowloris(figures: Figures) -> None:
    head = b"GET /slowloris HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"a" * 1000
    with Server(APP, *GTHREAD, "--timeout", "2") as srv, measured(srv, figures):
        slow = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(SLOWLORIS)]
        answered = 0
        try:
            for i in range(6):  # one byte every half second, for longer than --timeout
                for sock in slow:
                    with contextlib.suppress(OSError):  # already answered and closed
                        sock.send(head[i : i + 1])
                time.sleep(0.5)
            for sock in slow:
                sock.settimeout(10)
                with contextlib.suppress(OSError):
                    resp, _ = read_response(sock)
                    answered += resp.status == 408
        finally:
            for sock in slow:
                sock.close()
        figures.note(f"{SLOWLORIS} slowloris clients; {answered} answered 408")
        assert answered == SLOWLORIS
