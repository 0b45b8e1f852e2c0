"""HTTP/2 on the asgi worker: defects found in review (races, crash paths, pinned resources),
each through a real server."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import h2.settings

from support.asgi_h2_client import H2Client
from support.client import connect, read_response
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
