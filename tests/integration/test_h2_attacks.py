"""The known HTTP/2 attacks against the real server, on both worker families.

Each test attacks one connection with the raw client of tests/support/h2_client.py and then
checks three things: the answer RFC 9113 asks for (GOAWAY ENHANCE_YOUR_CALM, REFUSED_STREAM,
a reset stream), that the worker did not do more than its settings allow (handlers running at
once, memory), and that the same worker, still the same process, serves a new connection.

- rapid reset (CVE-2023-44487): streams opened and reset in a loop;
- more streams than SETTINGS_MAX_CONCURRENT_STREAMS;
- CONTINUATION flood (2024): a header block that never ends;
- HPACK bomb: a small block that decodes to a huge header list;
- SETTINGS and PING floods from a client that never reads;
- zero-window stall: a client that never lets the response through.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.h2_cases import BASE, string
from support.h2_client import (
    CANCEL,
    CONTINUATION,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    HEADERS,
    INITIAL_WINDOW_SIZE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    H2Client,
    frame,
    ping,
    rst_stream,
    settings,
)
from support.h2_servers import h2_server
from support.server import Server

APPS = {
    "asgi": ("support.h2_probe_apps:asgi", ["-k", "asgi"]),
    "gthread": ("support.h2_probe_apps:wsgi", ["-k", "gthread", "--threads", "4"]),
}


@pytest.fixture(params=list(APPS))
def worker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def serve(worker: str, *extra: str) -> Server:
    app, worker_args = APPS[worker]
    return h2_server(app, worker_args, cleartext="prior-knowledge", extra=extra)


@pytest.fixture
def server(worker: str) -> Iterator[Server]:
    with serve(worker) as srv:
        yield srv


def connect(server: Server, **kwargs: object) -> H2Client:
    client = H2Client(server.port, **kwargs)  # type: ignore[arg-type]
    assert client.read_until(lambda: client.server_settings), "no SETTINGS from the server"
    return client


def get(server: Server, path: str) -> bytes:
    with connect(server) as client:
        response = client.response(client.request(path))
        assert response.status == 200, client.frames
        return bytes(response.body)


def peak(server: Server) -> dict[str, int]:
    return dict(json.loads(get(server, "/peak")))


def memory_kb(pids: list[int], field: str = "VmHWM") -> int:
    """The worker's peak resident memory so far (VmHWM; 0 when the server under test has no
    worker processes). Its growth over an attack is the most the attack made it hold."""
    for line in Path(f"/proc/{pids[0]}/status").read_text().splitlines() if pids else ():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def still_serving(server: Server, pids: list[int]) -> None:
    """The same worker process serves a new connection."""
    assert get(server, "/") == b"ok"
    assert server.worker_pids() == pids
    assert "Traceback" not in server.log(), server.log()


def attack(client: H2Client, chunks: Iterator[bytes], batch: int = 20) -> None:
    """Send `chunks` in batches, each followed by a PING whose answer is awaited, until they
    run out, a GOAWAY comes, or the server closes. In lock-step, the server has read all
    that was sent when it decides to close, so its GOAWAY is not lost to a TCP reset."""
    number = 0
    while not client.closed and client.last_goaway() is None:
        out = b"".join(chunk for _, chunk in zip(range(batch), chunks, strict=False))
        if not out:
            return
        number += 1
        data = struct.pack(">Q", number)
        if not client.send(out, ping(data)):
            return
        client.read_until(lambda d=data: client.last_goaway() is not None or client.ponged(d))


def flood(client: H2Client, chunks: Iterator[bytes]) -> None:
    """Send `chunks` one by one, reading what comes between them, until the server closes."""
    for chunk in chunks:
        if not client.send(chunk):
            return
        client.pump()
        if client.closed:
            return


def assert_calmed(client: H2Client, code: int = ENHANCE_YOUR_CALM) -> None:
    goaway = client.goaway(timeout=20)
    assert goaway is not None, f"closed without GOAWAY: {client.frames[-5:]}"
    assert goaway.error_code == code, goaway
    client.wait_closed(timeout=20)


def assert_closed(client: H2Client, code: int) -> None:
    """Closed; a GOAWAY that came has `code` (one sent while the client was still sending may
    be lost to the TCP reset the server's kernel answers unread data with)."""
    client.wait_closed(timeout=20)
    goaway = client.last_goaway()
    assert goaway is None or goaway.error_code == code, goaway


# ---- rapid reset and the stream limit ------------------------------------------------------


def test_rapid_reset_is_calmed_and_never_runs_more_handlers_than_the_limit(worker: str) -> None:
    with serve(worker, "--http2-max-concurrent-streams", "3") as srv:
        pids = srv.worker_pids()
        with connect(srv) as client:

            def streams() -> Iterator[bytes]:
                # Each stream is reset a batch later than it opened, once its handler is
                # running: resets of running handlers are what CVE-2023-44487 exploits.
                for stream_id in range(1, 2 * 10000, 2):
                    opened = client.headers(stream_id, path="/hold?s=5")
                    yield opened + (rst_stream(stream_id - 60) if stream_id > 60 else b"")

            attack(client, streams())
            assert_calmed(client)
        counts = peak(srv)
        assert 1 <= counts["peak"] <= 3, counts
        assert counts["started"] < 500, counts  # the budget stopped it, not the client
        get(srv, "/release")
        still_serving(srv, pids)


def test_streams_over_the_advertised_limit_are_refused_and_the_others_complete(
    worker: str,
) -> None:
    with serve(worker, "--http2-max-concurrent-streams", "3") as srv, connect(srv) as client:
        assert client.server_settings[0x3] == 3
        held = [client.request("/hold?s=10") for _ in range(3)]
        extra = [client.request("/hold?s=10") for _ in range(2)]
        assert client.read_until(lambda: all(s in client.resets() for s in extra))
        assert {s: client.resets()[s] for s in extra} == dict.fromkeys(extra, REFUSED_STREAM)
        assert peak(srv)["running"] == 3
        get(srv, "/release")
        for stream_id in held:
            assert client.response(stream_id).status == 200
        assert client.response(client.request("/")).status == 200  # room again
        assert client.last_goaway() is None


# ---- header blocks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame_size", "settings_args"),
    [
        pytest.param(16384, (), id="16KiB-frames"),
        # At the largest frame size, 64 CONTINUATION frames (the h2 library's own bound) of
        # 2 MiB would be 128 MiB: the header-list bound must stop it long before.
        pytest.param(1 << 21, ("--http2-max-frame-size", "16777215"), id="2MiB-frames"),
    ],
)
def test_continuation_flood_is_closed_with_memory_bounded(
    worker: str, frame_size: int, settings_args: tuple[str, ...]
) -> None:
    with serve(worker, *settings_args) as srv:
        pids = srv.worker_pids()
        before = memory_kb(pids)
        with connect(srv) as client:
            client.send(frame(HEADERS, END_STREAM, 1, BASE))
            junk = frame(CONTINUATION, 0, 1, b"\x00" * frame_size)
            flood(client, iter([junk] * (320 * 1024 * 1024 // frame_size)))  # 320 MB offered
            assert_closed(client, ENHANCE_YOUR_CALM)
        assert memory_kb(pids) - before < 64 * 1024
        still_serving(srv, pids)


def test_empty_continuation_flood_is_a_protocol_error(server: Server) -> None:
    pids = server.worker_pids()
    with connect(server) as client:
        client.send(frame(HEADERS, END_STREAM, 1, BASE))
        flood(client, iter([frame(CONTINUATION, 0, 1, b"")] * 100000))
        assert_closed(client, PROTOCOL_ERROR)
    still_serving(server, pids)


def test_hpack_bomb_is_refused_while_decoding(server: Server) -> None:
    """A 4 KB entry in the dynamic table, then 16000 one-byte references to it: 64 MB of
    header list from 20 KB on the wire; the limit is 64 KiB by default."""
    pids = server.worker_pids()
    before = memory_kb(pids)
    with connect(server) as client:
        entry = b"\x40" + string(b"x-bomb") + b"\x7f\xa1\x1e" + b"b" * 4000
        block = BASE + entry + b"\xbe" * 16000
        client.send(frame(HEADERS, END_STREAM, 1, block[:16000]))
        client.send(frame(CONTINUATION, END_HEADERS, 1, block[16000:]))
        assert_calmed(client)
    assert memory_kb(pids) - before < 64 * 1024
    still_serving(server, pids)


# ---- floods from a client that does not read --------------------------------------------


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(lambda i: ping(struct.pack(">Q", i)), id="PING"),
        pytest.param(lambda i: settings({INITIAL_WINDOW_SIZE: 65535 + i % 2}), id="SETTINGS"),
    ],
)
def test_control_frame_flood_from_a_client_that_never_reads(
    server: Server, frames: Callable[[int], bytes]
) -> None:
    """20000 frames in a burst (a few hundred KB, which the kernel's buffers take whether or
    not the server reads them): the server must close the connection, not answer them all."""
    pids = server.worker_pids()
    with connect(server) as client:
        for start in range(0, 20000, 500):
            if not client.send(b"".join(frames(i) for i in range(start, start + 500))):
                break
        assert_closed(client, ENHANCE_YOUR_CALM)
        acks = [f for f in client.frames if "ACK" in f.flags]
        assert len(acks) < 20000  # not every one answered: the connection was closed
    still_serving(server, pids)


# ---- flow control ---------------------------------------------------------------------------


def test_zero_window_stall_is_reset_after_timeout_and_others_are_served(worker: str) -> None:
    """Clients that announce a window of 0 and never open it: their streams hold no thread
    (more of them than threads, and others are still served) and are reset (CANCEL) after
    `timeout`."""
    with serve(worker, "--timeout", "3") as srv:
        pids = srv.worker_pids()
        stalled = []
        for _ in range(5):
            client = connect(srv, settings_values={INITIAL_WINDOW_SIZE: 0}, auto_window=False)
            stalled.append((client, client.request("/big?n=100000")))
        for client, stream_id in stalled:
            client.read_until(lambda c=client, s=stream_id: c.stream(s).headers)
        assert get(srv, "/") == b"ok"  # served while five responses are stalled
        for client, stream_id in stalled:
            stream = client.stream(stream_id)
            assert client.read_until(lambda s=stream: s.reset is not None, timeout=30)
            assert stream.body == b""
            assert stream.reset == CANCEL, stream
        still_serving(srv, pids)
        for client, _ in stalled:
            client.close()
