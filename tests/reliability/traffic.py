"""Client traffic with figures: continuous measured load, and bursts of N requests through
wrk, hey, or (when neither is installed) Python clients that are fast enough for the short form.

Every helper sorts outcomes the same way: `ok` (the expected status), `failed` (another status)
and `lost` (no response: refused, reset, closed early, timed out).
"""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.load import Load


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class MeasuredLoad(Load):
    """support.load.Load (keep-alive and new-connection clients hammering the server until the
    block ends) that also times every request and keeps when each failure happened."""

    def __init__(
        self,
        port: int,
        keepalive: int = 3,
        fresh: int = 2,
        path: str = "/load",
        timeout: float = 20.0,
    ) -> None:
        super().__init__(port, keepalive, fresh, path)
        self.timeout = timeout
        self.failed = 0
        self.lost = 0
        self.latencies: list[float] = []
        self.failures: list[tuple[float, str]] = []  # (time.monotonic(), what happened)

    @property
    def sent(self) -> int:
        return self.ok + self.failed + self.lost

    @property
    def p99_ms(self) -> float | None:
        with self.lock:
            p99 = percentile(self.latencies, 0.99)
        return None if p99 is None else p99 * 1000

    def count(self, status: int | None, started: float, error: str) -> None:
        now = time.monotonic()
        with self.lock:
            if status == 200:
                self.ok += 1
                self.latencies.append(now - started)
                return
            if status is None:
                self.lost += 1
            else:
                self.failed += 1
                error = f"status {status}"
            self.errors.append(error)
            self.failures.append((now, error))

    def exchange(self, conn: http.client.HTTPConnection, headers: dict[str, str]) -> bool:
        """One request; True when the connection may carry the next one."""
        started = time.monotonic()
        try:
            conn.request("GET", self.path, headers=headers)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.count(None, started, f"{'keep-alive' if not headers else 'new'}: {exc!r}")
            return False
        self.count(resp.status, started, "")
        return not resp.will_close

    def keepalive_client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        while not self.stopping.is_set():
            if not self.exchange(conn, {}):
                conn.close()  # http.client connects again on the next request
        conn.close()

    def fresh_client(self) -> None:
        while not self.stopping.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.exchange(conn, {"Connection": "close"})
            finally:
                conn.close()

    def wait_answers(self, more: int, timeout: float = 10.0) -> None:
        """Block until `more` further requests have been answered (traffic is flowing)."""
        target = self.sent + more
        deadline = time.monotonic() + timeout
        while self.sent < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"load stalled at {self.sent} requests (wanted {target})")
            time.sleep(0.01)


@dataclass
class Burst:
    """The outcome of N requests sent by a load tool."""

    tool: str
    sent: int = 0
    failed: int = 0
    lost: int = 0
    p99_ms: float | None = None
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)


# ---- wrk ---------------------------------------------------------------------------------

# wrk runs for a duration; this script stops its thread after a quota of responses instead.
WRK_QUOTA_SCRIPT = """
local answered = 0
local quota = tonumber(os.getenv("CORRAL_WRK_QUOTA"))
function response(status, headers, body)
  answered = answered + 1
  if answered >= quota then wrk.thread:stop() end
end
"""
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
_WRK_COUNT = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m),")
_WRK_P99 = re.compile(r"^\s+99(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def wrk_run(url: str, seconds: int, quota: int, connections: int) -> Burst:
    """One wrk run of `seconds` (its thread stops early once `quota` responses arrived)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_QUOTA_SCRIPT)
        script.flush()
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
        argv += ["--timeout", "10s", "-s", script.name, url]
        out = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            env={"CORRAL_WRK_QUOTA": str(quota), "PATH": "/usr/bin:/bin"},
        ).stdout
    count = _WRK_COUNT.search(out)
    if count is None:
        raise AssertionError(f"wrk printed no report:\n{out}")
    burst = Burst("wrk", sent=int(count.group(1)), seconds=float(seconds))
    p99 = _WRK_P99.search(out)
    if p99 is not None:
        burst.p99_ms = float(p99.group(1)) * _UNIT_MS[p99.group(2)]
    errors = _WRK_SOCKET.search(out)
    if errors is not None:
        burst.lost = sum(int(n) for n in errors.groups())
        burst.details.append(errors.group(0))
    non_2xx = _WRK_NON_2XX.search(out)
    burst.failed = int(non_2xx.group(1)) if non_2xx else 0
    return burst


def wrk_burst(url: str, total: int, connections: int = 4) -> Burst:
    """At least `total` keep-alive requests through wrk. wrk runs for whole seconds, not for a
    count, so it runs in pieces sized from the rate seen so far; a quota script stops the last
    piece at the count. p99 is the worst of the pieces' p99s."""
    burst = Burst("wrk")
    started = time.monotonic()
    seconds = 1
    while burst.sent < total:
        run = wrk_run(url, seconds, total - burst.sent, connections)
        burst.sent += run.sent
        burst.failed += run.failed
        burst.lost += run.lost
        burst.details += run.details[:1]
        if run.p99_ms is not None:
            burst.p99_ms = max(burst.p99_ms or 0.0, run.p99_ms)
        if run.sent == 0:
            raise AssertionError(f"wrk made no progress: {run.details}")
        rate = run.sent / seconds
        seconds = max(1, min(60, int((total - burst.sent) / rate + 1)))
    burst.seconds = time.monotonic() - started
    return burst


# ---- hey ---------------------------------------------------------------------------------

_HEY_STATUS = re.compile(r"^\s+\[(\d{3})\]\s+(\d+) responses", re.MULTILINE)
_HEY_ERRORS = re.compile(r"^\s+\[(\d+)\]\s+(.*)$", re.MULTILINE)
_HEY_P99 = re.compile(r"99% in ([\d.]+) secs")
_HEY_TOTAL = re.compile(r"Total:\s+([\d.]+) secs")


def hey_burst(url: str, total: int, concurrency: int, body: Path | None = None) -> Burst:
    argv = ["hey", "-n", str(total), "-c", str(concurrency), "-t", "20"]
    if body is not None:
        argv += ["-m", "POST", "-D", str(body), "-T", "application/octet-stream"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=600).stdout
    burst = Burst("hey", sent=total)
    statuses = {int(code): int(n) for code, n in _HEY_STATUS.findall(out)}
    burst.failed = sum(n for code, n in statuses.items() if not 200 <= code < 300)
    _, _, error_part = out.partition("Error distribution:")
    errors = _HEY_ERRORS.findall(error_part)
    burst.lost = sum(int(n) for n, _ in errors)
    burst.details += [f"{n}x {what}" for n, what in errors[:3]]
    answered = sum(statuses.values())
    if answered + burst.lost != total:
        burst.details.append(f"hey accounted for {answered + burst.lost} of {total}")
        burst.lost = total - answered
    p99 = _HEY_P99.search(out)
    burst.p99_ms = float(p99.group(1)) * 1000 if p99 else None
    seconds = _HEY_TOTAL.search(out)
    burst.seconds = float(seconds.group(1)) if seconds else 0.0
    return burst


# ---- Python fallbacks ----------------------------------------------------------------------


def pooled_burst(port: int, path: str, total: int, concurrency: int) -> Burst:
    """`total` GETs from `concurrency` threads, each on its own keep-alive connection."""
    lock = threading.Lock()
    burst = Burst("python threads")
    latencies: list[float] = []
    left = [total]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            started = time.monotonic()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                with lock:
                    burst.lost += 1
                    burst.details.append(repr(exc))
                continue
            with lock:
                if 200 <= resp.status < 300:
                    latencies.append(time.monotonic() - started)
                else:
                    burst.failed += 1
            if resp.will_close:
                conn.close()
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    burst.seconds = time.monotonic() - started
    burst.sent = total
    p99 = percentile(latencies, 0.99)
    burst.p99_ms = None if p99 is None else p99 * 1000
    return burst


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)
_STATUS_200 = b"HTTP/1.1 200 "


def pipelined_burst(
    port: int, path: str, total: int, connections: int = 4, depth: int = 16
) -> Burst:
    """`total` GETs pipelined `depth` at a time on `connections` raw keep-alive sockets: a
    client fast enough to keep one Python worker busy without wrk."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    lock = threading.Lock()
    burst = Burst("raw pipelined sockets")
    batch_times: list[float] = []
    share = [total // connections + (i < total % connections) for i in range(connections)]

    def client(count: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        buf = b""
        try:
            while count:
                n = min(depth, count)
                started = time.monotonic()
                sock.sendall(request * n)
                answered = 0
                while answered < n:
                    end = buf.find(b"\r\n\r\n")
                    length = _CONTENT_LENGTH.search(buf, 0, end) if end >= 0 else None
                    if length is None or len(buf) < end + 4 + int(length.group(1)):
                        data = sock.recv(262144)
                        if not data:
                            raise ConnectionError("server closed the connection")
                        buf += data
                        continue
                    if not buf.startswith(_STATUS_200):
                        with lock:
                            burst.failed += 1
                    buf = buf[end + 4 + int(length.group(1)) :]
                    answered += 1
                with lock:
                    burst.sent += n
                    batch_times.append(time.monotonic() - started)
                count -= n
        except OSError as exc:
            with lock:
                burst.sent += count
                burst.lost += count
                burst.details.append(repr(exc))
        finally:
            sock.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    burst.seconds = time.monotonic() - started
    p99 = percentile(batch_times, 0.99)  # a batch's round trip bounds each request in it
    burst.p99_ms = None if p99 is None else p99 * 1000
    return burst


def keepalive_burst(port: int, path: str, total: int) -> Burst:
    """N keep-alive GETs against one server: wrk when installed, else raw pipelined sockets."""
    if shutil.which("wrk"):
        return wrk_burst(f"http://127.0.0.1:{port}{path}", total)
    return pipelined_burst(port, path, total)
