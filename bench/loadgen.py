"""The load generator: building wrk's command line (or wsload.py's, for WebSocket echo) and
reading its report.

wrk runs with one thread and 64 connections; when the scenario pins the server to core 0,
wrk is pinned to core 1 so the two never share a core. The WebSocket echo scenarios run
wsload.py the same way: 64 connections, pinned to core 1, one message in flight on each,
its report read into the same WrkReport (a request is then one echoed message). The HTTP/2
scenarios run h2load instead (h2load.py), its report read into the same WrkReport too. Only
127.0.0.1 is ever targeted.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import h2load

WSLOAD = Path(__file__).resolve().parent / "wsload.py"

CONNECTIONS = 64
SERVER_CORE = "0"
CLIENT_CORE = "1"
# Generous, so a slow 1 MiB echo is counted as slow rather than as an error.
TIMEOUT = "5s"

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m),")
PERCENTILE = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass(frozen=True)
class Load:
    """What wrk sends: the URL, and how."""

    url: str
    pinned: bool
    close: bool = False  # a new connection for every request
    script: Path | None = None  # a wrk Lua script (method, body, headers)
    connections: int = CONNECTIONS
    websocket_size: int = 0  # WebSocket echo of messages of this size (wsload.py), not wrk
    client_python: Path | None = None  # the interpreter that runs wsload.py
    h2load: str = ""  # h2load instead of wrk: "h2c", "h2" (TLS) or "h1" (`--h1`)
    streams: int = 1  # h2load -m
    log_file: Path | None = None  # h2load's per-request log (the latencies)


@dataclass(frozen=True)
class WrkReport:
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx responses plus socket errors of every kind
    protocol: str = ""  # h2load: what it spoke (h2c, h2, http/1.1)
    detail: str = ""  # h2load: its failed requests, broken down


def command(load: Load, seconds: int) -> list[str]:
    if load.websocket_size:
        return websocket_command(load, seconds)
    argv = ["wrk", "-t1", f"-c{load.connections}", f"-d{seconds}s", "--latency"]
    argv += ["--timeout", TIMEOUT]
    if load.close:
        argv += ["-H", "Connection: close"]
    if load.script is not None:
        argv += ["-s", str(load.script)]
    argv.append(load.url)
    return ["taskset", "-c", CLIENT_CORE, *argv] if load.pinned else argv


def websocket_command(load: Load, seconds: int) -> list[str]:
    url = urlsplit(load.url)
    python = str(load.client_python or "python3")
    argv = [python, str(WSLOAD), "--port", str(url.port), "--path", url.path or "/"]
    argv += ["--size", str(load.websocket_size), "--connections", str(load.connections)]
    argv += ["--duration", str(seconds)]
    return ["taskset", "-c", CLIENT_CORE, *argv] if load.pinned else argv


def run(load: Load, seconds: int) -> WrkReport:
    """Run the load for `seconds` and read its report; raises RuntimeError if it has none."""
    if load.h2load:
        return run_h2load(load, seconds)
    done = subprocess.run(
        command(load, seconds), capture_output=True, text=True, timeout=seconds + 60
    )
    if load.websocket_size:
        return parse_websocket(done.stdout, done.stderr)
    return parse(done.stdout + done.stderr)


def run_h2load(load: Load, seconds: int) -> WrkReport:
    assert load.log_file is not None
    figures = h2load.run(
        load.url,
        seconds,
        load.connections,
        load.streams,
        load.h2load == "h1",
        load.log_file,
        load.pinned,
    )
    return WrkReport(
        requests=figures.requests,
        seconds=figures.seconds,
        requests_per_s=figures.requests / figures.seconds if figures.seconds else 0.0,
        p50_ms=figures.p50_ms,
        p99_ms=figures.p99_ms,
        errors=figures.failed,
        protocol=figures.protocol,
        detail=f"{figures.failed} failed ({figures.errored} errored, "
        f"{figures.timeout} timed out, the rest 4xx/5xx)",
    )


def parse_websocket(stdout: str, stderr: str) -> WrkReport:
    """wsload.py's JSON line; a message counts as a request."""
    try:
        figures = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        output = (stdout + stderr).strip()[-500:]
        raise RuntimeError(f"wsload printed no report: {output!r}") from None
    seconds = float(figures["seconds"])
    return WrkReport(
        requests=int(figures["messages"]),
        seconds=seconds,
        requests_per_s=figures["messages"] / seconds if seconds else 0.0,
        p50_ms=float(figures["p50_ms"]),
        p99_ms=float(figures["p99_ms"]),
        errors=int(figures["errors"]),
    )


def start(load: Load, seconds: int) -> subprocess.Popen[str]:
    """Start wrk in the background (the starvation check probes while it runs)."""
    return subprocess.Popen(
        command(load, seconds),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def parse(output: str) -> WrkReport:
    total = REQUESTS.search(output)
    if total is None:
        raise RuntimeError(f"wrk printed no report: {output.strip()[-500:]!r}")
    seconds = float(total.group(2)) * UNIT_MS[total.group(3)] / 1000.0
    requests = int(total.group(1))
    percentiles = {
        match.group(1): float(match.group(2)) * UNIT_MS[match.group(3)]
        for match in PERCENTILE.finditer(output)
    }
    socket_errors = SOCKET_ERRORS.search(output)
    non_2xx = NON_2XX.search(output)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return WrkReport(
        requests=requests,
        seconds=seconds,
        requests_per_s=requests / seconds if seconds else 0.0,
        p50_ms=percentiles.get("50", 0.0),
        p99_ms=percentiles.get("99", 0.0),
        errors=errors,
    )
