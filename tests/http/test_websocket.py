"""WebSocket framing (RFC 6455 §5) and the close handshake (§7), fed under every split."""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable

import pytest

from corral.http.websocket import (
    BINARY,
    CLOSE,
    CLOSE_RECEIVED,
    CLOSE_SENT,
    CLOSED,
    CONTINUATION,
    OPEN,
    PING,
    PONG,
    TEXT,
    BinaryMessage,
    CloseReceived,
    Event,
    FrameParser,
    Ping,
    Pong,
    TextMessage,
    WebSocket,
    WebSocketError,
    encode_close,
    encode_frame,
    encode_message,
    encode_ping,
    encode_pong,
    unmask,
)

Splits = dict[str, Callable[[bytes], list[bytes]]]
KEY = bytes((0x37, 0xFA, 0x21, 0x3D))  # the masking key of RFC 6455 §5.7


def slow_mask(payload: bytes, key: bytes) -> bytes:
    """The reference §5.3 definition, byte by byte: j = i MOD 4, octet ^ key[j]."""
    return bytes(octet ^ key[i % 4] for i, octet in enumerate(payload))


def client_frame(
    opcode: int,
    payload: bytes,
    fin: bool = True,
    rsv: int = 0,
    key: bytes = KEY,
    masked: bool = True,
    length_bytes: int = 0,
) -> bytes:
    """A frame as a client sends it; length_bytes forces a 16- or 64-bit length."""
    first = opcode | (0x80 if fin else 0) | rsv
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if length_bytes == 2 or (not length_bytes and 126 <= size < 65536):
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", size)
    elif length_bytes == 8 or (not length_bytes and size >= 65536):
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", size)
    else:
        head = bytes((first, mask_bit | size))
    if not masked:
        return head + payload
    return head + key + slow_mask(payload, key)


def feed(
    pieces: list[bytes], max_message_size: int = 1 << 20
) -> tuple[list[Event], WebSocketError | None]:
    parser = FrameParser(max_message_size)
    events: list[Event] = []
    for piece in pieces:
        try:
            events += parser.feed(piece)
        except WebSocketError as exc:
            return events + exc.events, exc
    return events, None


def feed_all_ways(
    raw: bytes, splits: Splits, max_message_size: int = 1 << 20
) -> tuple[list[Event], WebSocketError | None]:
    """Feed raw under every split; all must agree on the events and the error code."""
    outcomes = {}
    for name, split in splits.items():
        events, error = feed(split(raw), max_message_size)
        outcomes[name] = (events, None if error is None else error.code)
    first = outcomes["whole"]
    for name, outcome in outcomes.items():
        assert outcome == first, name
    return feed([raw], max_message_size)


# ---------------------------------------------------------------------------------------------
# RFC 6455 §5.7 examples


def test_rfc_masked_hello(splits: Splits) -> None:
    raw = bytes((0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58))
    assert client_frame(TEXT, b"Hello") == raw
    assert feed_all_ways(raw, splits) == ([TextMessage("Hello")], None)


def test_rfc_unmasked_hello_from_the_server() -> None:
    assert encode_frame(TEXT, b"Hello") == bytes((0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F))


def test_rfc_unmasked_hello_from_a_client_is_refused() -> None:
    events, error = feed([bytes((0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F))])
    assert events == [] and error is not None and error.code == 1002


def test_rfc_fragmented_hello(splits: Splits) -> None:
    # §5.7: 0x01 0x03 "Hel" then 0x80 0x02 "lo", here masked as a client must.
    raw = client_frame(TEXT, b"Hel", fin=False) + client_frame(CONTINUATION, b"lo")
    assert raw[0] == 0x01 and raw[9] == 0x80
    assert feed_all_ways(raw, splits) == ([TextMessage("Hello")], None)
    assert encode_message(TEXT, b"Hello", fragment_size=3) == bytes(
        (0x01, 0x03, 0x48, 0x65, 0x6C, 0x80, 0x02, 0x6C, 0x6F)
    )


def test_rfc_ping_and_masked_pong(splits: Splits) -> None:
    assert encode_ping(b"Hello") == bytes((0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F))
    pong = bytes((0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58))
    assert feed_all_ways(pong, splits) == ([Pong(b"Hello")], None)
    assert encode_pong(b"Hello")[0] == 0x8A


def test_rfc_256_bytes_and_64_kib_lengths() -> None:
    assert encode_frame(BINARY, bytes(256))[:4] == bytes((0x82, 0x7E, 0x01, 0x00))
    big = encode_frame(BINARY, bytes(65536))
    assert big[:10] == bytes((0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0)) and len(big) == 65546
    for size in (125, 126, 256, 65535, 65536, 70000):
        payload = random.Random(size).randbytes(size)
        assert feed([client_frame(BINARY, payload)]) == ([BinaryMessage(payload)], None)


# ---------------------------------------------------------------------------------------------
# Masking (§5.3)


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 7, 8, 125, 1000, 4097, 8191, 8192, 8195, 70001])
def test_unmask_matches_the_definition(size: int) -> None:
    payload = random.Random(size).randbytes(size)
    key = random.Random(-size).randbytes(4)
    assert unmask(payload, key) == slow_mask(payload, key)
    assert unmask(bytearray(payload), key) == slow_mask(payload, key)
    assert unmask(unmask(payload, key), key) == payload
    assert isinstance(unmask(bytearray(payload), key), bytes)


def test_unmask_is_not_a_python_loop() -> None:
    payload, key = bytes(1 << 20), b"\x01\x02\x03\x04"
    start = time.perf_counter()
    for _ in range(5):
        unmask(payload, key)
    per_mib = (time.perf_counter() - start) / 5
    # A per-byte loop takes ~50 ms per MiB; the C path a few ms at worst on a loaded machine.
    assert per_mib < 0.02, per_mib


def test_unmasked_frame_is_refused_from_its_header() -> None:
    _, error = feed([client_frame(TEXT, b"x" * 1000, masked=False)[:2]])
    assert error is not None and error.code == 1002


# ---------------------------------------------------------------------------------------------
# Messages, fragmentation and control frames (§5.4, §5.5)


def test_many_messages_with_control_frames_in_between(splits: Splits) -> None:
    raw = b"".join(
        (
            client_frame(BINARY, b"ab", fin=False),
            client_frame(PING, b"p1"),
            client_frame(CONTINUATION, b"", fin=False),
            client_frame(PONG, b""),
            client_frame(CONTINUATION, b"cd"),
            client_frame(TEXT, "héllo".encode()),
            client_frame(TEXT, b""),
            client_frame(BINARY, b""),
            client_frame(CLOSE, struct.pack("!H", 1000) + "bye ✓".encode()),
            b"anything after the close is ignored",
        )
    )
    events, error = feed_all_ways(raw, splits)
    assert error is None
    assert events == [
        Ping(b"p1"),
        Pong(b""),
        BinaryMessage(b"abcd"),
        TextMessage("héllo"),
        TextMessage(""),
        BinaryMessage(b""),
        CloseReceived(1000, "bye ✓"),
    ]


def test_utf8_character_split_across_fragments(splits: Splits) -> None:
    text = "a€𝄞b".encode()
    raw = b"".join(
        client_frame(TEXT if i == 0 else CONTINUATION, text[i : i + 1], fin=i == len(text) - 1)
        for i in range(len(text))
    )
    assert feed_all_ways(raw, splits) == ([TextMessage("a€𝄞b")], None)


REFUSED = {
    "rsv1": (client_frame(TEXT, b"x", rsv=0x40), 1002),
    "rsv2": (client_frame(BINARY, b"x", rsv=0x20), 1002),
    "rsv3": (client_frame(PING, b"", rsv=0x10), 1002),
    "reserved opcode 3": (client_frame(0x3, b""), 1002),
    "reserved opcode 0xb": (client_frame(0xB, b""), 1002),
    "ping over 125": (client_frame(PING, b"x" * 126), 1002),
    "close over 125": (client_frame(CLOSE, b"\x03\xe8" + b"x" * 124), 1002),
    "fragmented ping": (client_frame(PING, b"", fin=False), 1002),
    "fragmented close": (client_frame(CLOSE, b"", fin=False), 1002),
    "lone continuation": (client_frame(CONTINUATION, b"x"), 1002),
    "continuation after a message": (
        client_frame(TEXT, b"a") + client_frame(CONTINUATION, b"b"),
        1002,
    ),
    "text inside a fragmented message": (
        client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"),
        1002,
    ),
    "binary inside a fragmented message": (
        client_frame(BINARY, b"a", fin=False) + client_frame(BINARY, b"b"),
        1002,
    ),
    "16-bit length under 126": (client_frame(BINARY, b"x" * 5, length_bytes=2), 1002),
    "64-bit length under 65536": (client_frame(BINARY, b"x" * 5, length_bytes=8), 1002),
    "64-bit length with the top bit": (bytes((0x82, 0xFF)) + b"\x80" + bytes(7) + KEY, 1002),
    "invalid utf-8": (client_frame(TEXT, b"\xff"), 1007),
    "surrogate in utf-8": (client_frame(TEXT, b"\xed\xa0\x80"), 1007),
    "truncated utf-8 at the end": (client_frame(TEXT, "€".encode()[:2]), 1007),
    "bad utf-8 in a later fragment": (
        client_frame(TEXT, b"ok", fin=False) + client_frame(CONTINUATION, b"\xc0\xaf"),
        1007,
    ),
    "close with a 1-byte body": (client_frame(CLOSE, b"\x03"), 1002),
    "close reason not utf-8": (client_frame(CLOSE, b"\x03\xe8\xff"), 1007),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_refused(case: str, splits: Splits) -> None:
    raw, code = REFUSED[case]
    _, error = feed_all_ways(raw, splits)
    assert error is not None and error.code == code, error


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_invalid_close_codes(code: int) -> None:
    _, error = feed([client_frame(CLOSE, struct.pack("!H", code))])
    assert error is not None and error.code == 1002


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1014, 3000, 4999]
)
def test_valid_close_codes(code: int) -> None:
    assert feed([client_frame(CLOSE, struct.pack("!H", code))]) == (
        [CloseReceived(code, "")],
        None,
    )


def test_close_without_a_body_is_1005() -> None:
    assert feed([client_frame(CLOSE, b"")]) == ([CloseReceived(1005, "")], None)


def test_events_before_an_error_are_kept() -> None:
    raw = client_frame(TEXT, b"good") + client_frame(PING, b"") + client_frame(0x7, b"")
    events, error = feed([raw])
    assert events == [TextMessage("good"), Ping(b"")]
    assert error is not None and error.code == 1002


def test_parser_is_dead_after_an_error() -> None:
    parser = FrameParser()
    with pytest.raises(WebSocketError):
        parser.feed(client_frame(0x3, b""))
    assert parser.closed
    assert parser.feed(client_frame(TEXT, b"late")) == []


# ---------------------------------------------------------------------------------------------
# Maximum message size: judged from the frame header, before the payload is buffered


def test_oversized_frame_refused_from_its_header() -> None:
    parser = FrameParser(max_message_size=1000)
    header = client_frame(BINARY, bytes(1001))[:8]  # 2 + 2 length bytes + 4 key bytes
    with pytest.raises(WebSocketError) as info:
        parser.feed(header[:4])
    assert info.value.code == 1009


def test_huge_64_bit_length_refused_at_once() -> None:
    with pytest.raises(WebSocketError) as info:
        FrameParser().feed(bytes((0x82, 0xFF)) + struct.pack("!Q", 1 << 40))
    assert info.value.code == 1009


def test_fragments_add_up_to_the_limit(splits: Splits) -> None:
    at_limit = client_frame(BINARY, bytes(60), fin=False) + client_frame(CONTINUATION, bytes(40))
    assert feed_all_ways(at_limit, splits, 100) == ([BinaryMessage(bytes(100))], None)
    over = client_frame(TEXT, b"a" * 60, fin=False) + client_frame(CONTINUATION, b"a" * 41)
    _, error = feed_all_ways(over, splits, 100)
    assert error is not None and error.code == 1009
    # The limit is per message: the next message starts from zero.
    two = client_frame(BINARY, bytes(100)) + client_frame(BINARY, bytes(100))
    assert feed_all_ways(two, splits, 100)[0] == [BinaryMessage(bytes(100))] * 2


def test_control_frames_do_not_count_toward_the_limit() -> None:
    raw = client_frame(BINARY, bytes(10), fin=False) + client_frame(PING, bytes(125))
    raw += client_frame(CONTINUATION, bytes(10))
    assert feed([raw], 20) == ([Ping(bytes(125)), BinaryMessage(bytes(20))], None)


# ---------------------------------------------------------------------------------------------
# Writer → parser round trips (server frames are unmasked: mask them as a client would)


def remask(server_bytes: bytes) -> bytes:
    """Turn the server's unmasked frames into masked client frames, frame by frame."""
    out, pos = bytearray(), 0
    while pos < len(server_bytes):
        first, size = server_bytes[pos], server_bytes[pos + 1] & 0x7F
        header = 2
        if size == 126:
            size, header = struct.unpack_from("!H", server_bytes, pos + 2)[0], 4
        elif size == 127:
            size, header = struct.unpack_from("!Q", server_bytes, pos + 2)[0], 10
        payload = server_bytes[pos + header : pos + header + size]
        out += bytes((first, server_bytes[pos + 1] | 0x80)) + server_bytes[pos + 2 : pos + header]
        out += KEY + slow_mask(payload, KEY)
        pos += header + size
    return bytes(out)


@pytest.mark.parametrize("fragment_size", [0, 1, 7, 125, 126, 65536])
def test_round_trip(fragment_size: int, splits: Splits) -> None:
    text = "κόσμε " * 50
    blob = random.Random(fragment_size).randbytes(70000)
    ws = WebSocket(fragment_size=fragment_size)
    wire = ws.send_text(text) + ws.send_ping(b"hi") + ws.send_binary(blob) + ws.send_pong()
    wire += ws.send_text("") + ws.close(1001, "bye")
    events, error = feed_all_ways(remask(wire), splits)
    assert error is None
    assert events == [
        TextMessage(text),
        Ping(b"hi"),
        BinaryMessage(blob),
        Pong(b""),
        TextMessage(""),
        CloseReceived(1001, "bye"),
    ]


def test_writer_refuses_what_may_not_be_sent() -> None:
    for code in (999, 1004, 1006, 1015, 2000, 5000):
        with pytest.raises(ValueError):
            encode_close(code)
    with pytest.raises(ValueError):
        encode_close(1000, "é" * 62)  # 124 bytes of UTF-8
    assert len(encode_close(1000, "x" * 123)) == 2 + 125
    assert encode_close(1005) == b"\x88\x00"
    with pytest.raises(ValueError):
        encode_ping(bytes(126))


# ---------------------------------------------------------------------------------------------
# The close handshake (§7)


def test_server_closes_first() -> None:
    ws = WebSocket()
    assert ws.close(1001, "going") == encode_close(1001, "going")
    assert ws.state == CLOSE_SENT
    assert ws.close() == b""  # only one Close is ever sent
    with pytest.raises(RuntimeError):
        ws.send_text("late")
    # Data the client sent before it saw our Close is still delivered, then its Close ends it.
    raw = client_frame(TEXT, b"in flight") + client_frame(CLOSE, b"\x03\xe9")
    assert ws.receive(raw) == [TextMessage("in flight"), CloseReceived(1001, "")]
    assert ws.state == CLOSED


def test_client_closes_first_and_its_code_is_echoed() -> None:
    ws = WebSocket()
    assert ws.receive(client_frame(CLOSE, b"\x0f\xa0reason")) == [CloseReceived(4000, "reason")]
    assert ws.state == CLOSE_RECEIVED
    ws.send_text("still allowed before our answer (§5.5.1 lets us finish a message)")
    assert ws.close() == encode_close(4000)
    assert ws.state == CLOSED
    assert ws.receive(client_frame(TEXT, b"ignored")) == []


def test_client_close_without_code_is_answered_without_code() -> None:
    ws = WebSocket()
    ws.receive(client_frame(CLOSE, b""))
    assert ws.close() == b"\x88\x00"


def test_explicit_code_overrides_the_echo() -> None:
    ws = WebSocket()
    ws.receive(client_frame(CLOSE, b"\x03\xe8"))
    assert ws.close(1011) == encode_close(1011)


def test_fail_sends_the_error_code_and_closes() -> None:
    ws = WebSocket(max_message_size=10)
    assert ws.state == OPEN
    with pytest.raises(WebSocketError) as info:
        ws.receive(client_frame(BINARY, bytes(11)))
    assert ws.fail(info.value) == encode_close(1009)
    assert ws.state == CLOSED
    assert ws.fail(info.value) == b""
