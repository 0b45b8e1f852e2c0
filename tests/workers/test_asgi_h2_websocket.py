"""WebSocket over HTTP/2 (RFC 8441) on the asgi worker, through a real server: an extended
CONNECT with the h2 library, WebSocket frames built by hand in its DATA frames."""

from __future__ import annotations

import json
import os
import signal
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import h2.errors
import h2.events

from support.asgi_h2_client import ENABLE_CONNECT_PROTOCOL, H2Client
from support.server import Server
from support.ws_client import frame

APP = "support.asgi_h2_apps:app"
H2C = ("-k", "asgi", "--http-protocols", "h2,h1", "--http2-cleartext", "both")
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


def parse_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The server's (unmasked) frames in `data`: [(first byte, payload)], and the rest."""
    out = []
    while len(data) >= 2:
        length = data[1] & 0x7F
        at = 2
        if length == 126:
            if len(data) < 4:
                break
            length, at = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            if len(data) < 10:
                break
            length, at = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < at + length:
            break
        out.append((data[0], data[at : at + length]))
        data = data[at + length :]
    return out, data


class H2WebSocket:
    def __init__(self, client: H2Client, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.seen = 0

    def send(self, opcode: int, payload: bytes, rsv1: bool = False) -> None:
        data = frame(opcode, payload, rsv1=rsv1)
        sent = 0
        while sent < len(data):
            sent += self.client.send_data(self.stream_id, data[sent:], False)
            if sent < len(data):
                self.client.read_once(0.2)

    def frames(self) -> list[tuple[int, bytes]]:
        return parse_frames(self.client.streams[self.stream_id].data)[0]

    def next_frame(self) -> tuple[int, bytes]:
        self.client.wait(lambda: len(self.frames()) > self.seen)
        self.seen += 1
        return self.frames()[self.seen - 1]


def connect_request(
    client: H2Client, path: str, headers: list[tuple[str, str]] | None = None
) -> int:
    client.wait(lambda: client.remote_settings_seen)
    assert client.conn.remote_settings[ENABLE_CONNECT_PROTOCOL] == 1
    fields = [("sec-websocket-version", "13"), *(headers or [])]
    return client.request(
        path, method="CONNECT", headers=fields, end=False, extra_pseudo=[(":protocol", "websocket")]
    )


@contextmanager
def server(*args: str) -> Iterator[Server]:
    with Server(APP, *H2C, *args) as srv:
        yield srv


def test_echo_over_an_extended_connect_then_a_clean_end() -> None:
    with server() as srv, H2Client(srv.port) as client:
        stream_id = connect_request(client, "/ws", [("sec-websocket-protocol", "chat, other")])
        client.wait(lambda: client.streams[stream_id].headers)
        headers = dict(client.streams[stream_id].headers)
        assert headers[b":status"] == b"200"
        assert b"sec-websocket-accept" not in headers  # RFC 8441 §5: no key, no accept
        assert headers[b"sec-websocket-protocol"] == b"chat"
        ws = H2WebSocket(client, stream_id)
        assert ws.next_frame() == (0x80 | TEXT, b"hello 2 /ws")
        ws.send(TEXT, b"abc")
        assert ws.next_frame() == (0x80 | TEXT, b"abc")
        big = bytes(range(256)) * 400  # 100 kB: more than a window each way
        ws.send(BINARY, big)
        assert ws.next_frame() == (0x80 | BINARY, big)
        ws.send(PING, b"p")
        assert ws.next_frame() == (0x80 | PONG, b"p")
        # A plain request on the same connection meanwhile.
        assert client.get("/plain").status == 200
        ws.send(TEXT, b"close")
        first, payload = ws.next_frame()
        assert first == 0x80 | CLOSE and payload[:2] == struct.pack("!H", 1000)
        ws.send(CLOSE, struct.pack("!H", 1000))
        client.wait(lambda: client.streams[stream_id].ended)  # END_STREAM, not a reset
        assert client.streams[stream_id].reset is None
        assert client.get("/after").status == 200


def test_client_close_first_and_end_stream() -> None:
    with server() as srv, H2Client(srv.port) as client:
        stream_id = connect_request(client, "/ws")
        ws = H2WebSocket(client, stream_id)
        ws.next_frame()
        ws.send(CLOSE, struct.pack("!H", 1001))
        first, payload = ws.next_frame()
        assert first == 0x80 | CLOSE and payload[:2] == struct.pack("!H", 1001)
        client.wait(lambda: client.streams[stream_id].ended)
        client.conn.end_stream(stream_id)
        client.flush()
        assert client.get("/after").status == 200


def test_refusal_is_403_on_the_stream() -> None:
    with server() as srv, H2Client(srv.port) as client:
        stream_id = connect_request(client, "/ws/deny")
        client.wait(lambda: client.done(stream_id))
        assert client.streams[stream_id].status == 403
        assert client.get("/after").status == 200


def test_bad_extended_connects() -> None:
    with server() as srv, H2Client(srv.port) as client:
        client.wait(lambda: client.remote_settings_seen)
        stream_id = client.request(
            "/ws", method="CONNECT", end=False, extra_pseudo=[(":protocol", "websocket")]
        )  # no sec-websocket-version
        client.wait(lambda: client.done(stream_id))
        assert client.streams[stream_id].status == 400
        stream_id = client.request(
            "/ws",
            method="CONNECT",
            headers=[("sec-websocket-version", "13")],
            end=False,
            extra_pseudo=[(":protocol", "not-websocket")],
        )
        client.wait(lambda: client.done(stream_id))
        assert client.streams[stream_id].status == 501
        assert client.get("/after").status == 200


def test_reset_by_the_client_leaves_the_connection_serving() -> None:
    with server() as srv, H2Client(srv.port) as client:
        stream_id = connect_request(client, "/ws")
        ws = H2WebSocket(client, stream_id)
        ws.next_frame()
        client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        assert client.get("/after").status == 200
        second = connect_request(client, "/ws/2")
        assert H2WebSocket(client, second).next_frame() == (0x80 | TEXT, b"hello 2 /ws/2")


def test_permessage_deflate_is_negotiated_as_over_http11() -> None:
    with server() as srv, H2Client(srv.port) as client:
        offer = [("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")]
        stream_id = connect_request(client, "/ws", offer)
        client.wait(lambda: client.streams[stream_id].headers)
        headers = dict(client.streams[stream_id].headers)
        assert headers[b"sec-websocket-extensions"].startswith(b"permessage-deflate")
        ws = H2WebSocket(client, stream_id)
        ws.next_frame()
        compressor = zlib.compressobj(wbits=-15)
        payload = compressor.compress(b"squeezed " * 100) + compressor.flush(zlib.Z_SYNC_FLUSH)
        ws.send(TEXT, payload[:-4], rsv1=True)
        first, data = ws.next_frame()
        if first & 0x40:  # compressed answer
            data = zlib.decompressobj(wbits=-15).decompress(data + b"\x00\x00\xff\xff")
        assert data == b"squeezed " * 100


def test_application_that_does_not_receive_holds_a_window_at_most() -> None:
    """Frames the WebSocket has not read are not credited: the client's window closes and
    stays closed while /ws/mute receives nothing."""
    with server("--websocket-max-queue", "1") as srv, H2Client(srv.port) as client:
        stream_id = connect_request(client, "/ws/mute")
        ws = H2WebSocket(client, stream_id)
        assert ws.next_frame() == (0x80 | TEXT, b"muted")
        data = frame(BINARY, b"m" * 10_000) * 20
        sent = client.send_data(stream_id, data, False)
        assert sent < len(data)
        for _ in range(5):
            client.read_once(0.1)
        assert client.conn.local_flow_control_window(stream_id) == 0
        assert client.get("/after").status == 200  # the connection still serves


def test_graceful_stop_closes_the_websocket_with_1001_then_goaway() -> None:
    with server("--graceful-timeout", "10") as srv, H2Client(srv.port) as client:
        stream_id = connect_request(client, "/ws")
        ws = H2WebSocket(client, stream_id)
        ws.next_frame()
        for pid in srv.worker_pids():
            os.kill(pid, signal.SIGTERM)
        first, payload = ws.next_frame()
        assert first == 0x80 | CLOSE and payload[:2] == struct.pack("!H", 1001)
        client.wait(lambda: client.goaway is not None)
        assert client.goaway is not None and client.goaway.last_stream_id == stream_id


def test_fastapi_requests_and_a_websocket_on_one_connection() -> None:
    """FastAPI (tests/support/h2_fastapi_app.py) over h2c: a JSON route, and its WebSocket
    route over RFC 8441 beside it on the same connection."""
    args = ("-k", "asgi", "--http-protocols", "h2,h1", "--http2-cleartext", "both")
    with Server("support.h2_fastapi_app:app", *args) as srv, H2Client(srv.port) as client:
        stream_id = connect_request(client, "/ws")
        client.wait(lambda: client.streams[stream_id].headers)
        assert client.streams[stream_id].status == 200
        ws = H2WebSocket(client, stream_id)
        item = client.get("/items/3?q=x")
        assert item.status == 200 and json.loads(item.data)["http_version"] == "2"
        ws.send(TEXT, b"scope?")
        assert json.loads(ws.next_frame()[1]) == {"http_version": "2", "scheme": "ws"}
        ws.send(TEXT, b"hi")
        assert ws.next_frame() == (0x80 | TEXT, b"echo: hi")
        ws.send(CLOSE, struct.pack("!H", 1000))
        first, _ = ws.next_frame()
        assert first == 0x80 | CLOSE
        client.wait(lambda: client.streams[stream_id].ended)
        assert client.get("/items/4").status == 200
