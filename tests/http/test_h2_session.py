"""H2Session without sockets: h2spec's cases (RFC 9113, RFC 7541) and the attack budgets.

Each case feeds the session hand-made frames (tests/support/h2_client.py builds them byte by
byte, so lengths, stream ids and HPACK can be wrong on purpose) and asserts the exact answer in
the bytes the session gives back: a GOAWAY with its error code, an RST_STREAM with its code, a
response status, or nothing but the usual acknowledgements. Case names carry h2spec's section
numbers (`generic/…`, `http2/…`, `hpack/…`) so docs/http2.md can list what is covered.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import hpack
import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from corral.http.h2 import (
    BodyData,
    BodyEnded,
    H2Limits,
    H2Session,
    StreamAborted,
    StreamOpened,
    WindowOpened,
)
from corral.http.parser import Limits
from support.h2_client import (
    ACK,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    NO_ERROR,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    STREAM_CLOSED,
    WINDOW_UPDATE,
    FrameReader,
    frame,
    ping,
    priority,
    rst_stream,
    settings,
    window_update,
)

HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def string(value: bytes, huffman: bool = False) -> bytes:
    """An HPACK string literal (RFC 7541 §5.2) with a length below 127."""
    if huffman:
        value = HUFFMAN.encode(value)
    assert len(value) < 127
    return bytes([(0x80 if huffman else 0) | len(value)]) + value


# :method GET, :scheme http, :path / from the static table, :authority as a literal.
BASE = b"\x82\x86\x84" + b"\x41" + string(b"localhost")


class Peer:
    """A client that talks to an H2Session through bytes only."""

    def __init__(self, **limits: object) -> None:
        self.session = H2Session(H2Limits(**limits))  # type: ignore[arg-type]
        self.session.start()
        self.reader = FrameReader()
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.frames: list[Frame] = []
        self.events: list[object] = []
        self.now = 0.0
        self.send(PREFACE + settings())

    def send(self, *chunks: bytes) -> list[object]:
        events = self.session.receive(b"".join(chunks), self.now)
        self.events += events
        self.collect()
        return events

    def collect(self) -> None:
        self.frames += self.reader.feed(self.session.output())

    def block(self, fields: list[tuple[str, str]]) -> bytes:
        return bytes(self.encoder.encode(fields))

    def headers(
        self, stream_id: int, extra: list[tuple[str, str]] | None = None, end: bool = True
    ) -> bytes:
        fields = [(":method", "GET" if end else "POST"), (":scheme", "http")]
        fields += [(":authority", "localhost"), (":path", "/"), *(extra or [])]
        flags = END_HEADERS | (END_STREAM if end else 0)
        return frame(HEADERS, flags, stream_id, self.block(fields))

    def respond(self, stream_id: int, end: bool = True) -> None:
        assert self.session.respond(stream_id, 200, [(b"content-length", b"0")], end=end)
        self.session.finished(stream_id)
        self.collect()

    # ---- what the session said --------------------------------------------------------------

    def goaway(self) -> GoAwayFrame | None:
        found = [f for f in self.frames if isinstance(f, GoAwayFrame)]
        return found[-1] if found else None

    def resets(self) -> dict[int, int]:
        return {f.stream_id: f.error_code for f in self.frames if isinstance(f, RstStreamFrame)}

    def status(self, stream_id: int) -> int:
        for f in self.frames:
            if isinstance(f, HeadersFrame) and f.stream_id == stream_id:
                return int(dict(self.decoder.decode(f.data, raw=True))[b":status"])
        return 0

    def opened(self) -> list[StreamOpened]:
        return [e for e in self.events if isinstance(e, StreamOpened)]

    def alive(self) -> bool:
        """The connection still works: a PING is answered, and no GOAWAY was sent."""
        before = len(self.frames)
        self.send(ping(b"alive?!!"))
        acks = [
            f
            for f in self.frames[before:]
            if isinstance(f, PingFrame) and "ACK" in f.flags and f.opaque_data == b"alive?!!"
        ]
        return bool(acks) and self.goaway() is None and not self.session.ended


# ---- the cases ------------------------------------------------------------------------------
# Each case takes a fresh Peer (preface and SETTINGS exchanged) and sends its frames; the
# expectation is ("goaway", code), ("reset", stream, code), ("status", stream, status) or
# ("alive",): no GOAWAY, no RST_STREAM, and a PING still answered.

Case = Callable[[Peer], object]


def open_post(p: Peer, stream_id: int = 1) -> None:
    p.send(p.headers(stream_id, end=False))


def answered_get(p: Peer, stream_id: int = 1) -> None:
    """A stream closed at both ends: the request had END_STREAM and the response too."""
    p.send(p.headers(stream_id))
    p.respond(stream_id)


def reset_get(p: Peer, stream_id: int = 1) -> None:
    p.send(p.headers(stream_id, end=False), rst_stream(stream_id))


def half_closed_remote(p: Peer, stream_id: int = 1) -> None:
    p.send(p.headers(stream_id))  # the handler has not answered yet


def header_block_open(p: Peer) -> None:
    p.send(frame(HEADERS, END_STREAM, 1, p.block([(":method", "GET")])))


def continuation(p: Peer, stream_id: int, end: bool = True) -> bytes:
    rest = [(":scheme", "http"), (":authority", "localhost"), (":path", "/")]
    return frame(CONTINUATION, END_HEADERS if end else 0, stream_id, p.block(rest))


def both(*steps: Case) -> Case:
    def run(p: Peer) -> None:
        for step in steps:
            step(p)

    return run


def raw_headers(block: bytes, stream_id: int = 1) -> Case:
    return lambda p: p.send(frame(HEADERS, END_HEADERS | END_STREAM, stream_id, block))


def fields(*extra: tuple[str, str], base: bool = True, order: str = "") -> Case:
    """A request whose fields are the base request (unless `base` is false) and `extra`."""
    start = [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", "/")]
    # Without `base`, :authority still comes, so that only the fields under test are wrong.
    listed = [*start, *extra] if base else [*extra, (":authority", "localhost")]
    if order == "regular-first":
        listed = [*extra, *start]
    return lambda p: p.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, p.block(listed)))


CASES: dict[str, tuple[Case, tuple[object, ...]]] = {
    # -- http2/3.5: the connection preface (the server's SETTINGS is its preface) --
    "http2/3.5/1 preface answered with SETTINGS": (lambda p: None, ("alive",)),
    # -- http2/4.1: frame format --
    "http2/4.1/1 unknown frame type ignored": (
        lambda p: p.send(frame(0x77, 0, 0, b"extension")),
        ("alive",),
    ),
    "http2/4.1/2 undefined flags ignored": (
        lambda p: p.send(frame(PING, 0x16, 0, b"flagged!")),
        ("alive",),
    ),
    "http2/4.1/3 reserved bit ignored": (
        lambda p: p.send(frame(PING, 0, 0x80000000, b"reserved")),
        ("alive",),
    ),
    # -- http2/4.2: frame size --
    "http2/4.2/1 DATA of 2^14 octets accepted": (
        lambda p: (open_post(p), p.send(frame(DATA, END_STREAM, 1, b"x" * 16384))),
        ("alive",),
    ),
    "http2/4.2/2 DATA over SETTINGS_MAX_FRAME_SIZE": (
        lambda p: (open_post(p), p.send(frame(DATA, END_STREAM, 1, b"x" * 16385))),
        ("goaway", FRAME_SIZE_ERROR),
    ),
    "http2/4.2/3 HEADERS over SETTINGS_MAX_FRAME_SIZE": (
        lambda p: p.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, BASE + b"\x00" * 16385)),
        ("goaway", FRAME_SIZE_ERROR),
    ),
    # -- http2/4.3: header compression --
    "http2/4.3/1 invalid header block fragment": (
        raw_headers(BASE + b"\x41"),  # a literal whose value never comes
        ("goaway", COMPRESSION_ERROR),
    ),
    "http2/4.3/2 PRIORITY inside a header block": (
        lambda p: (header_block_open(p), p.send(priority(1))),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/4.3/3 HEADERS of another stream inside a header block": (
        lambda p: (header_block_open(p), p.send(p.headers(3))),
        ("goaway", PROTOCOL_ERROR),
    ),
    # -- http2/5.1: stream states --
    "http2/5.1/1 DATA on an idle stream": (
        lambda p: p.send(frame(DATA, END_STREAM, 1, b"x")),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/5.1/2 RST_STREAM on an idle stream": (
        lambda p: p.send(rst_stream(1)),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/5.1/3 WINDOW_UPDATE on an idle stream": (
        lambda p: p.send(window_update(1, 100)),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/5.1/4 CONTINUATION on an idle stream": (
        lambda p: p.send(continuation(p, 1)),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/5.1/5 DATA on a half-closed (remote) stream": (
        lambda p: (half_closed_remote(p), p.send(frame(DATA, END_STREAM, 1, b"x"))),
        ("reset", 1, STREAM_CLOSED),
    ),
    "http2/5.1/6 HEADERS on a half-closed (remote) stream": (
        lambda p: (half_closed_remote(p), p.send(p.headers(1))),
        ("reset", 1, STREAM_CLOSED),
    ),
    "http2/5.1/7 CONTINUATION on a half-closed (remote) stream": (
        lambda p: (half_closed_remote(p), p.send(continuation(p, 1))),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/5.1/8 DATA after RST_STREAM": (
        lambda p: (reset_get(p), p.send(frame(DATA, END_STREAM, 1, b"x"))),
        ("reset", 1, STREAM_CLOSED),
    ),
    "http2/5.1/9 HEADERS after RST_STREAM": (
        lambda p: (reset_get(p), p.send(p.headers(1))),
        ("reset", 1, STREAM_CLOSED),
    ),
    "http2/5.1/10 CONTINUATION after RST_STREAM": (
        # h2 has forgotten the reset stream by then: a stream error, not §6.10's PROTOCOL_ERROR.
        lambda p: (reset_get(p), p.send(continuation(p, 1))),
        ("reset", 1, STREAM_CLOSED),
    ),
    "http2/5.1/11 DATA after END_STREAM": (
        lambda p: (answered_get(p), p.send(frame(DATA, END_STREAM, 1, b"x"))),
        ("reset", 1, STREAM_CLOSED),
    ),
    "http2/5.1/12 HEADERS after END_STREAM": (
        lambda p: (answered_get(p), p.send(p.headers(1))),
        ("goaway", STREAM_CLOSED),
    ),
    "http2/5.1/13 CONTINUATION after END_STREAM": (
        lambda p: (answered_get(p), p.send(continuation(p, 1))),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/5.1.1/1 even-numbered stream id": (
        lambda p: p.send(p.headers(2)),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/5.1.1/2 stream id lower than a previous one": (
        lambda p: (answered_get(p, 5), p.send(p.headers(3))),
        ("goaway", PROTOCOL_ERROR),
    ),
    # -- http2/5.3: priority (deprecated by RFC 9113, still checked for self-dependency) --
    "http2/5.3.1/1 HEADERS depending on itself": (
        lambda p: p.send(
            frame(
                HEADERS,
                END_HEADERS | END_STREAM | PRIORITY_FLAG,
                1,
                struct.pack(">IB", 1, 15) + BASE,
            )
        ),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/5.3.1/2 PRIORITY depending on itself": (
        lambda p: p.send(priority(1, depends_on=1)),
        ("goaway", PROTOCOL_ERROR),
    ),
    # -- http2/5.4: error handling --
    "http2/5.4.1/1 invalid PING closes the connection": (
        lambda p: p.send(frame(PING, 0, 0, b"short")),
        ("goaway", FRAME_SIZE_ERROR),
    ),
    # -- http2/5.5: extending HTTP/2 --
    "http2/5.5/1 unknown extension frame ignored": (
        lambda p: p.send(frame(0xFF, 0xFF, 0, b"\x00" * 8)),
        ("alive",),
    ),
    "http2/5.5/2 unknown extension frame inside a header block": (
        lambda p: (header_block_open(p), p.send(frame(0xFF, 0, 1, b"x"))),
        ("goaway", PROTOCOL_ERROR),
    ),
    # -- http2/6.1: DATA --
    "http2/6.1/1 DATA on stream 0": (
        lambda p: p.send(frame(DATA, 0, 0, b"x")),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.1/2 DATA on a stream not open": (
        lambda p: (half_closed_remote(p), p.send(frame(DATA, 0, 1, b"x"))),
        ("reset", 1, STREAM_CLOSED),
    ),
    "http2/6.1/3 DATA with a pad length beyond the payload": (
        lambda p: (open_post(p), p.send(frame(DATA, PADDED | END_STREAM, 1, b"\x06abc"))),
        ("goaway", PROTOCOL_ERROR),
    ),
    # -- http2/6.2: HEADERS --
    "http2/6.2/1 HEADERS without END_HEADERS then PRIORITY": (
        lambda p: (header_block_open(p), p.send(priority(1))),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.2/2 HEADERS without END_HEADERS then HEADERS on another stream": (
        lambda p: (header_block_open(p), p.send(p.headers(3))),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.2/3 HEADERS on stream 0": (
        raw_headers(BASE, stream_id=0),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.2/4 HEADERS with a pad length beyond the payload": (
        lambda p: p.send(frame(HEADERS, END_HEADERS | END_STREAM | PADDED, 1, b"\xff" + BASE)),
        ("goaway", PROTOCOL_ERROR),
    ),
    # -- http2/6.3: PRIORITY --
    "http2/6.3/1 PRIORITY on stream 0": (
        lambda p: p.send(priority(0, depends_on=1)),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.3/2 PRIORITY of length 4": (
        lambda p: p.send(frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00")),
        ("goaway", FRAME_SIZE_ERROR),
    ),
    # -- http2/6.4: RST_STREAM --
    "http2/6.4/1 RST_STREAM on stream 0": (
        lambda p: p.send(rst_stream(0)),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.4/2 RST_STREAM on an idle stream": (
        lambda p: p.send(rst_stream(3)),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.4/3 RST_STREAM of length 3": (
        lambda p: (open_post(p), p.send(frame(RST_STREAM, 0, 1, b"\x00\x00\x08"))),
        ("goaway", FRAME_SIZE_ERROR),
    ),
    # -- http2/6.5: SETTINGS --
    "http2/6.5/1 SETTINGS ACK with a payload": (
        lambda p: p.send(frame(SETTINGS, ACK, 0, b"\x00\x01\x00\x00\x10\x00")),
        ("goaway", FRAME_SIZE_ERROR),
    ),
    "http2/6.5/2 SETTINGS on a stream": (
        lambda p: p.send(frame(SETTINGS, 0, 1, b"")),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.5/3 SETTINGS of length 5": (
        lambda p: p.send(frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00")),
        ("goaway", FRAME_SIZE_ERROR),
    ),
    "http2/6.5.2/1 SETTINGS_ENABLE_PUSH of 2": (
        lambda p: p.send(settings({0x2: 2})),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.5.2/2 SETTINGS_INITIAL_WINDOW_SIZE of 2^31": (
        lambda p: p.send(settings({0x4: 2**31})),
        ("goaway", FLOW_CONTROL_ERROR),
    ),
    "http2/6.5.2/3 SETTINGS_MAX_FRAME_SIZE of 16383": (
        lambda p: p.send(settings({0x5: 16383})),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.5.2/4 SETTINGS_MAX_FRAME_SIZE of 2^24": (
        lambda p: p.send(settings({0x5: 2**24})),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.5.2/5 unknown SETTINGS identifier ignored": (
        lambda p: p.send(settings({0xFF: 1})),
        ("alive",),
    ),
    # -- http2/6.7: PING --
    "http2/6.7/2 PING with ACK is not answered": (
        lambda p: p.send(ping(b"ackedack", ack=True)),
        ("alive",),
    ),
    "http2/6.7/3 PING on a stream": (
        lambda p: p.send(frame(PING, 0, 1, b"12345678")),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.7/4 PING of length 9": (
        lambda p: p.send(frame(PING, 0, 0, b"123456789")),
        ("goaway", FRAME_SIZE_ERROR),
    ),
    # -- http2/6.8: GOAWAY --
    "http2/6.8/1 GOAWAY on a stream": (
        lambda p: p.send(frame(GOAWAY, 0, 1, struct.pack(">II", 0, 0))),
        ("goaway", PROTOCOL_ERROR),
    ),
    # -- http2/6.9: WINDOW_UPDATE --
    "http2/6.9/1 WINDOW_UPDATE of 0 on the connection": (
        lambda p: p.send(window_update(0, 0)),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.9/2 WINDOW_UPDATE of 0 on a stream": (
        lambda p: (open_post(p), p.send(window_update(1, 0))),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.9/3 WINDOW_UPDATE of length 3": (
        lambda p: p.send(frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01")),
        ("goaway", FRAME_SIZE_ERROR),
    ),
    "http2/6.9.1/2 connection window past 2^31-1": (
        lambda p: p.send(window_update(0, 2**31 - 1), window_update(0, 2**31 - 1)),
        ("goaway", FLOW_CONTROL_ERROR),
    ),
    "http2/6.9.1/3 stream window past 2^31-1": (
        lambda p: (open_post(p), p.send(window_update(1, 2**31 - 1))),
        ("reset", 1, FLOW_CONTROL_ERROR),
    ),
    "http2/6.9.2/3 SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1": (
        lambda p: p.send(settings({0x4: 2**31})),
        ("goaway", FLOW_CONTROL_ERROR),
    ),
    "corral: DATA beyond the stream window the server granted": (
        lambda p: (
            open_post(p),
            p.send(*(frame(DATA, 0, 1, b"x" * 16384) for _ in range(5))),
        ),
        ("goaway", FLOW_CONTROL_ERROR),
    ),
    # -- http2/6.10: CONTINUATION --
    "http2/6.10/2 CONTINUATION followed by a non-CONTINUATION frame": (
        lambda p: (
            header_block_open(p),
            p.send(frame(CONTINUATION, 0, 1, b""), frame(DATA, 0, 1, b"x")),
        ),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.10/3 CONTINUATION on stream 0": (
        lambda p: (header_block_open(p), p.send(frame(CONTINUATION, END_HEADERS, 0, b""))),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.10/4 CONTINUATION after a HEADERS with END_HEADERS": (
        lambda p: (open_post(p), p.send(continuation(p, 1))),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.10/5 CONTINUATION after a CONTINUATION with END_HEADERS": (
        lambda p: (
            header_block_open(p),
            p.send(continuation(p, 1), frame(CONTINUATION, END_HEADERS, 1, b"")),
        ),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/6.10/6 CONTINUATION after DATA": (
        lambda p: (
            open_post(p),
            p.send(frame(DATA, 0, 1, b"x"), frame(CONTINUATION, END_HEADERS, 1, b"")),
        ),
        ("goaway", PROTOCOL_ERROR),
    ),
    # -- http2/7: error codes --
    "http2/7/1 GOAWAY with an unknown error code": (
        lambda p: p.send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0xFF))),
        ("peer-goaway",),
    ),
    "http2/7/2 RST_STREAM with an unknown error code": (
        lambda p: (open_post(p), p.send(rst_stream(1, 0xFF))),
        ("alive",),
    ),
    # -- http2/8.1: HTTP request/response exchange --
    "http2/8.1/1 second HEADERS without END_STREAM": (
        lambda p: (
            open_post(p),
            p.send(frame(HEADERS, END_HEADERS, 1, p.block([("x-trailer", "1")]))),
        ),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2/1 upper-case field name": (
        fields(("X-Upper", "1")),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.1/1 unknown pseudo-header": (
        fields((":foo", "bar")),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.1/2 response pseudo-header in a request": (
        fields((":status", "200")),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.1/3 pseudo-header in trailers": (
        lambda p: (
            open_post(p),
            p.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, p.block([(":path", "/x")]))),
        ),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.1/4 pseudo-header after a regular field": (
        fields(("x-first", "1"), order="regular-first"),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.2/1 connection-specific field": (
        fields(("connection", "keep-alive")),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.2/2 TE other than trailers": (
        fields(("te", "gzip")),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/1 empty :path": (
        fields((":method", "GET"), (":scheme", "http"), (":path", ""), base=False),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/2 no :method": (
        fields((":scheme", "http"), (":path", "/"), base=False),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/3 no :scheme": (
        fields((":method", "GET"), (":path", "/"), base=False),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/4 no :path": (
        fields((":method", "GET"), (":scheme", "http"), base=False),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/5 duplicated :method": (
        fields(
            (":method", "GET"), (":method", "GET"), (":scheme", "http"), (":path", "/"), base=False
        ),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/6 duplicated :scheme": (
        fields(
            (":method", "GET"), (":scheme", "http"), (":scheme", "http"), (":path", "/"), base=False
        ),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/7 duplicated :path": (
        fields((":method", "GET"), (":scheme", "http"), (":path", "/"), (":path", "/"), base=False),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.6/1 content-length larger than the DATA": (
        lambda p: p.send(
            p.headers(1, [("content-length", "10")], end=False), frame(DATA, END_STREAM, 1, b"abc")
        ),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2.6/2 content-length smaller than the DATA frames": (
        lambda p: p.send(
            p.headers(1, [("content-length", "2")], end=False),
            frame(DATA, 0, 1, b"abc"),
            frame(DATA, END_STREAM, 1, b"def"),
        ),
        ("goaway", PROTOCOL_ERROR),
    ),
    "corral: control character in a field value": (
        fields(("x-bad", "a\x01b")),
        ("status", 1, 400),
    ),
    "http2/8.1.2/2 space at the end of a field value (RFC 9113 §8.2.1)": (
        fields(("x-bad", "value ")),
        ("goaway", PROTOCOL_ERROR),
    ),
    "http2/8.1.2/3 :authority and Host that differ (RFC 9113 §8.3.1)": (
        fields(("host", "elsewhere")),
        ("goaway", PROTOCOL_ERROR),
    ),
    "corral: DEL in a field value": (
        fields(("x-bad", "a\x7fb")),
        ("status", 1, 400),
    ),
    "corral: :path that is not origin-form": (
        fields((":method", "GET"), (":scheme", "http"), (":path", "/a#b"), base=False),
        ("status", 1, 400),
    ),
    # -- http2/8.2: server push --
    "http2/8.2/1 PUSH_PROMISE from a client": (
        lambda p: (
            open_post(p),
            p.send(frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + BASE)),
        ),
        ("goaway", PROTOCOL_ERROR),
    ),
    # -- hpack (RFC 7541) --
    "hpack/2.3.3/1 indexed field with an index past both tables": (
        raw_headers(BASE + b"\xff\x80\x01"),  # index 127 + 128 = 255; the dynamic table is empty
        ("goaway", COMPRESSION_ERROR),
    ),
    "hpack/2.3.3/2 literal field with a name index past both tables": (
        raw_headers(BASE + b"\x7f\x80\x01" + string(b"value")),
        ("goaway", COMPRESSION_ERROR),
    ),
    "hpack/4.2/1 table size update above SETTINGS_HEADER_TABLE_SIZE": (
        raw_headers(b"\x3f\xe2\x1f" + BASE),  # 4097 > 4096
        ("goaway", COMPRESSION_ERROR),
    ),
    "hpack/5.2/1 Huffman string containing EOS": (
        raw_headers(BASE + b"\x40" + string(b"x-eos") + b"\x84\xff\xff\xff\xff"),
        ("goaway", COMPRESSION_ERROR),
    ),
    "hpack/5.2/2 Huffman padding longer than 7 bits": (
        # "a" is 00011, then 3 bits of padding, then a whole byte of padding more.
        raw_headers(BASE + b"\x40" + string(b"x-pad") + b"\x82\x1f\xff"),
        ("goaway", COMPRESSION_ERROR),
    ),
    "hpack/5.2/3 Huffman padding that is not the EOS prefix": (
        raw_headers(BASE + b"\x40" + string(b"x-pad") + b"\x81\x18"),
        ("goaway", COMPRESSION_ERROR),
    ),
    "hpack/6.1/1 indexed field of index 0": (
        raw_headers(BASE + b"\x80"),
        ("goaway", COMPRESSION_ERROR),
    ),
    "hpack/6.3/1 table size update at the end of a block": (
        raw_headers(BASE + b"\x20"),
        ("goaway", COMPRESSION_ERROR),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_h2spec_case(name: str) -> None:
    send, expected = CASES[name]
    peer = Peer()
    send(peer)
    kind = expected[0]
    goaway = peer.goaway()
    if kind == "goaway":
        assert goaway is not None, f"no GOAWAY; frames: {peer.frames}"
        assert goaway.error_code == expected[1], goaway
        assert peer.session.ended
        assert peer.session.receive(peer.headers(101), 1.0) == []  # nothing after it
    elif kind == "reset":
        assert goaway is None, goaway
        assert peer.resets().get(expected[1]) == expected[2], peer.frames
        assert peer.alive()
    elif kind == "status":
        assert goaway is None, goaway
        assert peer.status(expected[1]) == expected[2], peer.frames
        assert not peer.opened()  # the application never sees it
        assert peer.alive()
    elif kind == "peer-goaway":
        assert peer.session.ended and peer.session.error.startswith("peer sent GOAWAY")
        assert goaway is None
    else:
        assert not peer.resets(), peer.frames
        assert peer.alive(), peer.frames


# ---- generic: what a conforming client sends is served ---------------------------------------


def request_of(peer: Peer, stream_id: int = 1) -> StreamOpened:
    [opened] = [e for e in peer.opened() if e.stream_id == stream_id]
    return opened


def literal(prefix: int, name: bytes | None, value: bytes, huffman: bool) -> bytes:
    """An HPACK literal field: `prefix` is its first byte with a new name (RFC 7541 §6.2)."""
    if name is None:  # the name by index: :authority (1) fits every prefix
        return bytes([prefix | 1]) + string(value, huffman)
    return bytes([prefix]) + string(name, huffman) + string(value, huffman)


# RFC 7541 §6.2.1 (0x40, incremental indexing), §6.2.2 (0x00, without), §6.2.3 (0x10, never).
REPRESENTATIONS = {
    f"hpack literal {kind} {'indexed' if idx else 'new'} name{' huffman' if huff else ''}": (
        prefix,
        idx,
        huff,
    )
    for kind, prefix in (("incremental", 0x40), ("without indexing", 0x00), ("never", 0x10))
    for idx in (True, False)
    for huff in (False, True)
}


@pytest.mark.parametrize("name", list(REPRESENTATIONS))
def test_generic_5_hpack_representations(name: str) -> None:
    """h2spec generic/5: every field representation decodes to the same request."""
    prefix, by_index, huffman = REPRESENTATIONS[name]
    peer = Peer()
    if by_index:
        block = b"\x82\x86\x84" + literal(prefix, None, b"example.org", huffman)
    else:
        block = BASE + literal(prefix, b"x-field", b"some value", huffman)
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    request = request_of(peer).request
    expected = ("HOST", "example.org") if by_index else ("X-FIELD", "some value")
    assert expected in request.headers
    assert peer.alive()


def test_generic_5_table_size_updates_then_the_dynamic_table() -> None:
    """generic/5.14-15: size updates at the start of a block; an indexed entry is reused."""
    peer = Peer()
    added = literal(0x40, b"x-kept", b"kept", False)
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x20\x3f\xe1\x1f" + BASE + added))
    # The table is now [:authority (62), x-kept (63)]; BASE adds :authority once more.
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, BASE + b"\xbf"))  # 63: x-kept
    for stream_id in (1, 3):
        assert ("X-KEPT", "kept") in request_of(peer, stream_id).request.headers
    assert peer.alive()


def test_generic_3_4_get_head_post_trailers_continuation_padding_priority() -> None:
    """generic/3 and /4: the frame features a client may use, each on its own stream."""
    peer = Peer()
    head = peer.block(
        [(":method", "HEAD"), (":scheme", "http"), (":authority", "h"), (":path", "/head")]
    )
    post = peer.block(
        [(":method", "POST"), (":scheme", "https"), (":authority", "h"), (":path", "/p?q=1")]
    )
    trailers = peer.block([("x-checksum", "abc")])
    split = peer.block(
        [(":method", "GET"), (":scheme", "http"), (":authority", "h"), (":path", "/split")]
    )
    padded = (
        b"\x04"
        + peer.block(
            [(":method", "GET"), (":scheme", "http"), (":authority", "h"), (":path", "/pad")]
        )
        + b"\x00" * 4
    )
    weighted = struct.pack(">IB", 0x80000000 | 3, 200) + peer.block(
        [(":method", "GET"), (":scheme", "http"), (":authority", "h"), (":path", "/prio")]
    )
    peer.send(
        frame(HEADERS, END_HEADERS | END_STREAM, 1, head),
        frame(HEADERS, END_HEADERS, 3, post),
        frame(DATA, PADDED, 3, b"\x03" + b"hello " + b"\x00" * 3),
        frame(DATA, 0, 3, b"world"),
        frame(HEADERS, END_HEADERS | END_STREAM, 3, trailers),
        frame(HEADERS, END_STREAM, 5, split[:3]),
        frame(CONTINUATION, 0, 5, split[3:5]),
        frame(CONTINUATION, END_HEADERS, 5, split[5:]),
        frame(HEADERS, END_HEADERS | END_STREAM | PADDED, 7, padded),
        priority(11, depends_on=0, weight=100),  # generic/3.3.5: PRIORITY on an idle stream
        frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 9, weighted),
        peer.headers(11),
    )
    targets = {e.stream_id: e.request.target for e in peer.opened()}
    assert targets == {1: "/head", 3: "/p?q=1", 5: "/split", 7: "/pad", 9: "/prio", 11: "/"}
    assert request_of(peer, 1).request.method == "HEAD" and request_of(peer, 1).ended
    assert not request_of(peer, 3).ended
    body = b"".join(e.data for e in peer.events if isinstance(e, BodyData) and e.stream_id == 3)
    assert body == b"hello world"
    assert 3 in [e.stream_id for e in peer.events if isinstance(e, BodyEnded)]
    assert peer.alive()


def test_generic_2_frames_on_half_closed_and_closed_streams_that_are_allowed() -> None:
    """generic/2: WINDOW_UPDATE, PRIORITY and RST_STREAM on a half-closed (remote) stream,
    PRIORITY on a closed one; http2/6.5.3/2 and 6.7/1: SETTINGS and PING are acknowledged."""
    peer = Peer()
    peer.send(peer.headers(1), peer.headers(3))
    peer.send(window_update(1, 1000), priority(1, depends_on=3), rst_stream(3))
    assert [e.stream_id for e in peer.events if isinstance(e, StreamAborted)] == [3]
    peer.respond(1)
    peer.send(priority(1, depends_on=0))
    before = len(peer.frames)
    peer.send(settings({0x4: 100000}), ping(b"\x01" * 8))
    answers = peer.frames[before:]
    assert any(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in answers)
    assert any(isinstance(f, PingFrame) and f.opaque_data == b"\x01" * 8 for f in answers)
    assert peer.alive()


def test_http2_6_9_1_1_a_window_of_one_byte_sends_one_byte() -> None:
    """http2/6.9.1/1 and 6.9.2/1-2: the peer's initial window rules DATA, also when it
    changes after the stream opened and when it turns negative."""
    peer = Peer()
    peer.send(settings({0x4: 1}), peer.headers(1))
    assert peer.session.respond(1, 200, [], end=False)
    assert peer.session.send_body(1, b"abc", end=True) == 1
    peer.collect()
    assert [f.data for f in peer.frames if isinstance(f, DataFrame)] == [b"a"]
    peer.send(settings({0x4: 0}))  # the window is now 0 - 1 = -1: nothing may go
    assert peer.session.window(1) == -1
    assert peer.session.send_body(1, b"bc", end=True) == 0
    peer.send(settings({0x4: 3}))  # -1 + 3
    assert any(isinstance(e, WindowOpened) for e in peer.events)
    assert peer.session.send_body(1, b"bc", end=True) == 2
    peer.collect()
    assert [f.data for f in peer.frames if isinstance(f, DataFrame)] == [b"a", b"bc"]
    assert peer.alive()


def test_request_body_is_credited_when_consumed_not_on_receipt() -> None:
    peer = Peer()
    open_post(peer)
    peer.send(frame(DATA, 0, 1, b"x" * 16384), frame(DATA, 0, 1, b"y" * 16384))
    updates = [f for f in peer.frames if isinstance(f, WindowUpdateFrame) and f.stream_id == 1]
    assert updates == []
    flows = [e.flow for e in peer.events if isinstance(e, BodyData)]
    assert flows == [16384, 16384]
    for flow in flows:
        peer.session.consumed(1, flow)
    peer.collect()
    granted = [f for f in peer.frames if isinstance(f, WindowUpdateFrame) and f.stream_id == 1]
    assert sum(f.window_increment for f in granted) == 32768
    assert peer.alive()


# ---- attacks --------------------------------------------------------------------------------


def test_rapid_reset_never_runs_more_handlers_than_the_limit_then_calm() -> None:
    """CVE-2023-44487: streams opened and reset at once. The handlers of reset streams keep
    their places until they finish, so at most the limit run; then GOAWAY ENHANCE_YOUR_CALM."""
    peer = Peer(max_concurrent_streams=10)
    sent = 0
    for stream_id in range(1, 20001, 2):
        peer.send(peer.headers(stream_id, end=False), rst_stream(stream_id))
        sent += 1
        if peer.session.ended:
            break
    goaway = peer.goaway()
    assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
    assert len(peer.opened()) == 10  # the handlers that never finished
    assert sent < 200  # the budget, not the peer, ended it


def test_rapid_reset_with_handlers_that_finish_is_calmed_by_the_reset_budget() -> None:
    peer = Peer(max_concurrent_streams=100)
    for stream_id in range(1, 20001, 2):
        events = peer.send(peer.headers(stream_id, end=False), rst_stream(stream_id))
        for event in events:  # the worker cancels each handler at once
            if isinstance(event, StreamAborted):
                peer.session.finished(event.stream_id)
        if peer.session.ended:
            break
    goaway = peer.goaway()
    assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
    assert len(peer.opened()) <= 201


def test_resets_at_a_modest_rate_are_fine() -> None:
    peer = Peer(max_concurrent_streams=100)
    for stream_id in range(1, 2001, 2):
        peer.now += 0.2  # five a second, for 200 seconds
        for event in peer.send(peer.headers(stream_id, end=False), rst_stream(stream_id)):
            if isinstance(event, StreamAborted):
                peer.session.finished(event.stream_id)
    assert peer.alive()
    assert len(peer.opened()) == 1000


@pytest.mark.parametrize(
    "flood",
    [
        pytest.param(lambda i: ping(struct.pack(">Q", i)), id="PING"),
        pytest.param(lambda i: settings({0x4: 65535 + i % 2}), id="SETTINGS"),
        pytest.param(lambda i: priority(1001 + 2 * i), id="PRIORITY"),
        pytest.param(lambda i: frame(0x42, 0, 0, b"x"), id="unknown-frame"),
        pytest.param(lambda i: frame(DATA, 0, 1, b""), id="empty-DATA"),
    ],
)
def test_control_frame_floods_are_calmed(flood: Callable[[int], bytes]) -> None:
    """A peer that sends thousands of frames that cost the server work (answers to write,
    even when it never reads them) gets GOAWAY ENHANCE_YOUR_CALM, and output stays bounded."""
    peer = Peer()
    open_post(peer)
    peer.session.output()
    for i in range(0, 5000, 100):
        peer.session.receive(b"".join(flood(j) for j in range(i, i + 100)), 0.0)
        if peer.session.ended:
            break
    assert peer.session.ended
    peer.collect()
    goaway = peer.goaway()
    assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
    acks = [f for f in peer.frames if isinstance(f, (PingFrame, SettingsFrame))]
    assert len(acks) <= 1100


@pytest.mark.parametrize(
    "flood",
    [
        pytest.param(lambda i: ping(struct.pack(">Q", i)), id="PING"),
        pytest.param(lambda i: settings({0x4: 65535 + i % 2}), id="SETTINGS"),
    ],
)
def test_control_frames_at_a_modest_rate_are_fine(flood: Callable[[int], bytes]) -> None:
    peer = Peer()
    for i in range(5000):
        peer.now += 0.02  # fifty a second
        peer.send(flood(i))
    assert peer.alive()


def test_hpack_bomb_is_refused_while_decoding() -> None:
    """One 4 KB entry in the dynamic table, then referenced by one byte each: the decoded
    list would be 40 MB; the decoder stops at http2_max_header_list_size."""
    peer = Peer(max_header_list_size=16384)
    # An entry of 6 + 4000 + 32 bytes (the length is 127 + 3873: RFC 7541 §5.1 integers).
    entry = b"\x40" + string(b"x-bomb") + b"\x7f\xa1\x1e" + b"b" * 4000
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, BASE + entry + b"\xbe" * 10000))
    goaway = peer.goaway()
    assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
    assert not peer.opened()


def test_header_list_just_within_the_limit_is_served() -> None:
    peer = Peer(max_header_list_size=16384)
    entry = b"\x40" + string(b"x-bomb") + b"\x7f\xa1\x1e" + b"b" * 4000
    peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, BASE + entry + b"\xbe" * 2))
    assert len(peer.opened()) == 1
    assert peer.alive()


@pytest.mark.parametrize("max_frame_size", [16384, 16777215])
def test_continuation_flood_is_bounded(max_frame_size: int) -> None:
    """CONTINUATION frames that never end a header block: the server holds no more than the
    header list limit (plus a frame) before it sends GOAWAY, whatever the frame size."""
    peer = Peer(max_frame_size=max_frame_size)
    size = min(max_frame_size, 1 << 20)
    peer.send(frame(HEADERS, END_STREAM, 1, BASE))
    held = []
    for _ in range(10000):
        peer.send(frame(CONTINUATION, 0, 1, b"\x00" * size))
        held.append(peer.session.conn.header_block_size())
        if peer.session.ended:
            break
    goaway = peer.goaway()
    assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
    assert max(held) <= 65536 + 16384 + size


def test_empty_continuation_flood_is_a_protocol_error() -> None:
    peer = Peer()
    peer.send(frame(HEADERS, END_STREAM, 1, BASE))
    for _ in range(1000):
        peer.send(frame(CONTINUATION, 0, 1, b""))
        if peer.session.ended:
            break
    goaway = peer.goaway()
    assert goaway is not None and goaway.error_code == PROTOCOL_ERROR


def test_streams_over_the_advertised_limit_are_refused_and_the_others_complete() -> None:
    """RFC 9113 §5.1.2: a stream error (REFUSED_STREAM), not the end of the connection."""
    peer = Peer(max_concurrent_streams=2)
    peer.send(peer.headers(1), peer.headers(3), peer.headers(5, end=False), peer.headers(7))
    assert [e.stream_id for e in peer.opened()] == [1, 3]
    assert peer.resets() == {5: REFUSED_STREAM, 7: REFUSED_STREAM}
    peer.respond(1)
    peer.respond(3)
    assert peer.status(1) == peer.status(3) == 200
    peer.send(peer.headers(9))  # places are free again
    assert [e.stream_id for e in peer.opened()] == [1, 3, 9]
    assert peer.alive()


def test_streams_whose_handler_finished_but_whose_body_is_open_still_count() -> None:
    """A client that never ends its request bodies cannot make h2 keep unbounded state:
    protocol-open streams count against the limit as well as running handlers."""
    peer = Peer(max_concurrent_streams=2)
    peer.send(peer.headers(1, end=False), peer.headers(3, end=False))
    peer.respond(1)  # answered, finished, but the client's side is still open
    peer.respond(3)
    peer.send(peer.headers(5))
    assert peer.resets() == {5: REFUSED_STREAM}
    assert peer.alive()


def test_zero_window_holds_the_response_until_the_peer_opens_it() -> None:
    """The session never queues DATA past the peer's window: the worker waits (and its
    timeout resets the stream); a WINDOW_UPDATE wakes it."""
    peer = Peer()
    peer.send(settings({0x4: 0}), peer.headers(1))
    assert peer.session.respond(1, 200, [], end=False)
    assert peer.session.window(1) == 0
    assert peer.session.send_body(1, b"held", end=True) == 0
    peer.session.reset(1, 0x8)  # what the worker does when its timeout passes
    peer.session.finished(1)
    peer.collect()
    assert peer.resets() == {1: 0x8}
    assert not [f for f in peer.frames if isinstance(f, DataFrame)]
    assert peer.session.send_body(1, b"held", end=True) == -1
    assert peer.alive()


def test_goaway_from_the_peer_aborts_running_streams() -> None:
    peer = Peer()
    peer.send(peer.headers(1), peer.headers(3))
    peer.send(frame(GOAWAY, 0, 0, struct.pack(">II", 3, NO_ERROR)))
    assert sorted(e.stream_id for e in peer.events if isinstance(e, StreamAborted)) == [1, 3]
    assert peer.session.ended and peer.session.error == ""


def test_drain_sends_goaway_and_refuses_later_streams() -> None:
    peer = Peer()
    peer.send(peer.headers(1))
    peer.session.drain()
    peer.collect()
    goaway = peer.goaway()
    assert goaway is not None and (goaway.last_stream_id, goaway.error_code) == (1, NO_ERROR)
    peer.send(peer.headers(3))
    assert peer.resets() == {3: REFUSED_STREAM}
    peer.respond(1)
    assert peer.status(1) == 200


def test_request_limits_answer_on_the_stream() -> None:
    peer = Peer(request=Limits(request_line=20))
    peer.send(peer.headers(1, [("x-a", "1")]))
    long_path = [(":method", "GET"), (":scheme", "http"), (":authority", "h")]
    peer.send(
        frame(HEADERS, END_HEADERS | END_STREAM, 3, peer.block([*long_path, (":path", "/" * 30)]))
    )
    assert peer.status(3) == 414
    assert [e.stream_id for e in peer.opened()] == [1]
    assert peer.alive()
