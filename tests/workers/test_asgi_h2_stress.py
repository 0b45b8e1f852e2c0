"""HTTP/2 under load on the asgi worker: h2load's multiplexed requests, and clients that mix
whole requests with streams they reset half way, several rounds in a row on one server."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import threading
from pathlib import Path

import h2.errors

from support.asgi_h2_client import H2Client
from support.server import Server

APP = "support.asgi_h2_apps:app"
H2C = ("-k", "asgi", "--http-protocols", "h2,h1", "--http2-cleartext", "both")


def h2load(*args: str) -> str:
    tool = shutil.which("h2load")
    assert tool is not None
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=120, check=True
    ).stdout


def test_h2load_multiplexed_requests_all_succeed(tmp_path: Path) -> None:
    body = tmp_path / "body"
    body.write_bytes(b"b" * 100_000)  # more than a stream window: credit as it is read
    with Server(APP, *H2C) as srv:
        for path in ("/hello", "/big?20000", "/echo"):
            extra = ["-d", str(body)] if path == "/echo" else []
            out = h2load(
                "-n", "5000", "-c", "8", "-m", "16", *extra, f"http://127.0.0.1:{srv.port}{path}"
            )
            assert "5000 succeeded, 0 failed, 0 errored, 0 timeout" in out, out
            assert re.search(r"status codes: 5000 2xx", out), out
        assert "Traceback" not in srv.log()


def mixed_client(port: int, seed: int, failures: list[str]) -> None:
    rng = random.Random(seed)
    try:
        with H2Client(port) as client:
            kept = []
            for n in range(60):
                choice = rng.random()
                if choice < 0.3:
                    stream_id = client.request(f"/wait-disconnect/{n}")
                    client.wait(lambda s=stream_id: client.streams[s].data)
                    client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                elif choice < 0.5:
                    stream_id = client.request("/echo", method="POST", body=b"x" * 5000, end=False)
                    client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                elif choice < 0.6:
                    stream_id = client.request("/big?200000")
                    client.read_once(0.01)
                    client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                else:
                    kept.append(client.request("/echo", method="POST", body=b"k%d" % n))
                client.flush()
            client.wait(lambda: all(client.done(s) for s in kept), timeout=30)
            for stream_id in kept:
                stream = client.streams[stream_id]
                if stream.reset is not None or not stream.data.startswith(b"k"):
                    failures.append(f"stream {stream_id}: {stream.reset} {stream.data[:20]!r}")
    except Exception as exc:  # reported by the test
        failures.append(repr(exc))


def test_mixed_requests_and_resets_many_rounds() -> None:
    with Server(APP, *H2C) as srv:
        for round_ in range(5):
            failures: list[str] = []
            threads = [
                threading.Thread(target=mixed_client, args=(srv.port, round_ * 10 + n, failures))
                for n in range(6)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert not failures, failures
        with H2Client(srv.port) as client:
            assert client.get("/after").status == 200
        log = srv.log()
        assert "Traceback" not in log and "Error in" not in log, log
        assert "socket.send() raised" not in log, log


def chaotic_client(port: int, seed: int, failures: list[str]) -> None:
    """Requests, WebSockets, uploads, resets, window updates and settings in a random order,
    some streams left half way when the client closes the connection."""
    rng = random.Random(seed)
    ws_headers = [("sec-websocket-version", "13")]
    try:
        with H2Client(port) as client:
            client.wait(lambda: client.remote_settings_seen)
            open_ids: list[int] = []
            for _ in range(80):
                action = rng.randrange(8)
                if action == 0:
                    open_ids.append(client.request("/gather?2"))
                elif action == 1:
                    stream_id = client.request(
                        "/ws",
                        method="CONNECT",
                        headers=ws_headers,
                        end=False,
                        extra_pseudo=[(":protocol", "websocket")],
                    )
                    open_ids.append(stream_id)
                elif action == 2:
                    open_ids.append(client.request("/echo", method="POST", body=b"e" * 30000))
                elif action == 3 and open_ids:
                    victim = open_ids.pop(rng.randrange(len(open_ids)))
                    if not client.done(victim):
                        client.conn.reset_stream(victim, h2.errors.ErrorCodes.CANCEL)
                elif action == 4:
                    client.conn.increment_flow_control_window(rng.randrange(1, 100000))
                elif action == 5:
                    client.conn.ping(bytes(8))
                elif action == 6:
                    open_ids.append(client.request("/big?300000"))
                else:
                    client.read_once(0.01)
                client.flush()
            client.read_once(0.05)
            # Leaves what is still open for the server to clean up.
    except Exception as exc:  # reported by the test
        failures.append(repr(exc))


def test_chaotic_clients_leave_the_worker_serving() -> None:
    with Server(APP, *H2C) as srv:
        for round_ in range(3):
            failures: list[str] = []
            threads = [
                threading.Thread(target=chaotic_client, args=(srv.port, round_ * 10 + n, failures))
                for n in range(6)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert not failures, failures
            with H2Client(srv.port) as client:
                assert client.get("/after").status == 200
        out = h2load("-n", "1000", "-c", "4", "-m", "8", f"http://127.0.0.1:{srv.port}/hello")
        assert "1000 succeeded" in out, out
        log = srv.log()
        assert "Traceback" not in log and "Error in" not in log, log
        assert "socket.send() raised" not in log, log  # no writes after the client left
