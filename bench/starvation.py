"""The starvation check: can a new client get in while 64 keep-alive clients hammer one worker?

One gthread worker, pinned to core 0, serves wrk's 64 keep-alive connections (wrk on core 1).
Once the load is on (the server has burned CPU time since wrk started), we open a new
connection every PROBE_INTERVAL and time its first response. A worker that serves only the
connections it already has would leave the newcomer waiting for seconds; corral's target is
under 100 ms.
"""

from __future__ import annotations

import socket
import statistics
import time
from dataclasses import dataclass, field

import loadgen
import procfs
from scenarios import SCENARIOS
from servers import HOST, Context, Server
from session import RunFailed, free_port, start

TARGET_MS = 100.0
PROBES = 10
PROBE_INTERVAL = 0.2
PROBE_TIMEOUT = 5.0
# The load counts as on once the server has used this much CPU since wrk started.
LOAD_ON_CPU_S = 0.3
LOAD_SECONDS = 5


@dataclass
class StarvationResult:
    server: str
    round: int
    ok: bool = False
    error: str = ""
    probes_ms: list[float] = field(default_factory=list)
    load_requests_per_s: float | None = None

    @property
    def worst_ms(self) -> float | None:
        return max(self.probes_ms) if self.probes_ms else None

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.probes_ms) if self.probes_ms else None


def probe(port: int) -> float:
    """Milliseconds from connect() to the first bytes of the answer on a new connection."""
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    began = time.perf_counter()
    try:
        with socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(request)
            if not sock.recv(64):
                raise RunFailed("probe connection closed without an answer")
    except TimeoutError:
        return PROBE_TIMEOUT * 1000.0
    return (time.perf_counter() - began) * 1000.0


def wait_load_on(pgid: int) -> None:
    before = procfs.cpu_ticks(pgid)
    deadline = time.monotonic() + LOAD_SECONDS / 2
    while time.monotonic() < deadline:
        if procfs.cpu_seconds_between(before, procfs.cpu_ticks(pgid)) >= LOAD_ON_CPU_S:
            return
        time.sleep(0.02)
    raise RunFailed("the load never reached the server")


def check(ctx: Context, server: Server, round_no: int) -> StarvationResult:
    result = StarvationResult(server.name, round_no)
    scenario = SCENARIOS["keepalive"]
    port = free_port()
    load = loadgen.Load(f"http://{HOST}:{port}/", pinned=True)
    with start(ctx, server, scenario, port) as proc:
        try:
            proc.wait_first_response(port)
            wrk = loadgen.start(load, LOAD_SECONDS)
            try:
                wait_load_on(proc.pgid)
                for _ in range(PROBES):
                    result.probes_ms.append(probe(port))
                    time.sleep(PROBE_INTERVAL)
            finally:
                output, _ = wrk.communicate(timeout=LOAD_SECONDS + 30)
            result.load_requests_per_s = loadgen.parse(output).requests_per_s
        except (RuntimeError, OSError) as exc:
            result.error = f"{exc} [log: {proc.log_tail()}]"
            return result
    result.ok = True
    return result
