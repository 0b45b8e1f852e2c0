"""A raw HTTP/2 client for protocol tests: exact frames out, parsed frames in.

Built on hyperframe (frames) and hpack (field blocks) rather than on the h2 library's client,
so a test can send what no well-behaved client would: frames of the wrong length, frames on the
wrong stream, header blocks that break HPACK, floods. `frame` builds any frame byte by byte;
`FrameReader` turns the server's bytes back into frames (the sans-IO tests use it on
`H2Session.output()`); `H2Client` does the same over a loopback socket, keeps each stream's
response, and waits for a condition with a deadline instead of sleeping.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6) and flags, for frames built by hand.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# Error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x4, 0x5, 0x6, 0x7
CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = 0x8, 0x9, 0xA, 0xB

# SETTINGS identifiers (RFC 9113 §6.5.2).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Any frame, with whatever length its payload has (the length field is not checked)."""
    return (
        struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream_id) + payload
    )


def settings(values: dict[int, int] | None = None, ack: bool = False) -> bytes:
    payload = b"".join(struct.pack(">HI", k, v) for k, v in (values or {}).items())
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def rst_stream(stream_id: int, code: int = CANCEL) -> bytes:
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def ping(data: bytes = b"12345678", ack: bool = False) -> bytes:
    return frame(PING, ACK if ack else 0, 0, data)


def priority(
    stream_id: int, depends_on: int = 0, weight: int = 15, exclusive: bool = False
) -> bytes:
    dependency = depends_on | (0x80000000 if exclusive else 0)
    return frame(PRIORITY, 0, stream_id, struct.pack(">IB", dependency, weight))


def request_fields(
    path: str = "/", method: str = "GET", extra: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    base = [(":method", method), (":scheme", "http"), (":authority", "localhost"), (":path", path)]
    return [*base, *extra]


class FrameReader:
    """Bytes in, frames out; frame types hyperframe does not know come as ExtensionFrame."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= 9:
            header = memoryview(bytes(self.buffer[:9]))
            parsed, length = Frame.parse_frame_header(header)
            if len(self.buffer) < 9 + length:
                break
            parsed.parse_body(memoryview(bytes(self.buffer[9 : 9 + length])))
            del self.buffer[: 9 + length]
            frames.append(parsed)
        return frames


@dataclass
class Stream:
    """What the server sent on one stream."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the RST_STREAM error code

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"]) if self.headers else 0

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class H2Client:
    """One HTTP/2 connection to a server on 127.0.0.1, by prior knowledge.

    Every frame the server sends is kept in `frames`; HEADERS/DATA/RST_STREAM also update
    `streams`. The client acknowledges the server's SETTINGS, and returns the window of each
    DATA frame at once unless `auto_window` is false (to leave the server's window closed).
    """

    def __init__(
        self,
        port: int,
        settings_values: dict[int, int] | None = None,
        timeout: float = 10.0,
        auto_window: bool = True,
        preface: bool = True,
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.auto_window = auto_window
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.reader = FrameReader()
        self.frames: list[Frame] = []
        self.streams: dict[int, Stream] = {}
        self.server_settings: dict[int, int] = {}
        self.closed = False  # the server closed (or reset) the connection
        self.next_stream_id = 1
        self._block: list[Frame] = []  # a header block still waiting for CONTINUATION
        if preface:
            self.send(PREFACE + settings(settings_values))

    # ---- sending ----------------------------------------------------------------------------

    def send(self, *chunks: bytes) -> bool:
        """False when the server has closed the connection already."""
        self.sock.settimeout(self.timeout)
        try:
            self.sock.sendall(b"".join(chunks))
        except OSError:
            self.closed = True
            return False
        return True

    def block(self, fields: Iterable[tuple[str, str]]) -> bytes:
        return bytes(self.encoder.encode(list(fields)))

    def headers(
        self,
        stream_id: int,
        extra: Iterable[tuple[str, str]] | None = None,
        end: bool = True,
        path: str = "/",
    ) -> bytes:
        """A request head as one HEADERS frame: GET with END_STREAM, else POST."""
        fields = request_fields(path, "GET" if end else "POST", extra or ())
        return frame(
            HEADERS, END_HEADERS | (END_STREAM if end else 0), stream_id, self.block(fields)
        )

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        extra: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> int:
        """Open a stream with a request (and its body), return its id."""
        stream_id = self.next_stream_id
        self.next_stream_id += 2
        flags = END_HEADERS | (END_STREAM if body is None else 0)
        out = frame(HEADERS, flags, stream_id, self.block(request_fields(path, method, extra)))
        if body is not None:
            out += frame(DATA, END_STREAM, stream_id, body)
        self.send(out)
        return stream_id

    # ---- receiving --------------------------------------------------------------------------

    def read_until(self, condition: Callable[[], object], timeout: float | None = None) -> bool:
        """Read frames until `condition()` is true (True) or the server closes (False);
        fail when neither happens before the deadline."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not condition():
            if self.closed:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {condition} within the deadline; frames: {self.frames}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # a reset counts as closed
                data = b""
            if not data:
                self.closed = True
                continue
            for parsed in self.reader.feed(data):
                self.handle(parsed)
        return True

    def pump(self) -> None:
        """Handle whatever the server has sent so far, without waiting for more."""
        while not self.closed:
            self.sock.settimeout(0)
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return
            for parsed in self.reader.feed(data):
                self.handle(parsed)

    def handle(self, parsed: Frame) -> None:
        self.frames.append(parsed)
        stream = self.streams.setdefault(parsed.stream_id, Stream()) if parsed.stream_id else None
        if isinstance(parsed, SettingsFrame) and "ACK" not in parsed.flags:
            self.server_settings.update(parsed.settings)
            self.send(settings(ack=True))
        elif isinstance(parsed, (HeadersFrame, ContinuationFrame)):
            self._block.append(parsed)
            if "END_HEADERS" in parsed.flags:
                first = self._block[0]
                fields = self.decoder.decode(b"".join(f.data for f in self._block), raw=True)
                self._block = []
                assert stream is not None
                if stream.headers:
                    stream.trailers = fields
                else:
                    stream.headers = fields
                stream.ended = stream.ended or "END_STREAM" in first.flags
        elif isinstance(parsed, DataFrame):
            assert stream is not None
            stream.body += parsed.data
            stream.ended = stream.ended or "END_STREAM" in parsed.flags
            if self.auto_window and parsed.flow_controlled_length:
                size = parsed.flow_controlled_length
                self.send(window_update(0, size), window_update(parsed.stream_id, size))
        elif isinstance(parsed, RstStreamFrame):
            assert stream is not None
            stream.reset = parsed.error_code

    def stream(self, stream_id: int) -> Stream:
        return self.streams.setdefault(stream_id, Stream())

    def response(self, stream_id: int, timeout: float | None = None) -> Stream:
        """Wait for the stream to end (or be reset); fail if the connection closes first."""
        stream = self.stream(stream_id)
        if not self.read_until(lambda: stream.done, timeout):
            raise AssertionError(
                f"connection closed before stream {stream_id} ended: {self.frames}"
            )
        return stream

    def answer(self, stream_id: int) -> None:
        """Wait for the response of a request sent with END_STREAM: the stream is closed."""
        self.response(stream_id)

    def goaway(self, timeout: float | None = None) -> GoAwayFrame | None:
        """Wait for the server's GOAWAY; None if it closes without one."""
        self.read_until(lambda: self.last_goaway() is not None, timeout)
        return self.last_goaway()

    def last_goaway(self) -> GoAwayFrame | None:
        found = [f for f in self.frames if isinstance(f, GoAwayFrame)]
        return found[-1] if found else None

    def wait_closed(self, timeout: float | None = None) -> None:
        self.read_until(lambda: False, timeout)

    def ping_pong(self, data: bytes = b"pingpong", timeout: float | None = None) -> bool:
        """True when the server answers a PING (the connection is alive and read)."""
        self.send(ping(data))
        return self.read_until(lambda: self.ponged(data), timeout)

    def ponged(self, data: bytes) -> bool:
        return any(
            isinstance(f, PingFrame) and "ACK" in f.flags and f.opaque_data == data
            for f in self.frames
        )

    def resets(self) -> dict[int, int]:
        return {f.stream_id: f.error_code for f in self.frames if isinstance(f, RstStreamFrame)}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
