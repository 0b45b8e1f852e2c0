"""HTTP/2 on the asgi worker at its limits, through a real server: windows never leak, idle
and stalled connections end, max_requests, a client that reads nothing, split cookies, and the
upgrade-only cleartext mode."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import h2.errors
import h2.settings
import httpx

from support.asgi_h2_client import H2Client
from support.client import connect, read_response
from support.server import Server, wait_for

APP = "support.asgi_h2_apps:app"
H2C = ("-k", "asgi", "--http-protocols", "h2,h1", "--http2-cleartext", "both")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_unread_bodies_give_the_connection_window_back() -> None:
    """Forty 64 KiB bodies the application never reads (2.5 MiB, more than the connection's
    1 MiB window): each stream's bytes are credited to the connection once it is over."""
    with Server(APP, *H2C) as srv, H2Client(srv.port) as client:
        for _ in range(40):
            client.wait(lambda: client.conn.outbound_flow_control_window >= 65535)
            stream_id = client.request("/no-read", method="POST", body=b"", end=False)
            assert client.send_data(stream_id, b"u" * 65535, True) == 65535
            client.wait(lambda s=stream_id: client.done(s))
            assert client.streams[stream_id].data == b"unread"
        assert client.get("/after").status == 200


def test_idle_connection_gets_goaway_after_keepalive() -> None:
    with Server(APP, *H2C, "--keep-alive", "1") as srv, H2Client(srv.port) as client:
        assert client.get("/one").status == 200
        client.read_until_closed()
        assert client.goaway is not None and client.goaway.error_code == 0


def test_stream_on_a_zero_window_is_reset_after_timeout() -> None:
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    with Server(APP, *H2C, "--timeout", "2") as srv:
        with H2Client(srv.port, settings=settings) as client:
            stream_id = client.request("/big?100000")
            client.wait(lambda: client.done(stream_id), timeout=20)
            assert client.streams[stream_id].reset == h2.errors.ErrorCodes.CANCEL
            assert client.streams[stream_id].data == b""
            assert client.get("/after").status == 200  # headers need no window
        srv.wait_log("no flow-control window")


def test_max_requests_counts_streams_and_ends_with_goaway() -> None:
    """The third stream is the worker's last: GOAWAY (NO_ERROR) names it, it is served, and a
    new worker serves the next connection. (nghttp: the h2 library's client state machine
    drops streams after any GOAWAY.)"""
    nghttp = shutil.which("nghttp")
    assert nghttp is not None
    with Server(APP, *H2C, "--max-requests", "3") as srv:
        urls = [f"http://127.0.0.1:{srv.port}/n{n}" for n in range(3)]
        out = subprocess.run(
            [nghttp, "-nv", "-m", "1", *urls], capture_output=True, text=True, timeout=30
        ).stdout
        assert out.count(":status: 200") == 3, out
        assert "recv GOAWAY frame" in out and "error_code=NO_ERROR" in out, out
        srv.wait_log("Autorestarting worker")
        srv.wait_booted(2)
        with H2Client(srv.port) as client:
            assert client.get("/new-worker").status == 200


def test_a_client_that_reads_nothing_holds_little_memory() -> None:
    """Windows opened wide and nothing read: the response waits for the socket to drain, so
    the worker does not hold the 200 MB the application would send."""
    huge = 2**31 - 1
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: huge}
    with Server(APP, *H2C) as srv:
        [worker] = srv.worker_pids()
        with H2Client(srv.port) as warm:
            assert warm.get("/warm").status == 200
        before = rss_kib(worker)
        with H2Client(srv.port, settings=settings, auto_credit=False) as client:
            client.conn.increment_flow_control_window(huge - 65535)
            client.request("/big?200000000")
            deadline = time.monotonic() + 3
            peak = before
            while time.monotonic() < deadline:
                peak = max(peak, rss_kib(worker))
                time.sleep(0.05)
            assert peak - before < 50_000, (before, peak)


def test_cookie_fields_reach_the_application_joined() -> None:
    with Server(APP, *H2C) as srv, H2Client(srv.port) as client:
        cookies = [("cookie", "a=1"), ("x-other", "o"), ("cookie", "b=2")]
        info = json.loads(client.get("/", headers=cookies).data)
        assert [h for h in info["headers"] if h[0] == "cookie"] == [["cookie", "a=1; b=2"]]


def test_upgrade_only_mode() -> None:
    args = ("-k", "asgi", "--http-protocols", "h2,h1", "--http2-cleartext", "upgrade")
    with Server(APP, *args) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            assert read_response(sock)[0].status == 505  # no prior knowledge here
        with connect(srv.port) as sock:
            sock.sendall(
                b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nX-Kept: 1\r\n\r\n"
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            assert head.startswith(b"HTTP/1.1 101 ")
            import h2.config
            import h2.connection
            import h2.events

            conn = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding=None)
            )
            conn.initiate_upgrade_connection()
            sock.sendall(conn.data_to_send())
            body = b""
            ended = False

            def stream_one() -> bool:
                nonlocal body, ended
                for event in conn.receive_data(sock.recv(65536)):
                    if isinstance(event, h2.events.DataReceived) and event.stream_id == 1:
                        body += event.data
                    ended = ended or (
                        isinstance(event, h2.events.StreamEnded) and event.stream_id == 1
                    )
                sock.sendall(conn.data_to_send())
                return ended

            wait_for(stream_one)
            info = json.loads(body)
            assert info["http_version"] == "2" and info["path"] == "/up"
            names = {name for name, _ in info["headers"]}
            assert "x-kept" in names
            assert not names & {"upgrade", "connection", "http2-settings"}


def test_asgi_worker_without_the_h2_library_serves_http11(tmp_path: Path) -> None:
    """HTTP/2 is an optional extra: with h2 not importable and not asked for, the asgi worker
    boots and serves as before."""
    blocker = tmp_path / "blocker" / "h2"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('h2 is blocked for this test')\n")
    src = Path(__file__).resolve().parents[2] / "src"
    env = {"PYTHONPATH": f"{blocker.parent}:{src}"}
    with Server(APP, "-k", "asgi", env=env) as srv, connect(srv.port) as sock:
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n")
        resp, _ = read_response(sock)
        assert resp.status == 200 and json.loads(resp.body)["http_version"] == "1.1"
        assert "blocked" not in srv.log()


def send_all(client: H2Client, stream_id: int, body: bytes) -> None:
    sent = 0
    while sent < len(body) and client.streams[stream_id].reset is None:
        sent += client.send_data(stream_id, body[sent:], True)
        if sent < len(body):
            client.read_once(0.1)


def test_answer_before_the_body_takes_the_rest_of_a_small_body() -> None:
    """/no-read answers at once; the client goes on sending its 300 kB (as httpx does before
    it reads a response): the rest is taken, the stream ends without a reset."""
    with Server(APP, *H2C) as srv, H2Client(srv.port) as client:
        stream_id = client.request("/no-read", method="POST", body=b"", end=False)
        client.wait(lambda: client.streams[stream_id].ended)
        send_all(client, stream_id, b"s" * 300_000)
        assert client.get("/after").status == 200
        assert client.streams[stream_id].reset is None
        assert client.streams[stream_id].data == b"unread"
        # httpx sends the whole body before it reads the response.
        with httpx.Client(http1=False, http2=True) as http:
            url = f"http://127.0.0.1:{srv.port}/no-read"
            response = http.post(url, content=b"h" * 500_000, timeout=10)
            assert response.status_code == 200 and response.content == b"unread"


def test_answer_before_a_large_body_stops_it_with_no_error() -> None:
    with Server(APP, *H2C) as srv, H2Client(srv.port) as client:
        stream_id = client.request("/no-read", method="POST", body=b"", end=False)
        client.wait(lambda: client.streams[stream_id].ended)
        send_all(client, stream_id, b"l" * (3 << 20))
        client.wait(lambda: client.streams[stream_id].reset is not None)
        assert client.streams[stream_id].reset == h2.errors.ErrorCodes.NO_ERROR
        assert client.get("/after").status == 200
