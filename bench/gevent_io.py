"""The gevent benchmark: corral's gevent worker beside Gunicorn's, one worker each, pinned to
core 0 (wrk on core 1), in two scenarios:

- `io`: a Flask view (apps/gevent_io_app.py) calls a slow upstream with urllib for every
  request. The upstream (an asyncio server in its own process, on core 1 with wrk) answers
  each call after UPSTREAM_DELAY seconds, and wrk keeps 200 requests in flight. A worker that
  waited on each call in turn would serve about 1 / UPSTREAM_DELAY requests a second. On a
  2-core machine core 1 (wrk and the upstream) limits the rate before the worker does, so the
  figure to compare is the server's CPU time per request.
- `hello`: the plain WSGI hello of apps/wsgi_app.py over 50 keep-alive connections: what the
  server itself costs per request.

Figures: requests a second, the server's CPU milliseconds per request and the p99 latency,
each the median of the rounds. Gunicorn's gevent workers are `gevent` (its own parser on
gevent's StreamServer) and `gevent_pywsgi` (gevent's pywsgi server); corral serves both names
with one worker.

    .venv/bin/python bench/gevent_io.py [--rounds 3] [--duration 5] [--scenarios io,hello]

Runs with the peer venv (bench/.peers, which needs gevent: `bench/.peers/bin/pip install
"gevent>=24"`), from a copy of src/corral taken at the start. Not part of `make bench` yet;
the results go to bench/results/<date>/gevent-io.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import loadgen
import procfs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_PYTHON = HERE / ".peers" / "bin" / "python"
HOST = "127.0.0.1"
UPSTREAM_DELAY = 0.05
WORKER_CONNECTIONS = "1000"
SERVERS = {
    "corral-gevent": ["-m", "corral", "-k", "gevent"],
    "gunicorn-gevent": ["-m", "gunicorn", "-k", "gevent"],
    "gunicorn-gevent-pywsgi": ["-m", "gunicorn", "-k", "gevent_pywsgi"],
}
BASELINE = "gunicorn-gevent"
# name: (application, path, connections)
SCENARIOS = {
    "io": ("gevent_io_app:app", "/io", 200),
    "hello": ("wsgi_app:application", "/", 50),
}


# ---- the upstream (runs as `gevent_io.py --upstream PORT`) ----------------------------------


async def upstream(port: int) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(UPSTREAM_DELAY)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, HOST, port, backlog=4096)
    async with server:
        await server.serve_forever()


# ---- the benchmark ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_answer(port: int, path: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            if sock.recv(12).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.1)
    raise RuntimeError(f"no answer on port {port}")


def spawn(argv: list[str], env: dict[str, str], core: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", str(core), *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def one_run(
    name: str, scenario: str, src: Path, upstream_url: str, duration: int
) -> dict[str, float]:
    app, path, connections = SCENARIOS[scenario]
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(src), BENCH_UPSTREAM=upstream_url)
    argv = [str(PEERS_PYTHON), *SERVERS[name], "-w", "1", "-b", f"{HOST}:{port}"]
    argv += ["--worker-connections", WORKER_CONNECTIONS, "--backlog", "4096"]
    argv += ["--pythonpath", str(HERE / "apps"), app]
    proc = spawn(argv, env, core=0)
    try:
        wait_answer(port, path, time.monotonic() + 30)
        url = f"http://{HOST}:{port}{path}"
        load = ["taskset", "-c", "1", "wrk", "-t", "1", "-c", str(connections)]
        subprocess.run([*load, "-d", "1", url], capture_output=True, check=True)  # warm-up
        before = procfs.cpu_ticks(proc.pid)
        out = subprocess.run(
            [*load, "-d", str(duration), "--latency", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cpu = procfs.cpu_seconds_between(before, procfs.cpu_ticks(proc.pid))
    finally:
        stop(proc)
    report = loadgen.parse(out)
    return {
        "requests_per_s": report.requests_per_s,
        "cpu_ms_per_request": cpu * 1000 / report.requests if report.requests else 0.0,
        "p99_ms": report.p99_ms,
        "errors": float(report.errors),
    }


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def table(scenario: str, results: dict[str, list[dict[str, float]]]) -> str:
    base = median(results[BASELINE], "requests_per_s") if BASELINE in results else 0.0
    base_cpu = median(results[BASELINE], "cpu_ms_per_request") if BASELINE in results else 0.0
    lines = [
        f"### {scenario}",
        "",
        "| server | req/s | vs gunicorn-gevent | CPU ms/request | vs gunicorn-gevent | p99 ms "
        "| errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, runs in results.items():
        rps = median(runs, "requests_per_s")
        cpu = median(runs, "cpu_ms_per_request")
        rps_ratio = f"{rps / base:.2f}x" if base else "-"
        cpu_ratio = f"{cpu / base_cpu:.2f}x" if base_cpu else "-"
        lines.append(
            f"| {name} | {rps:,.0f} | {rps_ratio} | {cpu:.3f} | {cpu_ratio} "
            f"| {median(runs, 'p99_ms'):.1f} | {sum(run['errors'] for run in runs):.0f} |"
        )
    return "\n".join(lines) + "\n"


def has_gevent() -> bool:
    check = [str(PEERS_PYTHON), "-c", "import gevent"]
    return PEERS_PYTHON.exists() and subprocess.run(check, capture_output=True).returncode == 0


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError("the upstream did not start")


def measure(
    rounds: int,
    duration: int,
    out: Path,
    scenarios: list[str] | None = None,
    servers: list[str] | None = None,
) -> str:
    """Run the benchmark; write gevent-io.md and gevent-io.json in `out`; return the text."""
    if not has_gevent():
        return f"gevent benchmark skipped: gevent is not installed in {PEERS_PYTHON}\n"
    work = Path(tempfile.mkdtemp(prefix="corral-gevent-bench-"))
    src = work / "src"
    shutil.copytree(ROOT / "src" / "corral", src / "corral")
    up_port = free_port()
    up = spawn([str(PEERS_PYTHON), __file__, "--upstream", str(up_port)], dict(os.environ), 1)
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    try:
        wait_listening(up_port)
        for round_no in range(rounds):
            for scenario in scenarios or list(SCENARIOS):
                for name in servers or list(SERVERS):
                    run = one_run(name, scenario, src, f"http://{HOST}:{up_port}/", duration)
                    results.setdefault(scenario, {}).setdefault(name, []).append(run)
                    print(f"round {round_no + 1} {scenario} {name}: {run}", file=sys.stderr)
    finally:
        stop(up)
        shutil.rmtree(work, ignore_errors=True)
    header = (
        f"1 worker on core 0, wrk on core 1, upstream delay {UPSTREAM_DELAY * 1000:.0f} ms, "
        f"{rounds} rounds of {duration} s (medians)\n\n"
    )
    text = header + "\n".join(table(scenario, runs) for scenario, runs in results.items())
    out.mkdir(parents=True, exist_ok=True)
    (out / "gevent-io.md").write_text(text)
    (out / "gevent-io.json").write_text(json.dumps(results, indent=1) + "\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / date.today().isoformat())
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        try:  # the upstream shares core 1 with wrk: the lighter its loop, the less it limits
            import uvloop  # type: ignore[import-not-found,unused-ignore]

            uvloop.run(upstream(args.upstream))
        except ImportError:
            asyncio.run(upstream(args.upstream))
        return
    scenarios, servers = args.scenarios.split(","), args.servers.split(",")
    print(measure(args.rounds, args.duration, args.out, scenarios, servers))


if __name__ == "__main__":
    main()
