"""The slow-clients check: can a new client get in while slow clients fill every socket buffer?

One worker, pinned to core 0, is given 4 slow readers and 4 slow uploaders. A reader asks for a
32 MiB response (GET /stream, 64 KiB chunks from a generator), with a small SO_RCVBUF so the
server's send buffer fills at once, then reads 1 KiB every TRICKLE_INTERVAL. An uploader sends
a head with Content-Length: 32 MiB and then 1 KiB every TRICKLE_INTERVAL (POST /upload). At
1 KiB a second a 32 MiB body takes nine hours: every buffer between the server and these
clients stays full for the whole measurement. Meanwhile a fresh client opens a new connection
every PROBE_INTERVAL (open loop: a probe never waits for the one before, so a server that stalls
is charged for every probe it stalls) and times GET / from connect() to the whole answer. A
worker or thread that waits for one slow client leaves the probes without answers; corral's
target: p99 under 10 ms and every probe answered.

All the clients run in this process, in one selector loop, pinned to core 1 as wrk is. Only the
connections this check opened are ever touched, and they are closed before the server is
stopped (a server writing to one of them learns at once that it is gone).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import selectors
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import loadgen
import procfs
import session
from scenarios import Scenario
from servers import HOST, Context, Server
from session import MIB, RunFailed, free_port, start

TARGET_P99_MS = 10.0
READERS = 4
UPLOADERS = 4
BODY_SIZE = 32 * 1024 * 1024
TRICKLE = 1024
# The brief's pace is 1 KiB every 5 s; one second keeps every slow client acting several times
# within a measurement, and is just as far from draining 32 MiB.
TRICKLE_INTERVAL = 1.0
# Asked before connecting, so the window the reader advertises is small from the start
# (the kernel doubles it, and keeps a floor of a few KiB).
READER_RCVBUF = 4096
PROBES = 200
PROBE_INTERVAL = 0.01
PROBE_DEADLINE = 3.0  # no whole answer by then: counted as unanswered
# How long the slow readers get to see their responses begin before the probes start anyway
# (a server that serves one client at a time never starts the others').
SETTLE_SECONDS = 2.0
POLL = 0.01

SCENARIO = Scenario(
    "slow-clients", "slow readers and uploaders, 1 worker pinned", "/", expect_size=13
)
CHECK_SIZE = 65536
# Checked once before the slow clients come: the routes they use answer as they must.
CHECKS = (
    SCENARIO,
    dataclasses.replace(SCENARIO, path=f"/stream?{CHECK_SIZE}", expect_size=CHECK_SIZE),
    dataclasses.replace(
        SCENARIO,
        path="/upload",
        method="POST",
        body_size=CHECK_SIZE,
        expect_size=len(str(CHECK_SIZE)),  # the app answers the count
    ),
)
PROBE_REQUEST = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
READER_REQUEST = f"GET /stream?{BODY_SIZE} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
UPLOADER_HEAD = (
    f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/octet-stream\r\n"
    f"Content-Length: {BODY_SIZE}\r\n\r\n"
).encode()
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
TCP_ESTABLISHED = 1  # the first byte of TCP_INFO (tcpi_state)


@dataclass
class SlowClientsResult:
    server: str
    round: int
    ok: bool = False
    error: str = ""
    probes_ms: list[float | None] = field(default_factory=list)  # None: no answer in time
    bad_answers: int = 0  # probes answered with another status than 200 (also None above)
    readers_started: int = 0  # slow readers whose response had begun when the probes started
    # Slow clients the server had closed (FIN or reset seen) by the end. A reader closed while
    # the server still had its data queued sees the FIN only after that data: not counted.
    slow_closed: int = 0
    idle_rss_mib: float | None = None  # the largest worker's, before the slow clients came
    loaded_rss_mib: float | None = None  # ... and once the probes were done

    @property
    def unanswered(self) -> int:
        return sum(ms is None for ms in self.probes_ms)


def percentile(probes_ms: list[float | None], fraction: float) -> float | None:
    """Nearest rank, an unanswered probe (None) counting as slower than any answer: None when
    the percentile falls on one (or there are no probes)."""
    if not probes_ms:
        return None
    ordered = sorted(probes_ms, key=lambda ms: math.inf if ms is None else ms)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class SlowClient:
    """A slow reader or uploader: a non-blocking socket that does one small thing per tick."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)

    def closed_by_server(self) -> bool:
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        except OSError:
            return True
        return info[0] != TCP_ESTABLISHED

    def tick(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


class SlowReader(SlowClient):
    @classmethod
    def open(cls, port: int) -> SlowReader:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READER_RCVBUF)
        sock.settimeout(PROBE_DEADLINE)
        sock.connect((HOST, port))
        sock.sendall(READER_REQUEST)
        return cls(sock)

    def started(self) -> bool:
        """Whether the response has begun (peeked: nothing is read)."""
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except OSError:
            return False

    def tick(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.recv(TRICKLE)


class SlowUploader(SlowClient):
    @classmethod
    def open(cls, port: int) -> SlowUploader:
        sock = socket.create_connection((HOST, port), timeout=PROBE_DEADLINE)
        sock.sendall(UPLOADER_HEAD + b"u" * TRICKLE)
        return cls(sock)

    def tick(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(b"u" * TRICKLE)


class Probe:
    """One GET / on a new connection, driven by the selector: connect, send, read the answer."""

    def __init__(self, port: int, now: float) -> None:
        self.began = now
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.connect_ex((HOST, port))  # in progress; writable once connected
        self.buf = bytearray()
        self.sent = False

    def advance(self) -> bool | None:
        """One step on readiness: None while the answer is incomplete, then whether it was a
        200. Raises OSError when the connection fails or closes early."""
        if not self.sent:
            self.sock.send(PROBE_REQUEST)  # a few dozen bytes: one send on a new connection
            self.sent = True
            return None
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a whole answer")
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        length = CONTENT_LENGTH.search(self.buf, 0, end + 2)
        if length is not None and len(self.buf) < end + 4 + int(length.group(1)):
            return None
        return self.buf.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 "))


class Prober:
    """The open-loop probes and the slow clients' ticks, in one selector loop."""

    def __init__(self, port: int, slow: list[SlowClient], result: SlowClientsResult) -> None:
        self.port = port
        self.slow = slow
        self.result = result
        self.selector = selectors.DefaultSelector()
        self.live: dict[Probe, float] = {}  # probe -> deadline

    def run(self) -> None:
        now = time.monotonic()
        next_probe, next_tick, started = now, now + TRICKLE_INTERVAL, 0
        while started < PROBES or self.live:
            now = time.monotonic()
            if started < PROBES and now >= next_probe:
                self.start_probe(now)
                started += 1
                next_probe += PROBE_INTERVAL
            if now >= next_tick:
                for client in self.slow:
                    client.tick()
                next_tick += TRICKLE_INTERVAL
            self.expire(now)
            wake = min([next_tick, *self.live.values()])
            if started < PROBES:
                wake = min(wake, next_probe)
            for key, _ in self.selector.select(max(0.0, wake - time.monotonic())):
                self.advance(key.data)
        self.selector.close()

    def start_probe(self, now: float) -> None:
        probe = Probe(self.port, now)
        self.live[probe] = now + PROBE_DEADLINE
        self.selector.register(probe.sock, selectors.EVENT_WRITE, probe)

    def advance(self, probe: Probe) -> None:
        try:
            outcome = probe.advance()
        except OSError:
            self.finish(probe, None)
            return
        if outcome is None:
            if probe.sent:
                self.selector.modify(probe.sock, selectors.EVENT_READ, probe)
            return
        if not outcome:
            self.result.bad_answers += 1
        self.finish(probe, (time.monotonic() - probe.began) * 1000.0 if outcome else None)

    def expire(self, now: float) -> None:
        for probe in [p for p, deadline in self.live.items() if now >= deadline]:
            self.finish(probe, None)

    def finish(self, probe: Probe, ms: float | None) -> None:
        self.result.probes_ms.append(ms)
        self.selector.unregister(probe.sock)
        probe.sock.close()
        del self.live[probe]


def largest_worker_rss(pgid: int) -> float | None:
    sizes = [m.rss_kib for pid in procfs.workers(pgid) if (m := procfs.memory(pid))]
    return max(sizes) / MIB if sizes else None


def wait_readers_started(readers: list[SlowReader]) -> int:
    """Wait until every reader's response has begun, or SETTLE_SECONDS; how many had."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        begun = sum(reader.started() for reader in readers)
        if begun == len(readers) or time.monotonic() >= deadline:
            return begun
        time.sleep(POLL)


@contextlib.contextmanager
def on_client_core() -> Iterator[None]:
    """Run this thread on wrk's core while the block runs (the server is on the other)."""
    before = os.sched_getaffinity(0)
    core = int(loadgen.CLIENT_CORE)
    if core in before:
        os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def measure(port: int, pgid: int, result: SlowClientsResult) -> None:
    slow: list[SlowClient] = []
    try:
        readers = [SlowReader.open(port) for _ in range(READERS)]
        slow += readers
        slow += [SlowUploader.open(port) for _ in range(UPLOADERS)]
        result.readers_started = wait_readers_started(readers)
        Prober(port, slow, result).run()
        result.loaded_rss_mib = largest_worker_rss(pgid)
        result.slow_closed = sum(client.closed_by_server() for client in slow)
    finally:
        for client in slow:
            client.close()


def check(ctx: Context, server: Server, round_no: int) -> SlowClientsResult:
    result = SlowClientsResult(server.name, round_no)
    port = free_port()
    with start(ctx, server, SCENARIO, port) as proc, on_client_core():
        try:
            proc.wait_first_response(port)
            proc.wait_processes(server.processes(SCENARIO.workers))
            for request in CHECKS:
                session.check(request, port)
            result.idle_rss_mib = largest_worker_rss(proc.pgid)
            measure(port, proc.pgid, result)
        except (RunFailed, RuntimeError, OSError) as exc:
            result.error = f"{exc} [log: {proc.log_tail()}]"
            return result
    result.ok = True
    return result
