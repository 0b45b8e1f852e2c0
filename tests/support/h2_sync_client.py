"""A small blocking HTTP/2 client on the h2 library, over a socket the test opened (plain or
TLS): requests with bodies, and the raw stream calls the RFC 8441 WebSocket test needs.

It acknowledges every DATA frame it receives (so large responses keep flowing) and sends
request bodies only as the server's windows allow.

What this module must never do: hide a protocol error (every h2 exception reaches the test),
or wait without the socket's timeout.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import h2.events as h2e
from h2.config import H2Configuration
from h2.connection import H2Connection


@dataclass
class Stream:
    headers: list[tuple[str, str]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the error code of a RST_STREAM from the server

    @property
    def status(self) -> int:
        return int(dict(self.headers)[":status"])

    def header(self, name: str) -> str | None:
        return dict(self.headers).get(name)


class H2Client:
    def __init__(self, sock: socket.socket, authority: str, scheme: str = "http") -> None:
        self.sock = sock
        self.authority = authority
        self.scheme = scheme
        config = H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = H2Connection(config=config)
        self.streams: dict[int, Stream] = {}
        self.settings_seen = False
        self.goaway: h2e.ConnectionTerminated | None = None
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self) -> list[Any]:
        """Read once from the socket and take in what came; ConnectionError when it closed."""
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        events = self.conn.receive_data(data)
        for event in events:
            self._record(event)
        self.flush()
        return events

    def _record(self, event: Any) -> None:
        if isinstance(event, h2e.RemoteSettingsChanged):
            self.settings_seen = True
        elif isinstance(event, h2e.ConnectionTerminated):
            self.goaway = event
        stream_id = getattr(event, "stream_id", None)
        if not stream_id:
            return
        stream = self.streams.setdefault(stream_id, Stream())
        if isinstance(event, (h2e.ResponseReceived, h2e.TrailersReceived)):
            stream.headers += list(event.headers)
        elif isinstance(event, h2e.DataReceived):
            stream.data += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2e.StreamReset):
            stream.reset = event.error_code
            stream.ended = True
        elif isinstance(event, h2e.StreamEnded):
            stream.ended = True

    def wait_settings(self) -> None:
        while not self.settings_seen:
            self.pump()

    def open(self, method: str, path: str, headers: list[tuple[str, str]], end: bool) -> int:
        """Send a request head on a new stream; returns the stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        head = [
            (":method", method),
            (":scheme", self.scheme),
            (":authority", self.authority),
            (":path", path),
            *headers,
        ]
        self.streams[stream_id] = Stream()
        self.conn.send_headers(stream_id, head, end_stream=end)
        self.flush()
        return stream_id

    def send_body(self, stream_id: int, body: bytes, end: bool = True) -> None:
        """Send `body` as the windows allow, reading the server's WINDOW_UPDATEs meanwhile."""
        view = memoryview(body)
        while view:
            window = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                self.pump()
                continue
            self.conn.send_data(stream_id, bytes(view[:window]))
            view = view[window:]
            self.flush()
        if end:
            self.conn.end_stream(stream_id)
            self.flush()

    def wait_data(self, stream_id: int, size: int) -> bytes:
        """At least `size` bytes of the stream's DATA (all of it is taken)."""
        stream = self.streams[stream_id]
        while len(stream.data) < size and not stream.ended:
            self.pump()
        data = bytes(stream.data)
        stream.data.clear()
        return data

    def wait_end(self, stream_id: int) -> Stream:
        stream = self.streams[stream_id]
        while not stream.ended:
            self.pump()
        return stream

    def wait_headers(self, stream_id: int) -> Stream:
        stream = self.streams[stream_id]
        while not stream.headers and not stream.ended:
            self.pump()
        return stream

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> Stream:
        stream_id = self.open(method, path, headers or [], end=not body)
        if body:
            self.send_body(stream_id, body)
        return self.wait_end(stream_id)
