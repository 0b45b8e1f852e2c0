"""A small blocking HTTP/2 client on the `h2` library, for protocol-level tests of a real server.

It speaks prior-knowledge h2c on a raw socket (or h2 over TLS with ALPN), sends what the test
asks, and collects the server's events per stream; `wait` reads until a condition holds, with a
deadline (never a fixed sleep).
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


class Stream:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.informational: list[list[tuple[bytes, bytes]]] = []
        self.trailers: list[tuple[bytes, bytes]] = []
        self.data = b""
        self.ended = False
        self.reset: int | None = None

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"])


class H2Client:
    def __init__(
        self,
        port: int,
        tls: ssl.SSLContext | None = None,
        settings: dict[int, int] | None = None,
        auto_credit: bool = True,
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock: socket.socket = (
            tls.wrap_socket(raw, server_hostname="localhost") if tls is not None else raw
        )
        # No client-side checks: tests send what a broken or hostile client would.
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.streams: dict[int, Stream] = {}
        self.events: list[Any] = []
        self.closed = False
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.auto_credit = auto_credit
        self.remote_settings_seen = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        path: str,
        method: str = "GET",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        end: bool = True,
        extra_pseudo: list[tuple[str, str]] | None = None,
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        fields = [
            (":method", method),
            *(extra_pseudo or []),
            (":path", path),
            (":scheme", "http"),
            (":authority", "localhost"),
            *(headers or []),
        ]
        encoded = [(k.encode(), v.encode()) for k, v in fields]
        self.streams[stream_id] = Stream()
        self.conn.send_headers(stream_id, encoded, end_stream=end and body is None)
        if body is not None:
            self.send_data(stream_id, body, end)
        self.flush()
        return stream_id

    def send_data(self, stream_id: int, body: bytes, end: bool) -> int:
        """Send what the windows allow; the bytes sent."""
        room = min(self.conn.local_flow_control_window(stream_id), len(body))
        frame = self.conn.max_outbound_frame_size
        sent = 0
        while sent < room:
            n = min(frame, room - sent)
            self.conn.send_data(stream_id, body[sent : sent + n])
            sent += n
        if end and sent == len(body):
            self.conn.end_stream(stream_id)
        self.flush()
        return sent

    def read_once(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self.events.append(event)
            self.on_event(event)
        self.flush()
        return True

    def on_event(self, event: Any) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            stream.headers = list(event.headers)
        elif isinstance(event, h2.events.InformationalResponseReceived) and stream is not None:
            stream.informational.append(list(event.headers))
        elif isinstance(event, h2.events.TrailersReceived) and stream is not None:
            stream.trailers = list(event.headers)
        elif isinstance(event, h2.events.DataReceived) and stream is not None:
            stream.data += event.data
            if self.auto_credit and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            stream.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.remote_settings_seen = True

    def wait(self, condition: Callable[[], object], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.closed:
                raise AssertionError("the server closed the connection")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {condition}")
            self.read_once(0.2)

    def done(self, stream_id: int) -> bool:
        stream = self.streams[stream_id]
        return stream.ended or stream.reset is not None

    def get(self, path: str, **kwargs: Any) -> Stream:
        stream_id = self.request(path, **kwargs)
        self.wait(lambda: self.done(stream_id))
        return self.streams[stream_id]

    def read_until_closed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError("the server did not close the connection")
            self.read_once(0.2)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ENABLE_CONNECT_PROTOCOL = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
