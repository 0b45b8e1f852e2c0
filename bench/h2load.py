"""h2load (Debian's nghttp2-client), the HTTP/2 scenarios' load: its command line, its report,
and the check made with it before the load.

h2load runs one thread, N connections with M requests in flight on each (`-m`: streams in
HTTP/2, pipelined requests with `--h1`), pinned to core 1 when the server is pinned to core 0.
It is given a number of requests (`-n`), not a duration: with `-D`, h2load 1.52 waits at the
end for every connection to wind down, and never ends against Gunicorn 27's gthread worker
over TLS. So the first run on a server (the warm-up) measures its rate, starting with
CALIBRATION requests, and each later run asks for rate x seconds requests. `-N` closes a
connection that stays silent for TIMEOUT_S, so a server that stalls ends the run with
timeouts rather than hanging it. A plain `http://` URL is HTTP/2 by prior knowledge (h2c); an
`https://` one negotiates h2 by ALPN. Its summary has no percentiles, so the latencies come from
its per-request log (`--log-file`: start time, status, microseconds to the end of the
response), of which only the answered 2xx/3xx requests count. Every request h2load counts as
failed (a status of 400 or more, a reset stream, a lost connection, a timeout) is an error: a
run with errors is flagged by the session, never taken as a good one. Only 127.0.0.1 is ever
targeted.
"""

from __future__ import annotations

import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

H2LOAD = "h2load"
CLIENT_CORE = "1"
CHECK_REQUESTS = 16
CALIBRATION = 2000
TIMEOUT_S = 5
# Requests per second last seen at each URL (a port is new with each server start).
RATES: dict[str, float] = {}
UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}

FINISHED = re.compile(r"finished in ([\d.]+)(us|ms|s|m),")
REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
DATA = re.compile(r"traffic: .*\((\d+)\) data")
PROTOCOL = re.compile(r"Application protocol: (\S+)")


@dataclass(frozen=True)
class H2Report:
    requests: int  # succeeded
    seconds: float
    failed: int  # h2load's "failed": errored, timed out and 4xx/5xx together
    errored: int
    timeout: int
    protocol: str  # what h2load says it spoke: h2c, h2, http/1.1
    data_bytes: int
    p50_ms: float
    p99_ms: float


def command(
    url: str, requests: int, connections: int, streams: int, h1: bool, log_file: Path | None
) -> list[str]:
    argv = [H2LOAD, "-t", "1", "-c", str(connections), "-m", str(streams), "-n", str(requests)]
    argv += ["-N", f"{TIMEOUT_S}s"]
    if h1:
        argv.append("--h1")
    if log_file is not None:
        argv.append(f"--log-file={log_file}")
    return [*argv, url]


def run(
    url: str,
    seconds: int,
    connections: int,
    streams: int,
    h1: bool,
    log_file: Path,
    pinned: bool,
) -> H2Report:
    """About `seconds` of load (see the module's docstring); raises RuntimeError if h2load
    printed no report."""
    if url not in RATES:
        once(url, CALIBRATION, connections, streams, h1, log_file, pinned)
    # At least every connection's full load once; a stalled server is cut short by -N.
    requests = max(int(RATES[url] * seconds), connections * streams)
    return once(url, requests, connections, streams, h1, log_file, pinned)


def once(
    url: str,
    requests: int,
    connections: int,
    streams: int,
    h1: bool,
    log_file: Path,
    pinned: bool,
) -> H2Report:
    log_file.unlink(missing_ok=True)  # h2load appends to it
    argv = command(url, requests, connections, streams, h1, log_file)
    if pinned:
        argv = ["taskset", "-c", CLIENT_CORE, *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=requests / 100 + 60)
        report = parse(done.stdout + done.stderr, latencies_ms(log_file))
    finally:
        log_file.unlink(missing_ok=True)
    if report.seconds and report.requests:
        RATES[url] = report.requests / report.seconds
    return report


def latencies_ms(log_file: Path) -> list[float]:
    """Every answered 2xx/3xx request's time, from the per-request log."""
    found = []
    try:
        text = log_file.read_text()
    except OSError:
        return []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and 200 <= int(fields[1]) < 400:
            found.append(int(fields[2]) / 1000.0)
    return found


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def parse(output: str, times_ms: list[float]) -> H2Report:
    finished, requests = FINISHED.search(output), REQUESTS.search(output)
    if finished is None or requests is None:
        raise RuntimeError(f"h2load printed no report: {output.strip()[-500:]!r}")
    data, protocol = DATA.search(output), PROTOCOL.search(output)
    _, _, _, succeeded, failed, errored, timeout = (int(n) for n in requests.groups())
    return H2Report(
        requests=succeeded,
        seconds=float(finished.group(1)) * UNIT_S[finished.group(2)],
        failed=failed,
        errored=errored,
        timeout=timeout,
        protocol=protocol.group(1) if protocol else "?",
        data_bytes=int(data.group(1)) if data else 0,
        p50_ms=statistics.median(times_ms) if times_ms else 0.0,
        p99_ms=percentile(times_ms, 0.99),
    )


def check(url: str, h1: bool, expect_size: int | None) -> None:
    """CHECK_REQUESTS requests on one connection, all in flight at once: every one must be
    answered 2xx with the expected body, in the expected protocol. Raises RuntimeError."""
    argv = [H2LOAD, "-n", str(CHECK_REQUESTS), "-c", "1", "-m", str(CHECK_REQUESTS)]
    argv += ["--h1", url] if h1 else [url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    output = done.stdout + done.stderr
    requests, status, data = REQUESTS.search(output), STATUS.search(output), DATA.search(output)
    protocol = PROTOCOL.search(output)
    spoke = protocol.group(1) if protocol else "nothing"
    wanted = ("http/1.1",) if h1 else ("h2c", "h2")
    if spoke not in wanted:
        raise RuntimeError(f"check: h2load spoke {spoke}, not {' or '.join(wanted)}")
    if requests is None or status is None:
        raise RuntimeError(f"check: h2load printed no report: {output.strip()[-300:]!r}")
    ok = int(status.group(1))
    if ok != CHECK_REQUESTS:
        raise RuntimeError(
            f"check: {ok} of {CHECK_REQUESTS} requests answered 2xx "
            f"({requests.group(0)}; {status.group(0)})"
        )
    got = int(data.group(1)) if data else 0
    if expect_size is not None and got != expect_size * CHECK_REQUESTS:
        raise RuntimeError(f"check: {got} body bytes, not {expect_size * CHECK_REQUESTS}")
