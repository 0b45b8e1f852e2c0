"""The asgi worker on Python 3.12 or newer, where a request's task starts eagerly (inside
data_received) and the usual request ends before the loop runs again. The paths that differ:
pipelined requests ending one after another without recursion, bodies and waits that suspend
the eager start, contextvars per request, WebSockets and a graceful stop. corral has no
run-time dependency, so the other interpreter runs the same src/ with only the standard
library; skipped where no Python 3.12+ is installed (pyenv's are looked for too)."""

from __future__ import annotations

import glob
import json
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from support.client import connect, read_response
from support.server import Server
from support.ws_client import open_websocket

TEXT = 0x1


def newer_python() -> str | None:
    candidates = [shutil.which(f"python3.{minor}") for minor in (14, 13, 12)]
    candidates += sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.1[2-9]*/bin/python3")))
    for path in candidates:
        if not path:
            continue
        try:
            probe = [path, "-c", "import sys; print(sys.version_info >= (3, 12))"]
            done = subprocess.run(probe, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.stdout.strip() == "True":
            return path
    return None


PYTHON = newer_python()
pytestmark = pytest.mark.skipif(PYTHON is None, reason="needs a Python 3.12+ interpreter")
ARGS = ("-k", "asgi", "--asgi-loop", "asyncio")


def test_pipelined_requests_end_eagerly_without_recursion() -> None:
    with Server("support.asgi_review_apps:app", *ARGS, python=PYTHON) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET /n HTTP/1.1\r\nHost: h\r\n\r\n" * 3000)  # past the recursion limit
            rest = b""
            for _ in range(3000):
                resp, rest = read_response(sock, rest)
                assert resp.body == b"/n"
            sock.sendall(
                b"GET /user HTTP/1.1\r\nHost: h\r\nX-User: alice\r\n\r\n"
                b"GET /user HTTP/1.1\r\nHost: h\r\n\r\n"
            )
            first, rest = read_response(sock, rest)
            second, _ = read_response(sock, rest)
            assert (first.body, second.body) == (b"alice", b"anonymous")
        assert "Traceback" not in srv.log()


def test_bodies_and_waits_suspend_the_eager_start() -> None:
    with Server("support.stress_apps:app", *ARGS, python=PYTHON) as srv:
        failures: list[str] = []

        def client(n: int) -> None:
            try:
                with connect(srv.port) as sock:
                    rest = b""
                    for i in range(200):
                        body = f"{n}-{i}".encode() * (1 + i % 50)
                        head = f"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}"
                        # The body in two writes: the application waits for the rest.
                        sock.sendall(head.encode() + b"\r\n\r\n" + body[:3])
                        sock.sendall(body[3:])
                        resp, rest = read_response(sock, rest)
                        if resp.body != body:
                            failures.append(f"{n}/{i}: {resp.body[:40]!r}")
            except Exception as exc:
                failures.append(f"client {n}: {exc!r}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not failures, failures[:5]


def test_websocket_and_graceful_stop_on_the_newer_python() -> None:
    with Server("support.asgi_apps:websocket_app", *ARGS, python=PYTHON) as srv:
        ws = open_websocket(srv.port)
        try:
            ws.send_frame(TEXT, b"hi")
            _, payload = ws.read_frame()
            assert payload == b"echo: hi"
            with connect(srv.port) as sock:
                sock.sendall(b"GET /scope HTTP/1.1\r\nHost: h\r\n\r\n")
                assert json.loads(read_response(sock)[0].body)["path"] == "/scope"
            srv.signal(signal.SIGTERM)
            first, payload = ws.read_frame()
            assert first == 0x88 and int.from_bytes(payload[:2], "big") == 1001
        finally:
            ws.close()
        assert srv.wait_exit(15) == 0
