"""One measured run of one server in one scenario, start to stop.

The server starts in a session of its own (start_new_session=True), so it and every process
it forks share one process group, whose id is the pid we started. Only that group is ever
signalled: TERM, then KILL if it outlives the grace period. Stdout and stderr go to a log
file whose tail explains a failure. Nothing here sleeps to synchronise: each wait polls a
condition (a response, a process count) until a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import h2load
import h2probe
import loadgen
import procfs
import wsload
from scenarios import Scenario
from servers import HOST, Context, Launch, Server

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
PYCACHE = HERE / ".peers" / "pycache"
START_DEADLINE = 20.0
STOP_DEADLINE = 10.0
POLL = 0.01
MIB = 1024.0
# Settings a user's environment could pass to a server behind our back.
FOREIGN_SETTINGS = ("GUNICORN_CMD_ARGS", "CORRAL_CMD_ARGS", "WEB_CONCURRENCY")


class RunFailed(RuntimeError):
    """The server did not start, answered wrongly, or wrk had nothing to report."""


@dataclass
class RunResult:
    scenario: str
    server: str
    round: int
    ok: bool = False
    error: str = ""
    note: str = ""
    start_ms: float | None = None
    workers: int = 0
    worker_rss_mib: float | None = None
    worker_pss_mib: float | None = None
    total_pss_mib: float | None = None
    requests: int = 0
    seconds: float = 0.0
    requests_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int | None = None
    cpu_s: float | None = None
    requests_per_cpu_s: float | None = None
    other_load: float | None = None  # cores the rest of the machine kept busy meanwhile
    # h2load scenarios: why this run's figures are not good ones (failed requests); its
    # figures are kept, but the report's medians leave it out.
    flagged: str = ""
    protocol: str = ""  # what h2load spoke


class ServerProcess:
    """A running server: started on enter, its whole process group stopped on exit."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.started = 0.0
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        with self.log_path.open("wb") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=APPS,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pgid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_first_response(self, port: int, scenario: Scenario | None = None) -> float:
        """Milliseconds from the start until the first response's first bytes arrive (in
        HTTP/2 scenarios: the response's HEADERS frame)."""
        deadline = self.started + START_DEADLINE
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RunFailed(f"exited with status {self.proc.returncode} before answering")
            if responds(port, scenario):
                return (time.monotonic() - self.started) * 1000.0
            time.sleep(POLL)
        raise RunFailed(f"no response within {START_DEADLINE:.0f} s")

    def wait_processes(self, count: int) -> int:
        """Wait until the group has `count` processes (all workers booted); return how many."""
        deadline = time.monotonic() + START_DEADLINE
        members = procfs.group(self.pgid)
        while len(members) < count and time.monotonic() < deadline:
            time.sleep(POLL)
            members = procfs.group(self.pgid)
        return len(members)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGTERM)
        if not self.wait_group_gone(STOP_DEADLINE):
            self.signal(signal.SIGKILL)
            self.wait_group_gone(STOP_DEADLINE)

    def signal(self, signum: int) -> None:
        # Only while a process of our group lives: a pgid is never reused while it does.
        if self.proc is not None and (self.proc.poll() is None or procfs.group(self.pgid)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signum)

    def wait_group_gone(self, seconds: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not procfs.group(self.pgid):
                return True
            time.sleep(POLL)
        return False

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])


def responds(port: int, scenario: Scenario | None) -> bool:
    if scenario is not None and scenario.speaks_h2:
        return h2probe.answered(HOST, port, scenario.tls, timeout=2.0)
    return first_bytes(port, timeout=2.0).startswith(b"HTTP/1.")


def first_bytes(port: int, timeout: float) -> bytes:
    """Send one GET / on a new connection; the first bytes of the answer, or b"" if none."""
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(request)
            return sock.recv(64)
    except OSError:
        return b""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_env(ctx: Context, server: Server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_SETTINGS}
    # Bytecode is cached (outside the source trees), so every start after the first is warm.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    paths = (ctx.corral_src, APPS) if server.runs_corral_copy else (APPS,)
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in paths)
    env["BENCH_STATIC_FILE"] = str(ctx.static_file)
    return env


def start(ctx: Context, server: Server, scenario: Scenario, port: int) -> ServerProcess:
    """The server as this scenario runs it (pinned to core 0 if the scenario pins)."""
    launch = Launch(port, scenario.workers, scenario.app_for(server), scenario.access_log)
    if scenario.tls:
        if ctx.certfile is None:
            raise RunFailed("no certificate (openssl failed)")
        launch = replace(launch, certfile=ctx.certfile, keyfile=ctx.keyfile)
    argv = server.argv(ctx, launch)
    if scenario.pinned:
        argv = ["taskset", "-c", loadgen.SERVER_CORE, *argv]
    log_path = ctx.workdir / f"{server.name}-{scenario.name}.log"
    return ServerProcess(argv, server_env(ctx, server), log_path)


def url_of(scenario: Scenario, port: int) -> str:
    return f"{'https' if scenario.tls else 'http'}://{HOST}:{port}{scenario.path}"


def check(scenario: Scenario, port: int) -> str:
    """Send the scenario's request once and check the answer; returns a note for the report."""
    if scenario.h2load:
        try:
            h2load.check(url_of(scenario, port), scenario.h2load == "h1", scenario.expect_size)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise RunFailed(str(exc)) from exc
        return ""
    if scenario.websocket_size:
        try:
            wsload.check(port, scenario.path, scenario.websocket_size)
        except OSError as exc:
            raise RunFailed(f"check echo failed: {exc!r}") from exc
        return ""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        body = b"x" * scenario.body_size if scenario.body_size else None
        headers = {"Content-Type": "application/octet-stream"} if body else {}
        conn.request(scenario.method, scenario.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise RunFailed(f"check request failed: {exc!r}") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise RunFailed(f"check request answered {response.status}")
    if scenario.expect_size is not None and len(data) != scenario.expect_size:
        raise RunFailed(f"check request got {len(data)} bytes, not {scenario.expect_size}")
    if response.getheader("X-File-Wrapper") == "no":
        return "no wsgi.file_wrapper: the app iterated the file"
    return ""


def record_memory(result: RunResult, pgid: int) -> None:
    workers = [m for pid in procfs.workers(pgid) if (m := procfs.memory(pid))]
    everyone = [m for pid in procfs.group(pgid) if (m := procfs.memory(pid))]
    if workers:
        result.worker_rss_mib = sum(m.rss_kib for m in workers) / len(workers) / MIB
        result.worker_pss_mib = sum(m.pss_kib for m in workers) / len(workers) / MIB
    result.total_pss_mib = sum(m.pss_kib for m in everyone) / MIB


def own_cpu_seconds() -> float:
    """CPU time of this benchmark process and of its reaped children (wrk)."""
    usages = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


def measured_load(
    load: loadgen.Load, duration: int, pgid: int
) -> tuple[loadgen.WrkReport, float, float]:
    """wrk's report, the server group's CPU seconds, and the other load in cores."""
    server_before = procfs.cpu_ticks(pgid)
    machine_before, ours_before = procfs.machine_busy_seconds(), own_cpu_seconds()
    report = loadgen.run(load, duration)
    server = procfs.cpu_seconds_between(server_before, procfs.cpu_ticks(pgid))
    machine = procfs.machine_busy_seconds() - machine_before
    ours = own_cpu_seconds() - ours_before
    other = max(0.0, machine - server - ours) / report.seconds if report.seconds else 0.0
    return report, server, other


def measure(
    ctx: Context, server: Server, scenario: Scenario, round_no: int, duration: int, warmup: int
) -> RunResult:
    result = RunResult(scenario.name, server.name, round_no)
    port = free_port()
    load = loadgen.Load(
        url_of(scenario, port),
        scenario.pinned,
        scenario.close,
        scenario.script,
        websocket_size=scenario.websocket_size,
        client_python=ctx.python,
        **h2load_options(ctx, scenario),  # type: ignore[arg-type]
    )
    try:
        proc = start(ctx, server, scenario, port)
    except RunFailed as exc:
        result.error = str(exc)
        return result
    with proc:
        try:
            result.start_ms = proc.wait_first_response(port, scenario)
            result.workers = proc.wait_processes(server.processes(scenario.workers))
            record_memory(result, proc.pgid)
            result.note = check(scenario, port)
            if warmup:
                loadgen.run(load, warmup)
            report, result.cpu_s, result.other_load = measured_load(load, duration, proc.pgid)
        except (RunFailed, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            result.error = f"{exc} [log: {proc.log_tail()}]"
            return result
    result.ok = True
    result.requests, result.seconds = report.requests, report.seconds
    result.requests_per_s = report.requests_per_s
    result.p50_ms, result.p99_ms, result.errors = report.p50_ms, report.p99_ms, report.errors
    if result.cpu_s:
        result.requests_per_cpu_s = report.requests / result.cpu_s
    result.protocol = report.protocol
    if scenario.h2load and report.errors:
        result.flagged = report.detail
    return result


def h2load_options(ctx: Context, scenario: Scenario) -> dict[str, object]:
    if not scenario.h2load:
        return {}
    return {
        "h2load": scenario.h2load,
        "connections": scenario.connections,
        "streams": scenario.streams,
        "log_file": ctx.workdir / "h2load-requests.log",
    }
