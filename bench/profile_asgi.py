"""Where corral's ASGI hello-world keep-alive request spends its time (bench/README.md, "Where
an ASGI keep-alive request's time goes"). Run with the peer venv's Python:

    bench/.peers/bin/python bench/profile_asgi.py pieces           # µs per step, best of 7
    bench/.peers/bin/python bench/profile_asgi.py drive 20000      # the whole Python path
    bench/.peers/bin/python bench/profile_asgi.py callgrind        # instructions, noise-free
    bench/.peers/bin/python bench/profile_asgi.py spy [close]      # the real server, sampled

- pieces: each step of the path alone (parse, scope, Exchange, the Task, the application's
  two sends, the end of the request), timed with time.process_time over many calls.
- drive: the real HttpProtocol and Exchange, with a stub worker and a transport that only
  keeps the bytes, N keep-alive requests on one asyncio loop: the Python path without the
  kernel.
- callgrind: `drive` and each piece under valgrind at two counts; the difference over the
  extra calls is the instructions per request or per call, which no neighbour on this shared
  machine can move.
- spy: `corral -k asgi` pinned to core 0 under wrk (core 1) sampled by py-spy (when
  installed): CPU per request from /proc (user and system apart) and the share of the
  samples each function's own code takes.

It only measures: it changes nothing in corral and is never part of `make test`. Only
127.0.0.1 is loaded, and only processes it started are signalled.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE / "apps")]

from asgi_app import HELLO_HEADERS, app  # noqa: E402  (after the path is set)

from corral.adapters.asgi import Exchange, build_scope  # noqa: E402
from corral.http.parser import DEFAULT_LIMITS, parse_head  # noqa: E402
from corral.workers.asgi_http import HttpProtocol  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"  # what wrk sends


class Sink(asyncio.Transport):
    """A transport that keeps nothing: what HttpProtocol needs of asyncio's."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def stub_worker() -> Any:
    settings = SimpleNamespace(
        root_path="", asgi_disconnect_grace_period=3, keepalive=2, websocket_max_message_size=0
    )
    return SimpleNamespace(
        protocols=set(),
        acceptor=SimpleNamespace(released=lambda: None),
        timeout=30.0,
        forwarded_allow_ips=("127.0.0.1",),
        limits=DEFAULT_LIMITS,
        health_path="",
        count_request=lambda: True,
        keep_alive_allowed=True,
        secure_scheme_headers={},
        settings=settings,
        lifespan_state={},
        tls_facts=None,
        asgi_app=app,
        access=None,
        stats=None,
        statsd=None,
        alive=True,
    )


def connection() -> tuple[HttpProtocol, Sink]:
    proto, sink = HttpProtocol(stub_worker()), Sink()
    proto.connection_made(sink)  # type: ignore[arg-type]
    return proto, sink


def run_through(coro: Any) -> None:
    """Drive a coroutine that never suspends (the hello path) to its end, without a Task."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("suspended: this piece cannot be driven eagerly")


async def noop() -> None:
    return None


def pieces() -> dict[str, Callable[[], object]]:
    """Each step of one request, callable alone (a fresh Exchange where the step needs it)."""
    proto, _ = connection()
    req, _ = parse_head(REQUEST, DEFAULT_LIMITS)  # type: ignore[misc]
    exchange = Exchange(proto, req, True)
    scope = proto.scope_for(req, exchange)
    start = {"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS}

    def app_and_sends() -> None:
        exch = Exchange(proto, req, True)
        run_through(app(scope, exch.receive, exch.send))

    def start_message() -> None:
        Exchange(proto, req, True).start(start)

    def frame() -> None:
        exch = Exchange(proto, req, True)
        exch.start(start)
        exch.frame(b"Hello, World!", False)

    def finished() -> None:
        proto.exchange = exch = Exchange(proto, req, True)
        exch.ended = True
        proto.finished(exch)

    return {
        "parse_head": lambda: parse_head(REQUEST, DEFAULT_LIMITS),
        "scope_for (build_scope + extensions)": lambda: proto.scope_for(req, exchange),
        "build_scope alone": lambda: build_scope(req, None, None, "http", "", {}, None),
        "Exchange()": lambda: Exchange(proto, req, True),
        "  of which asyncio.Queue()": asyncio.Queue,
        "  of which asyncio.Event()": asyncio.Event,
        "create_task + its run (no-op coroutine)": None,  # measured in a loop, see task_cost
        "no-op coroutine driven eagerly": lambda: run_through(noop()),
        "Exchange() + app + its 2 sends": app_and_sends,
        "Exchange() + start()": start_message,
        "Exchange() + start() + frame()": frame,
        "Exchange() + finished() (resume, idle timer)": finished,
    }


def best(fn: Callable[[], object], calls: int, repeat: int = 7) -> float:
    """µs per call, the best of `repeat` runs of `calls` calls (process CPU time)."""
    results = []
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(calls):
            fn()
        results.append((time.process_time() - started) / calls * 1e6)
    return min(results)


async def task_cost(calls: int) -> float:
    """µs for create_task of a no-op coroutine and the loop running it, per task."""
    loop = asyncio.get_running_loop()
    results = []
    for _ in range(7):
        started = time.process_time()
        tasks = [loop.create_task(noop()) for _ in range(calls)]
        await asyncio.sleep(0)  # every task runs its one step here
        await asyncio.sleep(0)
        results.append((time.process_time() - started) / calls * 1e6)
        assert all(task.done() for task in tasks)
    return min(results)


async def drive(requests: int) -> float:
    """µs of CPU per keep-alive request through the real HttpProtocol on this loop."""
    proto, sink = connection()
    yield_alone = await loop_yield_cost(requests)
    started = time.process_time()
    for _ in range(requests):
        proto.data_received(REQUEST)
        await asyncio.sleep(0)  # the request's task runs: app, sends, finished
    spent = (time.process_time() - started) / requests * 1e6
    expected = requests * len(b"HTTP/1.1 200 OK\r\n")
    if sink.written < expected:
        raise RuntimeError(f"only {sink.written} bytes written for {requests} requests")
    return spent - yield_alone


async def loop_yield_cost(requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        await asyncio.sleep(0)
    return (time.process_time() - started) / requests * 1e6


async def main_pieces() -> None:
    # Inside a running loop: the steps arm timers and create tasks as in the worker.
    for name, fn in pieces().items():
        cost = await task_cost(20000) if fn is None else best(fn, 20000)
        print(f"{name:48} {cost:6.2f} µs")
    print(f"{'whole path (drive, 20000 requests)':48} {await drive(20000):6.2f} µs")


async def main_one(name: str, calls: int) -> None:
    """Run one piece (or 'drive') `calls` times: what callgrind counts."""
    if name == "drive":
        await drive(calls)
    elif name == "yield":
        await loop_yield_cost(calls)
    elif name == "task":
        await task_cost_once(calls)
    else:
        fn = pieces()[name]
        assert fn is not None
        for _ in range(calls):
            fn()


async def task_cost_once(calls: int) -> None:
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(noop()) for _ in range(calls)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert all(task.done() for task in tasks)


COLLECTED = re.compile(rb"Collected : (\d+)")


def instructions(name: str, calls: int) -> int:
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    argv += [sys.executable, __file__, "one", name, str(calls)]
    done = subprocess.run(argv, capture_output=True, check=True)
    found = COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(done.stderr.decode(errors="replace")[-500:])
    return int(found.group(1))


def main_callgrind(names: list[str]) -> None:
    names = names or ["drive", "task", *(n for n, fn in pieces().items() if fn is not None)]
    low, high = 1000, 3000
    for name in names:
        per_call = (instructions(name, high) - instructions(name, low)) / (high - low)
        print(f"{name:48} {per_call:9,.0f} instructions", flush=True)


def main_spy(close: bool, seconds: int = 6) -> None:
    """The real server under wrk, sampled by py-spy; prints CPU per request and top self-time.
    With `close`, every request on a new connection (wrk's `Connection: close`)."""
    env = {**os.environ, "PYTHONPATH": f"{HERE.parent / 'src'}:{HERE / 'apps'}"}
    port = 18000 + os.getpid() % 1000
    argv = ["taskset", "-c", "0", sys.executable, "-m", "corral", "-w", "1", "-k", "asgi"]
    argv += ["--asgi-loop", "asyncio", "-b", f"127.0.0.1:{port}", "asgi_app:app"]
    server = subprocess.Popen(argv, cwd=HERE / "apps", env=env, start_new_session=True)
    try:
        time.sleep(2.0)
        worker = int(subprocess.check_output(["pgrep", "-P", str(server.pid)]).split()[0])
        wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c64"]
        wrk += ["-H", "Connection: close"] if close else []
        wrk += [f"-d{seconds}s"]
        subprocess.run([*wrk[:-1], "-d1s", f"http://127.0.0.1:{port}/"], capture_output=True)
        before = cpu(worker)
        spy = [
            "taskset",
            "-c",
            "1",
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "-p",
            str(worker),
            "-r",
            "500",
        ]
        spy += ["-d", str(seconds), "-f", "raw", "-o", "/tmp/corral-asgi-spy.txt", "--nonblocking"]
        sampler = subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out = subprocess.run([*wrk, f"http://127.0.0.1:{port}/"], capture_output=True, text=True)
        after = cpu(worker)
        sampler.wait()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
    found = re.search(r"(\d+) requests in", out.stdout)
    requests = int(found.group(1)) if found else 0
    user, system = ((a - b) / os.sysconf("SC_CLK_TCK") for a, b in zip(after, before, strict=True))
    print(
        f"{requests} requests; per request: user {user / requests * 1e6:.1f} µs, "
        f"system {system / requests * 1e6:.1f} µs, {requests / (user + system):,.0f} req/CPU-s"
    )
    report_samples(Path("/tmp/corral-asgi-spy.txt"))


def cpu(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def report_samples(path: Path, top: int = 30) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r" \((.*?/)?([^/]*?):\d+\)$", r" (\2)", f) for f in stack.split(";")]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"{total} samples; own time:")
    for frame, n in own.most_common(top):
        print(f"  {n / total:6.1%}  {frame}")
    print("inclusive:")
    for frame, n in inclusive.most_common(top):
        print(f"  {n / total:6.1%}  {frame}")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "pieces"
    if command == "pieces":
        asyncio.run(main_pieces())
    elif command == "drive":
        print(f"{asyncio.run(drive(int(sys.argv[2]))):.2f} µs per request")
    elif command == "one":
        asyncio.run(main_one(sys.argv[2], int(sys.argv[3])))
    elif command == "callgrind":
        main_callgrind(sys.argv[2:])
    elif command == "spy":
        main_spy(close=sys.argv[2:] == ["close"])
    else:
        raise SystemExit(__doc__)
