"""An upload the application answers before reading it, on the gthread and asgi workers: the
response arrives whole, and once the server stops the rest of the body with RST_STREAM
NO_ERROR (RFC 9113 §8.1) it must ignore the DATA frames the client had already sent (§5.1:
"An endpoint MUST ignore frames that it receives on closed streams after it has sent a
RST_STREAM frame"), not answer each with a reset of its own. The connection goes on.

With nghttp (which sends as fast as the windows allow, so whether frames are in flight at the
reset depends on timing) and, deterministically, with the h2 client sending one DATA frame
after it has seen the server's reset, as if that frame had been in flight.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from hyperframe.frame import DataFrame, Frame, PingFrame, RstStreamFrame

from support.h2_servers import WORKERS, worker_server
from support.h2_sync_client import H2Client
from support.h2_tools import nghttp, upload_file, url
from support.server import Server

pytest.importorskip("h2")

worker_ids = pytest.mark.parametrize("worker", list(WORKERS))
MIB = 1 << 20


def early_server(worker: str) -> Server:
    # gthread receives a body before the application runs, up to request_body_buffer: with
    # 1 MiB, a 4 MiB body reaches the application, which answers without reading it. The asgi
    # worker drops up to 1 MiB of such a body before it resets: 4 MiB is past that too.
    extra = ("--request-body-buffer", str(MIB)) if worker == "gthread" else ()
    return worker_server(worker, cleartext="prior-knowledge", extra=extra)


@worker_ids
@pytest.mark.parametrize("size", [MIB, 4 * MIB], ids=["1MiB", "4MiB"])
def test_nghttp_upload_answered_before_it_is_read(worker: str, size: int, tmp_path: Path) -> None:
    upload = upload_file(tmp_path, size)
    with early_server(worker) as srv:
        # Three runs: whether DATA is still in flight when the server resets depends on timing.
        for _ in range(3):
            statuses, log = nghttp("-d", str(upload), url(srv, "/nothing"), url(srv, "/sha256"))
            assert sorted(statuses.values()) == [200, 404], log
            codes = re.findall(r"recv RST_STREAM frame <[^>]*>\s*\(error_code=(\w+)", log)
            assert set(codes) <= {"NO_ERROR"} and len(codes) <= 1, codes
            assert "recv GOAWAY" not in log, log


def frames_until_ping_ack(sock: socket.socket) -> list[Frame]:
    """Every frame the server sends until it acknowledges our PING."""
    frames: list[Frame] = []
    buf = b""
    while True:
        while len(buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            frame.parse_body(memoryview(buf[9 : 9 + length]))
            buf = buf[9 + length :]
            frames.append(frame)
            if isinstance(frame, PingFrame) and "ACK" in frame.flags:
                return frames
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before the PING ACK; frames: {frames}")
        buf += data


@worker_ids
def test_a_data_frame_in_flight_after_the_servers_reset_is_ignored(worker: str) -> None:
    with early_server(worker) as srv, socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.settimeout(10)
        client = H2Client(sock, f"127.0.0.1:{srv.port}")
        client.wait_settings()
        stream_id = client.open("POST", "/nothing", [("content-length", str(4 * MIB))], end=False)
        stream = client.streams[stream_id]
        sent = 0
        while stream.reset is None and sent < 4 * MIB:
            room = min(client.conn.local_flow_control_window(stream_id), 16384, 4 * MIB - sent)
            if room <= 0:
                client.pump()
                continue
            client.conn.send_data(stream_id, b"x" * room, end_stream=sent + room == 4 * MIB)
            client.flush()
            sent += room
        while not stream.ended:
            client.pump()
        assert stream.status == 404, stream.headers
        if stream.reset is None:
            pytest.skip("the server took the whole body: there is no reset to follow")
        assert stream.reset == 0, f"reset with {stream.reset}, not NO_ERROR"
        # What a client had in flight when the reset came, then a PING to know when the
        # server has dealt with it.
        late = DataFrame(stream_id, data=b"x" * 1000)
        ping = PingFrame(0, opaque_data=b"earlyrsp")
        sock.sendall(late.serialize() + ping.serialize())
        frames = frames_until_ping_ack(sock)
        resets = [f for f in frames if isinstance(f, RstStreamFrame)]
        assert resets == [], f"answered the in-flight DATA with {resets}"
        # The connection goes on (our h2 state is behind the raw frames: a PING shows it).
        sock.sendall(PingFrame(0, opaque_data=b"stillok!").serialize())
        assert any(isinstance(f, PingFrame) for f in frames_until_ping_ack(sock))
