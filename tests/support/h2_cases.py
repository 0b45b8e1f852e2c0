"""h2spec's cases (RFC 9113, RFC 7541) as a table, for the sans-IO session and the real server.

`CASES` maps a name carrying h2spec's section number (`http2/…`, `hpack/…`; `corral:` for
ours) to what the client sends and the one answer RFC 9113 asks for:
("goaway", code), ("reset", stream, code), ("status", stream, status), ("peer-goaway",)
(the client's own GOAWAY), or ("alive",): no GOAWAY, no RST_STREAM, and a PING answered.

A case takes a client with `send(*frames)`, `block(fields)` (an HPACK block from the client's
encoder), `headers(stream_id, extra=None, end=True, path="/")` (a whole request head; a
request to `/hold` is not answered for a while) and `answer(stream_id)` (the response came and
the stream is closed at both ends). tests/http/test_h2_session.py gives it an H2Session,
tests/integration/test_h2_conformance.py a connection to the real server.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

from support.h2_client import (
    ACK,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PRIORITY,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    STREAM_CLOSED,
    WINDOW_UPDATE,
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
def literal(prefix: int, name: bytes | None, value: bytes, huffman: bool) -> bytes:
    """An HPACK literal field: `prefix` is its first byte with a new name (RFC 7541 §6.2)."""
    if name is None:  # the name by index: :authority (1) fits every prefix
        return bytes([prefix | 1]) + string(value, huffman)
    return bytes([prefix]) + string(name, huffman) + string(value, huffman)


BASE = b"\x82\x86\x84" + b"\x41" + string(b"localhost")


# ---- the cases ------------------------------------------------------------------------------
# Each case takes a fresh Peer (preface and SETTINGS exchanged) and sends its frames; the
# expectation is ("goaway", code), ("reset", stream, code), ("status", stream, status) or
# ("alive",): no GOAWAY, no RST_STREAM, and a PING still answered.

Case = Callable[[Any], object]


def open_post(p: Any, stream_id: int = 1, path: str = "/") -> None:
    p.send(p.headers(stream_id, end=False, path=path))


def answered_get(p: Any, stream_id: int = 1) -> None:
    """A stream closed at both ends: the request had END_STREAM and the response too."""
    p.send(p.headers(stream_id))
    p.answer(stream_id)


def reset_get(p: Any, stream_id: int = 1) -> None:
    p.send(p.headers(stream_id, end=False), rst_stream(stream_id))


def half_closed_remote(p: Any, stream_id: int = 1) -> None:
    p.send(p.headers(stream_id, path="/hold"))  # the handler has not answered yet


def header_block_open(p: Any) -> None:
    p.send(frame(HEADERS, END_STREAM, 1, p.block([(":method", "GET")])))


def continuation(p: Any, stream_id: int, end: bool = True) -> bytes:
    rest = [(":scheme", "http"), (":authority", "localhost"), (":path", "/")]
    return frame(CONTINUATION, END_HEADERS if end else 0, stream_id, p.block(rest))


def both(*steps: Case) -> Case:
    def run(p: Any) -> None:
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
        # To /hold, whose handler reads nothing: the window is credited as the body is read.
        # The Content-Length is past what a gthread worker receives before the application
        # (request_body_buffer), so that it streams this body too.
        lambda p: (
            p.send(p.headers(1, [("content-length", str(1 << 40))], end=False, path="/hold")),
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
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.1/1 unknown pseudo-header": (
        fields((":foo", "bar")),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.1/2 response pseudo-header in a request": (
        fields((":status", "200")),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.1/3 pseudo-header in trailers": (
        lambda p: (
            open_post(p),
            p.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, p.block([(":path", "/x")]))),
        ),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.1/4 pseudo-header after a regular field": (
        fields(("x-first", "1"), order="regular-first"),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.2/1 connection-specific field": (
        fields(("connection", "keep-alive")),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.2/2 TE other than trailers": (
        fields(("te", "gzip")),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/1 empty :path": (
        fields((":method", "GET"), (":scheme", "http"), (":path", ""), base=False),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/2 no :method": (
        fields((":scheme", "http"), (":path", "/"), base=False),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/3 no :scheme": (
        fields((":method", "GET"), (":path", "/"), base=False),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/4 no :path": (
        fields((":method", "GET"), (":scheme", "http"), base=False),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/5 duplicated :method": (
        fields(
            (":method", "GET"), (":method", "GET"), (":scheme", "http"), (":path", "/"), base=False
        ),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/6 duplicated :scheme": (
        fields(
            (":method", "GET"), (":scheme", "http"), (":scheme", "http"), (":path", "/"), base=False
        ),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "http2/8.1.2.3/7 duplicated :path": (
        fields((":method", "GET"), (":scheme", "http"), (":path", "/"), (":path", "/"), base=False),
        ("reset", 1, PROTOCOL_ERROR),
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
    "corral: space at the end of a field value (RFC 9113 §8.2.1)": (
        fields(("x-bad", "value ")),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "corral: :authority and Host that differ (RFC 9113 §8.3.1)": (
        fields(("host", "elsewhere")),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "corral: DEL in a field value": (
        fields(("x-bad", "a\x7fb")),
        ("status", 1, 400),
    ),
    "corral: :path that is not origin-form": (
        fields((":method", "GET"), (":scheme", "http"), (":path", "/a#b"), base=False),
        ("status", 1, 400),
    ),
    "corral: NUL in a field value (RFC 9113 §8.2.1)": (
        fields(("x-bad", "a\x00b")),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "corral: field name with a space (RFC 9113 §8.2.1)": (
        fields(("x bad", "1")),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "corral: field name that is not a token (RFC 9110 §5.1)": (
        fields(("x(bad)", "1")),
        ("status", 1, 400),
    ),
    "corral: upper-case field name in trailers": (
        lambda p: (
            open_post(p),
            p.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, p.block([("X-Sum", "1")]))),
        ),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "corral: connection-specific field in trailers": (
        lambda p: (
            open_post(p),
            p.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, p.block([("upgrade", "x")]))),
        ),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "corral: :protocol outside an extended CONNECT (RFC 8441 §4)": (
        fields((":protocol", "websocket")),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "corral: CONNECT with :path (RFC 9113 §8.5)": (
        fields((":method", "CONNECT"), (":path", "/"), base=False),
        ("reset", 1, PROTOCOL_ERROR),
    ),
    "corral: no :authority and no Host": (
        lambda p: p.send(
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                p.block([(":method", "GET"), (":scheme", "http"), (":path", "/")]),
            )
        ),
        ("status", 1, 400),
    ),
    "corral: :method that is not a token": (
        fields((":method", "GE T"), (":scheme", "http"), (":path", "/"), base=False),
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
