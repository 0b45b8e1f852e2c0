"""Slow clients never pin a worker. One worker holds 4 slow readers (a 32 MiB response each,
with a small receive buffer, nothing read after its first bytes, so the server's send buffer
fills) and 4 slow uploaders (Content-Length: 32 MiB, only 1 KiB sent); meanwhile a new client
gets every answer, quickly, on fresh connections. Then each slow client finishes at full speed
and gets exactly what it asked for, and the worker never held a whole body in memory.

Timings are recorded as figures, never asserted tightly: each probe only has to be answered
within PROBE_DEADLINE, which a worker that waits for a slow client cannot do.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import select
import socket
import time
from collections.abc import Iterator
from functools import cache

import pytest

from reliability.apps import APP, generated_bytes
from reliability.budget import scaled
from reliability.figures import Figures
from reliability.procfs import PeakRss, fd_count, only_worker, rss_mib, steady_fds
from reliability.traffic import percentile
from support.client import read_response
from support.server import Server, wait_for

KINDS = {
    "sync": ["-k", "sync"],
    "gthread-1": ["-k", "gthread", "--threads", "1"],
    "gthread-4": ["-k", "gthread", "--threads", "4"],
}
SLOW = 4  # readers, and as many uploaders
BODY = 32 << 20
TRICKLE = 1024
READER_RCVBUF = 4096  # the kernel doubles it: a window of a few KiB
PROBES = scaled(50, 500)
PROBE_DEADLINE = 2.0
# One unanswered probe fails the test already; a few more say it was no fluke, and waiting
# for every one of them would only make a pinned worker's failure slower.
GIVE_UP_AFTER = 3
SETTLE_SECONDS = 3.0
# Less than one whole body: a worker that holds a slow client's body in memory exceeds it.
RSS_GROWTH_LIMIT_MIB = BODY >> 20
DRAIN_TIMEOUT = 30.0


@cache
def upload_body() -> bytes:
    return b"".join(generated_bytes(BODY))


@cache
def body_sha256() -> str:
    return hashlib.sha256(upload_body()).hexdigest()


def open_reader(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Before connecting, so the window is small from the handshake on.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READER_RCVBUF)
    sock.settimeout(DRAIN_TIMEOUT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /bytes?{BODY} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    return sock


def open_uploader(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DRAIN_TIMEOUT)
    head = f"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {BODY}\r\n\r\n".encode()
    sock.sendall(head + upload_body()[:TRICKLE])
    return sock


def response_begun(sock: socket.socket) -> bool:
    """Whether the server has started answering (or closed): nothing is read."""
    return bool(select.select([sock], [], [], 0)[0])


def settle(worker: int, idle_fds: int, readers: list[socket.socket]) -> int:
    """Give the worker SETTLE_SECONDS to take every slow client and start every reader's
    answer; how many answers had begun (not asserted: the probes are the verdict)."""
    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: (
                (fd_count(worker) or 0) >= idle_fds + 2 * SLOW and all(map(response_begun, readers))
            ),
            SETTLE_SECONDS,
            "every slow client taken",
        )
    return sum(map(response_begun, readers))


def probe(port: int) -> float | None:
    """One GET on a new connection: seconds to the whole answer, None if none in time."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_DEADLINE)
    try:
        conn.request("GET", "/pid")
        resp = conn.getresponse()
        resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    took = time.monotonic() - started
    return took if resp.status == 200 and took <= PROBE_DEADLINE else None


def probes(port: int) -> list[float | None]:
    results: list[float | None] = []
    while len(results) < PROBES and results.count(None) < GIVE_UP_AFTER:
        results.append(probe(port))
    return results


def drain_reader(sock: socket.socket) -> tuple[int, int, str]:
    """Read the rest at full speed: status, body length and sha256."""
    resp, rest = read_response(sock, head_only=True)
    length = int(resp.header("Content-Length") or 0)
    digest = hashlib.sha256(rest)
    received = len(rest)
    buf = bytearray(1 << 20)
    while received < length:
        n = sock.recv_into(buf)
        if not n:
            break
        digest.update(memoryview(buf)[:n])
        received += n
    return resp.status, received, digest.hexdigest()


def finish_upload(sock: socket.socket) -> tuple[int, object]:
    """Send the rest of the body at full speed: status and the app's answer."""
    sock.sendall(memoryview(upload_body())[TRICKLE:])
    resp, _ = read_response(sock)
    return resp.status, json.loads(resp.body) if resp.status == 200 else resp.body[:200]


@contextlib.contextmanager
def slow_clients(port: int) -> Iterator[tuple[list[socket.socket], list[socket.socket]]]:
    """SLOW readers and SLOW uploaders, closed on the way out (before the server stops)."""
    readers: list[socket.socket] = []
    uploaders: list[socket.socket] = []
    try:
        readers += [open_reader(port) for _ in range(SLOW)]
        uploaders += [open_uploader(port) for _ in range(SLOW)]
        yield readers, uploaders
    finally:
        for sock in readers + uploaders:
            sock.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_slow_clients_do_not_pin_the_worker(kind: str, figures: Figures) -> None:
    figures.scenario = f"slow_clients_pin[{kind}]"
    upload_body()  # built before the clock matters
    with Server(APP, *KINDS[kind]) as srv:
        worker = only_worker(srv)
        assert probe(srv.port) is not None, "no answer before any slow client came"
        idle_fds, idle_rss = steady_fds(worker), rss_mib(worker)
        with PeakRss(worker) as peak, slow_clients(srv.port) as (readers, uploaders):
            begun = settle(worker, idle_fds, readers)
            latencies = probes(srv.port)
            answered = [s * 1000 for s in latencies if s is not None]
            unanswered = latencies.count(None)
            drained = [drain_reader(sock) for sock in readers] if not unanswered else []
            uploaded = [finish_upload(sock) for sock in uploaders] if not unanswered else []
        figures.sent, figures.lost = len(latencies), unanswered
        figures.p99_ms = percentile(answered, 0.99) if not unanswered else None
        figures.rss_mib = (idle_rss, peak.peak)
        p50 = percentile(answered, 0.5)
        figures.note(f"p50 {'-' if p50 is None else f'{p50:.1f}'} ms")
        figures.note(f"{begun}/{SLOW} slow readers answered before the probes")
        figures.note("RSS idle -> peak")
        if unanswered:
            figures.note(f"stopped after {unanswered} probes unanswered in {PROBE_DEADLINE:g} s")
        else:
            figures.note(f"{SLOW}+{SLOW} slow clients then finished at full speed")
        figures.report()
        assert unanswered == 0, (
            f"{unanswered} of {len(latencies)} probes got no answer within {PROBE_DEADLINE} s "
            f"while {SLOW} slow readers and {SLOW} slow uploaders were connected: pinned"
        )
        assert drained == [(200, BODY, body_sha256())] * SLOW, "a slow reader's body went wrong"
        assert uploaded == [(200, {"size": BODY, "sha256": body_sha256()})] * SLOW
        growth = peak.peak - (idle_rss or 0)
        assert growth < RSS_GROWTH_LIMIT_MIB, f"worker RSS grew by {growth:.1f} MiB"
