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
from support.h2_cases import BASE, CASES, literal, open_post, string
from support.h2_client import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    GOAWAY,
    HEADERS,
    NO_ERROR,
    PADDED,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    SETTINGS,
    FrameReader,
    frame,
    ping,
    priority,
    rst_stream,
    settings,
    window_update,
)


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
        self,
        stream_id: int,
        extra: list[tuple[str, str]] | None = None,
        end: bool = True,
        path: str = "/",
    ) -> bytes:
        fields = [(":method", "GET" if end else "POST"), (":scheme", "http")]
        fields += [(":authority", "localhost"), (":path", path), *(extra or [])]
        flags = END_HEADERS | (END_STREAM if end else 0)
        return frame(HEADERS, flags, stream_id, self.block(fields))

    def answer(self, stream_id: int, end: bool = True) -> None:
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
    peer.send(window_update(1, 1000), window_update(0, 1000))
    peer.send(priority(1, depends_on=3), rst_stream(3))
    assert [e.stream_id for e in peer.events if isinstance(e, StreamAborted)] == [3]
    peer.answer(1)
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
    peer.answer(1)
    peer.answer(3)
    assert peer.status(1) == peer.status(3) == 200
    peer.send(peer.headers(9))  # places are free again
    assert [e.stream_id for e in peer.opened()] == [1, 3, 9]
    assert peer.alive()


def test_streams_whose_handler_finished_but_whose_body_is_open_still_count() -> None:
    """A client that never ends its request bodies cannot make h2 keep unbounded state:
    protocol-open streams count against the limit as well as running handlers."""
    peer = Peer(max_concurrent_streams=2)
    peer.send(peer.headers(1, end=False), peer.headers(3, end=False))
    peer.answer(1)  # answered, finished, but the client's side is still open
    peer.answer(3)
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
    peer.answer(1)
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


def test_http2_5_4_1_2_goaway_names_the_last_stream_processed() -> None:
    peer = Peer()
    peer.send(peer.headers(1), peer.headers(3))
    peer.send(frame(PING, 0, 0, b"short"))
    goaway = peer.goaway()
    assert goaway is not None and (goaway.error_code, goaway.last_stream_id) == (0x6, 3)


def test_http2_6_5_3_1_the_last_value_of_a_setting_counts() -> None:
    peer = Peer()
    both = struct.pack(">HIHI", 0x4, 100, 0x4, 1)
    peer.send(frame(SETTINGS, 0, 0, both), peer.headers(1))
    assert peer.session.window(1) == 1


def test_trailers_are_checked_and_a_bad_one_aborts_its_stream() -> None:
    peer = Peer()
    open_post(peer, 1)
    open_post(peer, 3)
    good = frame(HEADERS, END_HEADERS | END_STREAM, 1, peer.block([("x-sum", "1")]))
    bad = frame(HEADERS, END_HEADERS | END_STREAM, 3, peer.block([("connection", "close")]))
    peer.send(good, bad)
    assert [e.stream_id for e in peer.events if isinstance(e, StreamAborted)] == [3]
    assert 1 in [e.stream_id for e in peer.events if isinstance(e, BodyEnded)]
    assert peer.resets() == {3: PROTOCOL_ERROR}
    assert peer.alive()


def test_malformed_requests_in_a_burst_are_calmed() -> None:
    peer = Peer()
    for stream_id in range(1, 2001, 2):
        peer.send(peer.headers(stream_id, [("X-Upper", "1")]))
        if peer.session.ended:
            break
    goaway = peer.goaway()
    assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
    assert not peer.opened()


# ---- request windows smaller than the protocol's default ---------------------------------


def stream_grants(peer: Peer, stream_id: int) -> int:
    return sum(
        f.window_increment
        for f in peer.frames
        if isinstance(f, WindowUpdateFrame) and f.stream_id == stream_id
    )


def consume_all(peer: Peer) -> None:
    """The worker reads every body byte received so far (as an application would)."""
    for event in list(peer.events):
        if isinstance(event, BodyData) and event.flow:
            peer.session.consumed(event.stream_id, event.flow)
    peer.events = [e for e in peer.events if not isinstance(e, BodyData)]
    peer.collect()


@pytest.mark.parametrize("window", [0, 1024, 16384])
def test_a_smaller_window_is_announced_and_a_first_flight_sent_before_it_is_credited(
    window: int,
) -> None:
    """A client may send 65535 bytes a stream before it has read the server's SETTINGS
    (RFC 9113 §6.9.2); once it applies a smaller window, those streams' windows are below
    zero. Consumed before or after the client's acknowledgement, that first flight must be
    credited back, so that each stream can go on (a window above zero on the client's side)."""
    peer = Peer(initial_window_size=window)
    announced = [
        f.settings.get(0x4) for f in peer.frames if isinstance(f, SettingsFrame) and f.settings
    ]
    assert window in announced
    sent = dict.fromkeys((1, 3, 5, 7), 16384)
    for stream_id in sent:  # the first flight: 4 x 16 KiB within the connection's 64 KiB
        open_post(peer, stream_id)
        peer.send(frame(DATA, 0, stream_id, b"x" * 16384))
    consume_all(peer)  # read before the acknowledgement comes
    peer.send(settings(ack=True))
    consume_all(peer)
    for stream_id, size in sent.items():
        assert window - size + stream_grants(peer, stream_id) > 0, (stream_id, peer.frames)
    # And an upload goes on to its end: 100 kB more on stream 1, as the windows allow.
    left = 100_000
    while left:
        room = window - sent[1] + stream_grants(peer, 1)
        assert room > 0, "stream 1 stalled"
        chunk = min(room, left, 16384)
        peer.send(frame(DATA, 0, 1, b"y" * chunk))
        sent[1] += chunk
        left -= chunk
        consume_all(peer)
    assert peer.alive()


def test_a_zero_window_opens_when_the_request_arrives_not_before() -> None:
    """http2_initial_window_size 0: no body may come before the server has the request
    head; then the server grants a frame's worth at a time as the body is read."""
    peer = Peer(initial_window_size=0)
    peer.send(settings(ack=True))
    open_post(peer, 1)
    granted = stream_grants(peer, 1)
    assert 0 < granted <= 16384
    peer.send(frame(DATA, 0, 1, b"x" * granted))
    assert stream_grants(peer, 1) == granted  # nothing more until it is read
    consume_all(peer)
    assert stream_grants(peer, 1) > granted
