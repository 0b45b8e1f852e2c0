"""An HTTP/2 client on the h2 library over a raw socket (optionally TLS), for the gthread
worker's HTTP/2 tests: it records each stream's headers, data, end and reset, gives back window
for what it receives unless told not to (`ack=False`: a client that never opens its window),
and waits for conditions with a deadline instead of sleeping.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

DEADLINE = 15.0


class Client:
    """An HTTP/2 client on the h2 library: each stream's headers, data, end and reset."""

    def __init__(
        self,
        port: int,
        window: int | None = None,
        ack: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        proxy_header: bytes = b"",
    ) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        if proxy_header:  # a PROXY protocol header goes first, before TLS or the preface
            sock.sendall(proxy_header)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.ack = ack  # give back window for the data received
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.data: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.inbox = bytearray()
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self, path: str, method: str = "GET", body: bytes | None = None, headers: Any = ()
    ) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"http"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
            *headers,
        ]
        if body is not None:
            fields.append((b"content-length", b"%d" % len(body)))
        self.conn.send_headers(sid, fields, end_stream=body is None)
        self.data[sid] = bytearray()
        self.flush()
        if body is not None:
            self.send_body(sid, body)
        return sid

    def send_body(self, sid: int, body: bytes) -> None:
        """All of body, as the server's windows allow (reading its frames meanwhile)."""
        view = memoryview(body)
        while True:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room > 0:
                last = len(view) <= room
                self.conn.send_data(sid, view[:room].tobytes(), end_stream=last)
                view = view[room:]
                self.flush()
                if last:
                    return
            else:
                self.pump()

    def pump(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            raise EOFError("the server closed the connection")
        self.inbox += data
        for event in self.frames():
            sid = getattr(event, "stream_id", 0)
            if isinstance(event, h2.events.ResponseReceived):
                self.headers[sid] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data.setdefault(sid, bytearray()).extend(event.data)
                if self.ack:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(sid)
            elif isinstance(event, h2.events.StreamReset):
                self.resets[sid] = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event
        self.flush()

    def frames(self) -> list[Any]:
        """Feed the received frames to h2 one at a time. h2 refuses every frame after a
        GOAWAY, but after a graceful one (NO_ERROR) RFC 9113 §6.8 lets the streams it still
        covers finish: the connection is put back in its open state for them."""
        events = []
        while len(self.inbox) >= 9:
            size = 9 + int.from_bytes(self.inbox[:3], "big")
            if len(self.inbox) < size:
                break
            frame, self.inbox = bytes(self.inbox[:size]), self.inbox[size:]
            for event in self.conn.receive_data(frame):
                events.append(event)
                if isinstance(event, h2.events.ConnectionTerminated) and not event.error_code:
                    self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return events

    def until(self, condition: Callable[[], object], what: str = "") -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}")
            self.pump()

    def response(self, sid: int) -> tuple[int, bytes]:
        self.until(lambda: sid in self.ended or sid in self.resets, f"stream {sid}")
        assert sid not in self.resets, f"stream {sid} reset ({self.resets[sid]})"
        return int(self.headers[sid][b":status"]), bytes(self.data[sid])

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
