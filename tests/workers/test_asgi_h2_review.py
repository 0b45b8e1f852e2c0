"""HTTP/2 on the asgi worker: defects found in review (races, crash paths, pinned resources),
each through a real server."""

from __future__ import annotations

import base64
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import h2.errors
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from support.asgi_h2_client import H2Client
from support.client import connect, read_response
from support.h2_client import H2Client as RawH2Client
from support.server import Server

APP = "support.asgi_h2_apps:app"
H2C = ("-k", "asgi", "--http-protocols", "h2,h1", "--http2-cleartext", "both")


def upgrade_request(settings: bytes) -> bytes:
    value = base64.urlsafe_b64encode(settings).rstrip(b"=")
    return (
        b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + value + b"\r\n\r\n"
    )


def test_upgrade_with_settings_h2_refuses_is_served_in_http1() -> None:
    """An HTTP2-Settings value that decodes but is no valid SETTINGS payload (a length that is
    not a multiple of 6, or a value out of range) was found only after the 101, by an exception
    out of data_received: a traceback and a dropped connection. It is answered in HTTP/1.1."""
    bad = [b"\x00\x02\x00", b"\x00\x02\x00\x00\x00\x05", b"\x00\x04\xff\xff\xff\xff"]
    with Server(APP, *H2C) as srv:
        for payload in bad:
            with connect(srv.port) as sock:
                sock.sendall(upgrade_request(payload))
                response = read_response(sock)[0]
                assert response.status == 200, payload
        with H2Client(srv.port) as client:
            assert client.get("/after").status == 200
        log = srv.log()
        assert "Traceback" not in log and "Fatal error" not in log, log


def test_a_body_that_stops_coming_ends_the_stream_after_timeout() -> None:
    """A client that opens a stream, sends part of its body and then nothing held the stream's
    task and its concurrency slot for ever (HTTP/1.1 answers 408 after `timeout`)."""
    with Server(APP, *H2C, "--timeout", "2") as srv, H2Client(srv.port) as client:
        stream_id = client.request("/echo", method="POST", body=b"partial", end=False)
        client.wait(lambda: client.done(stream_id), timeout=30)
        stream = client.streams[stream_id]
        assert stream.status == 408  # no head was out: a whole answer, then RST_STREAM
        assert client.get("/after").status == 200  # the connection goes on


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_pathsend_to_a_wide_window_reads_the_file_a_bounded_chunk_at_a_time(
    tmp_path: Path,
) -> None:
    """`http.response.pathsend` read as much of the file at once as the client's window
    allowed: a client announcing a 2 GiB window (and reading nothing) made the worker read a
    whole 400 MB file into memory, per stream."""
    path = tmp_path / "large.bin"
    with path.open("wb") as file:
        file.truncate(400 * 1024 * 1024)  # sparse: the test itself stays small
    huge = 2**31 - 1
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: huge}
    env = {"CORRAL_TEST_PATHSEND": str(path)}
    with Server(APP, *H2C, env=env) as srv:
        [worker] = srv.worker_pids()
        with H2Client(srv.port) as warm:
            assert warm.get("/warm").status == 200
        before = rss_kib(worker)
        with H2Client(srv.port, settings=settings, auto_credit=False) as client:
            client.conn.increment_flow_control_window(huge - 65535)
            client.flush()
            client.request("/pathsend")
            deadline = time.monotonic() + 3
            peak = before
            while time.monotonic() < deadline:
                peak = max(peak, rss_kib(worker))
                time.sleep(0.05)
            assert peak - before < 100_000, (before, peak)


# --- stress: resets, client GOAWAYs, abrupt closes and worker stops, mixed ----------------

STRESS = (*H2C, "--http2-max-concurrent-streams", "16", "--timeout", "2")
STRESS += ("--asgi-disconnect-grace-period", "1", "--graceful-timeout", "4")


def slots_all_free(client: H2Client) -> bool:
    """All 16 places of the connection can be taken at once (none leaked): sixteen streams
    side by side, none refused. A refusal is retried a few times: places held by streams
    still ending (a grace period, a body being taken, a stalled body) come back within a few
    seconds; leaked ones never do. (Few tries: refusals spend the connection's budget.)"""
    refused = h2.errors.ErrorCodes.REFUSED_STREAM
    for _ in range(5):
        # No body: the client's view of the connection window (uploads before) is no matter.
        ids = [client.request("/echo") for _ in range(16)]
        client.wait(lambda ids=ids: all(client.done(i) for i in ids), timeout=20)
        if not any(client.streams[i].reset == refused for i in ids):
            return all(client.streams[i].ended and client.streams[i].status == 200 for i in ids)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            client.read_once(0.1)
    return False


def stress_actions(client: H2Client, rng: random.Random, count: int) -> str:
    """Random streams on one connection; how it ended: "open", "goaway" or "closed"."""
    ws = [("sec-websocket-version", "13")]
    live: list[int] = []
    for _ in range(count):
        action = rng.randrange(12)
        if client.closed or client.goaway is not None:
            return "closed"
        live = [stream_id for stream_id in live if not client.done(stream_id)]
        if action <= 6 and len(live) >= 12:
            action = 7  # within the 16 places: refusals would spend the reset budget
        if action == 0:
            live.append(client.request("/echo", method="POST", body=b"p" * 5000, end=False))
        elif action == 1:
            live.append(client.request("/echo", method="POST", body=b"e" * 70000))
        elif action == 2:
            live.append(client.request("/big?200000"))
        elif action == 3:
            live.append(client.request("/wait-disconnect"))
        elif action == 4:
            live.append(client.request("/no-read", method="POST", body=b"n" * 40000, end=False))
        elif action == 5:
            live.append(
                client.request(
                    "/ws",
                    method="CONNECT",
                    headers=ws,
                    end=False,
                    extra_pseudo=[(":protocol", "websocket")],
                )
            )
        elif action == 6:
            live.append(client.request("/boom-after"))
        elif action in (7, 8) and live:
            victim = live.pop(rng.randrange(len(live)))
            if not client.done(victim):
                client.conn.reset_stream(victim, h2.errors.ErrorCodes.CANCEL)
        elif action == 9 and rng.random() < 0.03:
            client.conn.close_connection()
            client.flush()
            return "goaway"
        elif action == 10 and rng.random() < 0.03:
            return "closed"  # dropped with streams open
        else:
            client.read_once(0.002)
        client.flush()
    for stream_id in live:
        if not client.done(stream_id):
            client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
    client.flush()
    return "open"


def stress_client(port: int, seed: int, rounds: int, failures: list[str]) -> None:
    rng = random.Random(seed)
    for _ in range(rounds):
        try:
            with H2Client(port) as client:
                how = stress_actions(client, rng, 150)
                if how == "goaway":
                    client.read_until_closed(timeout=20)
                elif (
                    how == "open"
                    and client.goaway is None
                    and not client.closed
                    and not slots_all_free(client)
                ):
                    failures.append(f"seed {seed}: a place of the connection leaked")
        except AssertionError as exc:
            # A worker stopping (HUP) sends GOAWAY and closes: that connection is over.
            if "closed the connection" not in str(exc):
                failures.append(f"seed {seed}: {exc!r}")
        except (ConnectionError, OSError, h2.exceptions.ProtocolError):
            pass  # the stopping worker closed the connection under the client


def test_stress_resets_goaways_closes_and_stops() -> None:
    """Thousands of streams on six clients: partial bodies, unread bodies, large responses,
    WebSockets, failures after the head, resets at random points, client GOAWAYs, dropped
    connections, and the worker replaced (HUP) in the middle. Every connection still open
    at the end of its round can take all 16 of its places at once; the server logs no
    traceback, and serves h2load afterwards."""
    with Server(APP, *STRESS, workers=2) as srv:
        for round_ in range(3):
            failures: list[str] = []
            threads = [
                threading.Thread(
                    target=stress_client, args=(srv.port, round_ * 10 + n, 4, failures)
                )
                for n in range(6)
            ]
            for thread in threads:
                thread.start()
            time.sleep(0.5)
            srv.signal(signal.SIGHUP)  # the workers stop gracefully while streams run
            for thread in threads:
                thread.join(120)
            assert not any(thread.is_alive() for thread in threads), "a client hung"
            assert not failures, failures
        srv.wait_log("Worker exiting", 6, timeout=30)  # h2load gives up on a GOAWAY
        with H2Client(srv.port) as client:
            assert client.get("/after").status == 200
            assert slots_all_free(client)
        tool = shutil.which("h2load")
        assert tool is not None
        out = subprocess.run(
            [tool, "-n", "2000", "-c", "4", "-m", "8", f"http://127.0.0.1:{srv.port}/hello"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        assert "2000 succeeded" in out, out
        log = srv.log()
        for bad in ("Fatal error", "Error in", "socket.send() raised", "TIMEOUT"):
            assert bad not in log, log
        assert not unexpected_tracebacks(log), log


def unexpected_tracebacks(log: str) -> list[str]:
    """The tracebacks in `log` other than the application's own failure after its head."""
    blocks = [part.split("\n[", 1)[0] for part in log.split("Traceback (most recent")[1:]]
    return [block for block in blocks if "boom after the head" not in block]


def test_answers_of_the_worker_end_their_stream_on_a_closed_window() -> None:
    """A client that opens no window for response bodies (SETTINGS_INITIAL_WINDOW_SIZE 0, as
    a client that grants window per stream does): the worker's own answers (the 500 of an
    application that failed before its head, the health path) sent a head and no END_STREAM,
    and nothing more ever went out on the stream, even when the client opened its window."""
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    with (
        Server(APP, *H2C, "--health-path", "/healthz") as srv,
        H2Client(srv.port, settings=settings) as client,
    ):
        client.wait(lambda: client.remote_settings_seen)
        for path in ("/boom-before", "/healthz", "/no-response"):
            stream_id = client.request(path)
            client.wait(lambda s=stream_id: client.streams[s].headers, timeout=10)
            if not client.done(stream_id):
                client.conn.increment_flow_control_window(65535, stream_id)
                client.flush()
            client.wait(lambda s=stream_id: client.done(s), timeout=10)
            stream = client.streams[stream_id]
            assert stream.ended and stream.reset is None, (path, stream.data)
            assert stream.status == (200 if path == "/healthz" else 500)


def test_a_body_held_back_by_the_connection_window_is_not_taken_for_a_stall() -> None:
    """Sixteen streams whose application reads nothing fill the connection's 1 MiB window: a
    seventeenth stream's body cannot come, through no fault of the client. It is not answered
    408 after `timeout` (as a body the client stopped sending is): it waits for the window."""
    with Server(APP, *H2C, "--timeout", "2") as srv, H2Client(srv.port) as client:
        client.wait(lambda: client.conn.outbound_flow_control_window >= 1 << 20)
        held = []
        for _ in range(16):
            stream_id = client.request("/hold", method="POST", body=b"", end=False)
            assert client.send_data(stream_id, b"h" * 65535, True) == 65535
            held.append(stream_id)
        waiting = client.request("/echo", method="POST", body=b"", end=False)
        body = b"w" * 100
        sent = client.send_data(waiting, body, False)
        assert sent < len(body)  # the connection's window is full
        deadline = time.monotonic() + 6  # three times `timeout`
        while time.monotonic() < deadline:
            client.read_once(0.2)
        assert not client.done(waiting), client.streams[waiting].headers
        client.request("/release")
        while sent < len(body):  # as soon as the window opens
            client.read_once(0.05)
            sent += client.send_data(waiting, body[sent:], True)
        client.wait(lambda: client.done(waiting))
        client.wait(lambda: all(client.done(s) for s in held), timeout=20)
        assert client.streams[waiting].status == 200
        assert client.streams[waiting].data == body


def test_streams_of_one_read_are_all_served_when_the_first_ends_the_connection() -> None:
    """With --max-requests 1, two requests in one read: the first is the worker's last, and
    the GOAWAY names the highest stream read (3). With eager tasks (Python 3.12+, run with
    CORRAL_TEST_PYTHON) the first stream ended inside the read, closed the connection at once,
    and stream 3, promised by that GOAWAY, was started on a closed connection and never
    answered. (A raw client: h2's own takes nothing after a GOAWAY.)"""
    with Server(APP, *H2C, "--max-requests", "1") as srv:
        client = RawH2Client(srv.port)
        try:
            client.read_until(lambda: client.server_settings)
            client.send(client.headers(1, path="/one") + client.headers(3, path="/two"))
            client.read_until(lambda: client.closed, timeout=20)
        finally:
            client.sock.close()
        goaways = [f for f in client.frames if isinstance(f, GoAwayFrame)]
        assert goaways
        last = min(f.last_stream_id for f in goaways)
        for stream_id in (1, 3):
            if stream_id <= last:  # promised: it must be answered
                stream = client.streams.get(stream_id)
                assert stream is not None and stream.ended, (stream_id, client.frames)
                assert stream.status == 200
