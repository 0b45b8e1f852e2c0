"""Concurrency review of session 13's engine changes, on real servers with real clients:

- the asgi worker's kept connections under load: thousands of keep-alive and pipelined requests
  (2 to 10 in one send, with bodies, behind large responses that fill the transport), some
  clients leaving mid-response, with pre_request/post_request hooks and an access log and
  without them, on asyncio, uvloop and a Python 3.12+ (whose request tasks start eagerly).
  Every response is checked whole, and every request that reached the application got exactly
  one pre_request and one post_request.
- the control socket under churn: `show connections` and `show workers` asked in a loop (and
  clients that leave before their answer) while workers are killed, added, removed and
  reloaded and while clients open and close connections (and the Prometheus endpoint, the
  same loop server, scraped among rude clients). The master must answer with sane values and
  never go away.
- HTTP/2 streams under h2load with request hooks: each hooked once before and once after.
- defects found by the review, each with its test: a forked worker kept its copies of the
  Prometheus endpoint's clients (a dropped scrape stayed open); at the loop server's client
  cap, a burst of clients that had already left evicted a client waiting for its answer.

The short form (a few variants, small sizes) runs in `make test`; CORRAL_SOAK=1 runs every
variant at full size (`make soak`).
"""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from corral.control.client import ClientError, CommandFailed, ControlClient
from corral.control.protocol import encode, request
from reliability.budget import scaled, scaled_list
from support.client import connect, read_response
from support.server import ROOT, Server, wait_for

APP = "support.asgi_h2_apps:app"

HOOKS_CONF = """
import os

_fd = None


def _note(line):
    global _fd
    if _fd is None:
        _fd = os.open({records!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(_fd, line.encode() + b"\\n")


def pre_request(worker, req):
    _note("pre " + req.uri)


def post_request(worker, req, environ, resp):
    _note("post " + req.uri + " " + str(resp.status_code))
"""


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def newer_python(minor: int) -> str | None:
    """A Python 3.`minor` (3.12+ start request tasks eagerly), if one is installed."""
    candidates = [shutil.which(f"python3.{minor}")]
    candidates += sorted(glob.glob(str(Path.home() / f".pyenv/versions/3.{minor}.*/bin/python3")))
    probe = f"import sys; print(sys.version_info[:2] == (3, {minor}))"
    for path in filter(None, candidates):
        try:
            done = subprocess.run([path, "-c", probe], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue  # a pyenv shim without its version selected, or worse
        if done.stdout.strip() == "True":
            return path
    return None


# ---- (b) pipelined and kept-alive requests on the asgi worker ---------------------------------


class Plan:
    """One request: its bytes and what its response must be."""

    def __init__(self, rng: random.Random, tag: str, big: bool = False) -> None:
        kind = "big" if big else rng.choice(["get", "echo", "post"])
        self.kind = kind
        if kind == "big":
            self.size = rng.choice([70000, 300000, 1000000])
            self.uri = f"/big/{tag}?{self.size}"
            self.raw = f"GET {self.uri} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            return
        body = (tag.encode() + b"." * rng.choice([0, 1, 100, 5000, 70000]))[
            : rng.choice([0, 10, 100000])
        ]
        self.body = body
        if kind == "get":
            self.uri = f"/r/{tag}"
            self.raw = f"GET {self.uri} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            self.body = b""
            return
        self.uri = f"/echo/{tag}" if kind == "echo" else f"/r/{tag}"
        if rng.random() < 0.3:  # chunked request body
            framed = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
            head = f"POST {self.uri} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        else:
            framed = body
            head = f"POST {self.uri} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        self.raw = head.encode() + framed

    def check(self, resp: Any) -> None:
        assert resp.status == 200, (self.uri, resp.status, resp.body[:200])
        if self.kind == "big":
            assert resp.body == b"x" * self.size, (self.uri, len(resp.body))
        elif self.kind == "echo":
            assert resp.body == self.body, (self.uri, len(resp.body), len(self.body))
        else:
            info = json.loads(resp.body)
            assert info["path"] == self.uri and info["body"] == len(self.body), (self.uri, info)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sure = Counter[str]()  # requests that certainly reached the application
        self.maybe = Counter[str]()  # pipelined behind a response the client walked out of
        self.answered = 0

    def add(self, sure: list[str], maybe: list[str], answered: int) -> None:
        with self.lock:
            self.sure.update(sure)
            self.maybe.update(maybe)
            self.answered += answered


def run_connection(port: int, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    action = rng.choices(["keepalive", "pipeline", "pipeline_big", "leave"], [3, 4, 2, 1])[0]
    sock = connect(port, timeout=30)
    try:
        if action == "keepalive":
            plans = [Plan(rng, f"{seed}-{i}") for i in range(rng.randint(1, 8))]
            rest = b""
            for plan in plans:
                sock.sendall(plan.raw)
                resp, rest = read_response(sock, rest)
                plan.check(resp)
            assert rest == b""
            tally.add([p.uri for p in plans], [], len(plans))
        elif action in ("pipeline", "pipeline_big"):
            n = rng.randint(2, 10)
            plans = [
                Plan(rng, f"{seed}-{i}", big=action == "pipeline_big" and rng.random() < 0.4)
                for i in range(n)
            ]
            data = b"".join(p.raw for p in plans)
            half_close = False
            if rng.random() < 0.5:
                sock.sendall(data)  # all in one send
                # Some half-close at once (RFC 9112 section 9.6): all are still answered.
                half_close = rng.random() < 0.3
                if half_close:
                    sock.shutdown(socket.SHUT_WR)
            else:  # the first whole, the rest (cut anywhere) arriving mid-response
                cut = rng.randrange(len(plans[0].raw), len(data))
                sock.sendall(data[:cut])
                resp, rest = read_response(sock)
                plans[0].check(resp)
                sock.sendall(data[cut:])
                for plan in plans[1:]:
                    resp, rest = read_response(sock, rest)
                    plan.check(resp)
                assert rest == b""
                tally.add([p.uri for p in plans], [], n)
                return
            rest = b""
            for plan in plans:
                resp, rest = read_response(sock, rest)
                plan.check(resp)
            assert rest == b""
            if half_close:
                assert sock.recv(1) == b"", "the server closes after the last answer"
            tally.add([p.uri for p in plans], [], n)
        else:  # leave mid-response, with requests pipelined behind it or not
            first = Plan(rng, f"{seed}-0", big=True)
            first.size = 4000000
            first.uri = f"/big/{seed}-0?{first.size}"
            first.raw = f"GET {first.uri} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            behind = [Plan(rng, f"{seed}-{i}") for i in range(rng.randint(0, 3))]
            sock.sendall(first.raw + b"".join(p.raw for p in behind))
            got = 0
            while got < 20000:
                chunk = sock.recv(65536)
                assert chunk, "closed before the response began"
                got += len(chunk)
            if rng.random() < 0.5:  # a reset rather than a FIN
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            tally.add([first.uri], [p.uri for p in behind], 0)
    finally:
        sock.close()


def hook_lines(records: Path) -> tuple[Counter[str], Counter[str]]:
    pre, post = Counter[str](), Counter[str]()
    text = records.read_text() if records.exists() else ""
    for line in text.splitlines():
        kind, uri, *_ = line.split(" ")
        (pre if kind == "pre" else post)[uri] += 1
    return pre, post


def hook_order_errors(records: Path) -> list[str]:
    """Each connection's hook lines in the order written: pre and post of its first request,
    then of its second, ... (a request's hooks never interleave with the next one's)."""
    by_connection: dict[str, list[tuple[str, str]]] = {}
    for line in records.read_text().splitlines():
        kind, uri, *_ = line.split(" ")
        tag = uri.split("/")[2].split("?")[0]  # /r/<seed>-<i>, /echo/..., /big/...?<size>
        by_connection.setdefault(tag.rsplit("-", 1)[0], []).append((kind, uri))
    errors = []
    for seed, lines in by_connection.items():
        uris = [uri for kind, uri in lines[::2]]
        expected = [(kind, uri) for uri in uris for kind in ("pre", "post")]
        order = [int(uri.split("/")[2].split("?")[0].rsplit("-", 1)[1]) for uri in uris]
        if lines != expected or order != sorted(order):
            errors.append(f"connection {seed}: {lines}")
    return errors


VARIANTS = {
    "hooks-asyncio": (True, "asyncio", None),
    "plain-asyncio": (False, "asyncio", None),
    "hooks-uvloop": (True, "uvloop", None),
    "plain-uvloop": (False, "uvloop", None),
    "hooks-3.12": (True, "asyncio", 12),
    "plain-3.12": (False, "asyncio", 12),
    "hooks-3.13": (True, "asyncio", 13),
}


@pytest.mark.parametrize(
    "variant", scaled_list(["hooks-asyncio", "plain-uvloop", "hooks-3.12"], list(VARIANTS))
)
def test_pipelined_and_kept_alive_requests_all_answered_and_hooked(
    variant: str, tmp_path: Path
) -> None:
    hooks, loop, interpreter = VARIANTS[variant]
    if loop == "uvloop" and not has_uvloop():
        pytest.skip("uvloop is not installed")
    python = None
    if interpreter is not None:
        python = newer_python(interpreter)
        if python is None:
            pytest.skip(f"no Python 3.{interpreter} installed")
    records = tmp_path / "hooks.log"
    access = tmp_path / "access.log"
    args = ["-k", "asgi", "--asgi-loop", loop, "--keep-alive", "30"]
    if hooks:
        conf = tmp_path / "hooks.conf.py"
        conf.write_text(HOOKS_CONF.format(records=str(records)))
        args += ["-c", str(conf), "--access-logfile", str(access)]
    connections = scaled(200, 3000)
    seed0 = int(os.environ.get("CORRAL_REVIEW_SEED", random.randrange(1 << 30)))
    tally = Tally()
    with Server(APP, *args, workers=2, python=python) as srv:
        pids = sorted(srv.worker_pids())
        with ThreadPoolExecutor(24) as pool:
            futures = [
                pool.submit(run_connection, srv.port, seed0 + i, tally) for i in range(connections)
            ]
            failures = [f.exception() for f in futures if f.exception() is not None]
        assert not failures, f"seed {seed0}: {len(failures)} failed, first: {failures[0]!r}"
        sure = sum(tally.sure.values())
        if hooks:

            def settled() -> bool:
                pre, post = hook_lines(records)
                return pre == post and all(pre[uri] >= n for uri, n in tally.sure.items())

            wait_for(settled, 20, "a post_request for every pre_request")
            pre, _ = hook_lines(records)
            extra = pre - tally.sure
            assert not extra - tally.maybe, f"hooked but never sent: {extra - tally.maybe}"
            disorder = hook_order_errors(records)
            assert not disorder, f"{len(disorder)} out of order, first: {disorder[0]}"
        assert sorted(srv.worker_pids()) == pids, "a worker died"
        log = srv.log()
        assert "Traceback" not in log and "Error" not in log, log[-3000:]
    if hooks:  # the access log is buffered: counted once the workers have flushed it
        lines = access.read_text().count("\n")
        assert sure <= lines <= sure + sum(tally.maybe.values())
    print(
        f"{variant}: seed {seed0}, {connections} connections, {sure} requests sure, "
        f"{tally.answered} responses checked"
    )


# ---- (a) the control socket under churn ---------------------------------------------------------

STATES = {"head", "body", "queued", "serving", "writing", "idle"}
PROTOCOLS = {"http", "h2", "ws", "uwsgi"}


def check_connections(data: dict[str, Any]) -> None:
    assert isinstance(data["workers"], list) and isinstance(data["count"], int)
    for worker in data["workers"]:
        assert isinstance(worker["pid"], int) and worker["pid"] > 0
        rows = worker["list"]
        if rows is None:
            continue
        assert isinstance(worker["unlisted"], int) and worker["unlisted"] >= 0
        reported = worker["reported"]
        assert reported is None or 0 <= reported < 60, reported
        for row in rows:
            assert row["state"] in STATES and row["protocol"] in PROTOCOLS, row
            assert row["address"] == "127.0.0.1", row
            assert isinstance(row["port"], int) and 0 < row["port"] <= 0xFFFF, row
            assert 0 <= row["age"] < 600, row
            assert row["requests"] is None or 0 <= row["requests"] < 10**6, row
            assert row["streams"] is None or row["streams"] >= 0, row
            assert row["tls"] is False


def check_workers(data: dict[str, Any]) -> None:
    assert isinstance(data["workers"], list)
    for worker in data["workers"]:
        assert isinstance(worker["pid"], int) and worker["pid"] > 0


class Churn:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.answers = Counter[str]()
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def count(self, what: str) -> None:
        with self.lock:
            self.answers[what] += 1


def ask_loop(path: str, churn: Churn) -> None:
    with ControlClient(path, timeout=10) as client:
        ask(client, churn)


def ask(client: ControlClient, churn: Churn) -> None:
    rng = random.Random()
    lost = 0  # answers lost in a row
    while not churn.stop.is_set():
        try:
            data = client.send("show connections")
            check_connections(data)
            churn.count("show connections")
            data = client.send("show workers")
            check_workers(data)
            churn.count("show workers")
            pids = [w["pid"] for w in data["workers"]]
            if pids:
                try:
                    check_connections(client.send("show connections", [str(rng.choice(pids))]))
                    churn.count("show connections PID")
                except CommandFailed as exc:  # reaped meanwhile
                    assert "not found" in str(exc)
            lost = 0
        except ClientError as exc:
            # The socket holds 16 clients; a burst of new ones (rude_loop's, which may have
            # closed already, accepted together after a slow turn of the master) evicts the
            # client whose deadline is nearest, which can be this one: it reconnects (the
            # next send does). Only a master that stops answering fails the test.
            churn.count("evicted")
            lost += 1
            if lost > 5:
                churn.errors.append(f"connection: {exc}")
                return
        except AssertionError as exc:
            churn.errors.append(f"bad answer: {exc!r}")
            return


def rude_loop(path: str, churn: Churn) -> None:
    """Clients that ask and leave before the answer, or mid-frame, or with a reset."""
    rng = random.Random()
    frame = encode(request(1, "show connections"))
    while not churn.stop.is_set():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            choice = rng.randrange(3)
            if choice == 0:
                sock.sendall(frame * 50)
            elif choice == 1:
                sock.sendall(frame[: rng.randrange(1, len(frame))])
            else:
                sock.sendall(frame)
                sock.recv(10)
        except OSError:
            pass
        finally:
            sock.close()
        churn.count("rude")


def traffic_loop(port: int, churn: Churn) -> None:
    rng = random.Random()
    held: list[socket.socket] = []
    while not churn.stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            continue  # the backlog is full while workers come and go
        held.append(sock)
        try:
            choice = rng.randrange(3)
            if choice == 0:
                sock.sendall(b"GET /r/x HTTP/1.1\r\nHost: x\r\n\r\n")
                read_response(sock)
            elif choice == 1:
                sock.sendall(b"GET /r/x HTTP/1.1\r\nHo")  # mid-head
        except (OSError, ConnectionError, ValueError):
            pass  # a worker killed under it
        if len(held) > 20:
            for sock in held[:10]:
                sock.close()
            del held[:10]
        churn.count("traffic")
    for sock in held:
        sock.close()


def metrics_loop(port: int, churn: Churn, flood: bool) -> None:
    """The Prometheus endpoint (the same loop server): polite scrapes, whose pages must be
    whole when they come, among clients that leave mid-head, mid-answer or with a reset. With
    `flood`, held half-heads fill its client cap (8), which then drops the oldest client."""
    rng = random.Random()
    hold = 40 if flood else 2  # two threads: 2 x (2 held + 1 active) stays under the cap
    held: list[socket.socket] = []
    while not churn.stop.is_set():
        choice = rng.randrange(5)
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError as exc:
            churn.errors.append(f"metrics connect: {exc}")
            return
        try:
            if choice == 0:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                resp, _ = read_response(sock)
                if resp.status != 200 or b"# TYPE" not in resp.body:
                    churn.errors.append(f"metrics answer: {resp.status} {resp.body[:200]!r}")
                churn.count("scrape")
            elif choice == 1:  # asks twice and leaves before the answer, with a reset
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif choice == 2:  # half a head, kept open: the cap evicts these
                sock.sendall(b"GET /metr")
                held.append(sock)
                sock = None  # type: ignore[assignment]
            elif choice == 3:  # reads a little of the page and leaves
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                sock.recv(10)
            else:  # half-closes after asking, then reads it all
                sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                sock.shutdown(socket.SHUT_WR)
                resp, _ = read_response(sock)
                if resp.status != 200:
                    churn.errors.append(f"metrics answer after half-close: {resp.status}")
        except (OSError, ConnectionError):
            # Evicted: the endpoint holds 8 clients, and a burst of new ones (those that
            # left at once included) accepted together after a slow turn of the master drops
            # the one whose deadline is nearest, a scrape in progress too (by design).
            churn.count("evicted" if choice in (0, 4) else "rude metrics")
        finally:
            if sock is not None:
                sock.close()
        if len(held) >= hold:
            for old in held:
                old.close()
            held.clear()
        churn.count("metrics")
    for old in held:
        old.close()


def chaos_loop(path: str, master: int, churn: Churn) -> None:
    with ControlClient(path, timeout=10) as client:
        chaos(client, master, churn)


def chaos(client: ControlClient, master: int, churn: Churn) -> None:
    rng = random.Random()
    while not churn.stop.is_set():
        try:
            pids = [w["pid"] for w in client.send("show workers")["workers"]]
            action = rng.choice(["kill", "kill", "add", "remove", "hup"])
            if action == "kill" and pids:
                client.send("worker kill", [str(rng.choice(pids))])
            elif action == "add" and len(pids) < 6:
                client.send("worker add")
            elif action == "remove" and len(pids) > 1:
                client.send("worker remove")
            elif action == "hup":
                os.kill(master, signal.SIGHUP)
            churn.count(action)
        except CommandFailed:
            pass
        except ClientError as exc:
            churn.errors.append(f"chaos connection: {exc}")
            return
        churn.stop.wait(0.05)


@pytest.mark.parametrize(
    "kind",
    scaled_list(
        ["asgi+metrics", "gthread+metrics"], ["asgi", "asgi+metrics", "gthread+metrics", "sync"]
    ),
)
def test_control_socket_answers_through_worker_churn(kind: str, tmp_path: Path) -> None:
    path = str(tmp_path / "c.ctl")
    args = {
        "asgi": [APP, "-k", "asgi"],
        "asgi+metrics": [APP, "-k", "asgi"],
        "gthread+metrics": ["support.apps:echo", "-k", "gthread", "--threads", "4"],
        "sync": ["support.apps:echo", "-k", "sync"],
    }[kind]
    metrics_port = 0
    flood = kind.startswith("gthread")
    if kind.endswith("+metrics"):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            metrics_port = probe.getsockname()[1]
        args += ["--metrics-bind", f"127.0.0.1:{metrics_port}"]
    seconds = scaled(2, 60)
    churn = Churn()
    with Server(*args, "--control-socket", path, "--graceful-timeout", "2", workers=2) as srv:
        srv.wait_log("Control socket listening at")
        assert srv.proc is not None
        master = srv.proc.pid
        threads = [
            threading.Thread(target=ask_loop, args=(path, churn)),
            threading.Thread(target=ask_loop, args=(path, churn)),
            threading.Thread(target=rude_loop, args=(path, churn)),
            threading.Thread(target=traffic_loop, args=(srv.port, churn)),
            threading.Thread(target=traffic_loop, args=(srv.port, churn)),
            threading.Thread(target=chaos_loop, args=(path, master, churn)),
        ]
        if metrics_port:
            threads += [
                threading.Thread(target=metrics_loop, args=(metrics_port, churn, flood))
                for _ in range(2)
            ]
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not churn.errors:
                churn.stop.wait(0.1)
        finally:
            churn.stop.set()
            for thread in threads:
                thread.join(30)
        assert not churn.errors, churn.errors
        assert srv.proc.poll() is None, "the master went away"
        with ControlClient(path) as client:
            check_connections(client.send("show connections"))
        if metrics_port:
            assert churn.answers["scrape"] > 0
            with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(sock)[0].status == 200
        log = srv.log()
        assert "Traceback" not in log, log[-4000:]
        assert churn.answers["show connections"] > 0
    print(f"{kind}: {dict(churn.answers)}")


# ---- the Prometheus endpoint's clients are the master's alone --------------------------------


@pytest.mark.parametrize("kind", scaled_list(["sync"], ["sync", "asgi"]))
def test_a_metrics_client_the_master_drops_sees_its_connection_end(
    kind: str, tmp_path: Path
) -> None:
    """A worker forked while a scrape is open must not keep a copy of that client's socket:
    when the master drops the client (its 2 s deadline), the client sees the end of the
    connection rather than waiting for as long as the worker lives."""
    path = str(tmp_path / "c.ctl")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    app = APP if kind == "asgi" else "support.apps:echo"
    args = ["-k", kind, "--control-socket", path, "--metrics-bind", f"127.0.0.1:{metrics_port}"]
    with Server(app, *args, workers=1) as srv:
        srv.wait_log("Control socket listening at")
        scrape = socket.create_connection(("127.0.0.1", metrics_port), timeout=10)
        try:
            scrape.sendall(b"GET /metr")  # half a head: the master holds it until its deadline
            with ControlClient(path) as client:
                client.send("worker add")  # forked while the client is open
                wait_for(lambda: len(client.send("show workers")["workers"]) == 2, 10, "2")
            srv.wait_booted(2)
            try:
                assert scrape.recv(100) == b"", "dropped by the master"
            except TimeoutError:
                pytest.fail("the master dropped the client but a worker keeps it open")
        finally:
            scrape.close()


@pytest.mark.parametrize("interpreter", scaled_list([None], [None, 12]))
def test_h2_streams_each_get_one_pre_and_one_post_request(
    interpreter: int | None, tmp_path: Path
) -> None:
    """HTTP/2 streams under h2load (many at once per connection, several connections): every
    stream answered 200 and hooked exactly once before and once after."""
    h2load = shutil.which("h2load")
    if h2load is None:
        pytest.skip("h2load is not installed")
    python = None
    if interpreter is not None:
        python = newer_python(interpreter)
        if python is None:
            pytest.skip(f"no Python 3.{interpreter} installed")
    records = tmp_path / "hooks.log"
    conf = tmp_path / "hooks.conf.py"
    conf.write_text(HOOKS_CONF.format(records=str(records)))
    env = None
    if python is not None:  # the h2 library (pure Python) of this interpreter, and only it
        import h2
        import hpack
        import hyperframe

        lib = tmp_path / "lib"
        lib.mkdir()
        for module in (h2, hpack, hyperframe):
            package = Path(module.__file__ or "").parent
            (lib / package.name).symlink_to(package)
        env = {"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{lib}"}
    total = scaled(2000, 30000)
    args = ["-k", "asgi", "-c", str(conf), "--http-protocols", "h2,h1"]
    args += ["--http2-cleartext", "prior-knowledge", "--access-logfile", str(tmp_path / "a.log")]
    with Server(APP, *args, workers=2, python=python, env=env) as srv:
        cmd = [h2load, "-n", str(total), "-c", "8", "-m", "20", f"http://127.0.0.1:{srv.port}/r/h2"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert f"status codes: {total} 2xx, 0 3xx, 0 4xx, 0 5xx" in done.stdout, done.stdout

        def settled() -> bool:
            pre, post = hook_lines(records)
            return pre["/r/h2"] == post["/r/h2"] == total

        wait_for(settled, 20, f"{total} pre_request and post_request lines")
        assert "Traceback" not in srv.log(), srv.log()[-3000:]


# ---- the loop server's cap: clients that have left make room first ----------------------------


def test_a_burst_of_clients_that_left_does_not_evict_a_waiting_command(tmp_path: Path) -> None:
    """The master is stalled (SIGSTOP: a long turn, as a reload's or a fork's) while a client
    sends its command and 16 others connect and leave at once; they are all accepted together
    once it goes on. The control socket holds 16 clients: the ones that have already left must
    make room, not the client waiting for its answer."""
    path = str(tmp_path / "c.ctl")
    with Server("support.apps:echo", "-k", "sync", "--control-socket", path) as srv:
        srv.wait_log("Control socket listening at")
        assert srv.proc is not None
        master = srv.proc.pid
        waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        left: list[socket.socket] = []
        os.kill(master, signal.SIGSTOP)
        try:
            waiting.settimeout(10)
            waiting.connect(path)
            waiting.sendall(encode(request(7, "show workers")))
            for _ in range(16):  # the listen backlog takes 16 + 1 while the master is stopped
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(1)
                try:
                    sock.connect(path)
                except OSError:
                    sock.close()
                    break
                left.append(sock)
            for sock in left:
                sock.close()
        finally:
            os.kill(master, signal.SIGCONT)
        try:
            data = waiting.recv(65536)
        except ConnectionResetError:
            data = b""
        finally:
            waiting.close()
        assert len(left) == 16
        assert data[4:].startswith(b'{"id":7,"status":"ok"'), data[:200]
