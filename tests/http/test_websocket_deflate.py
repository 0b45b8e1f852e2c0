"""permessage-deflate (RFC 7692): negotiation, round trips, and the bound on inflated size."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable

import pytest
from tests.http.test_websocket import client_frame, feed, remask

from corral.http.websocket import (
    BINARY,
    CONTINUATION,
    PING,
    TEXT,
    BinaryMessage,
    FrameParser,
    TextMessage,
    WebSocket,
    WebSocketError,
    encode_message,
)
from corral.http.websocket_deflate import DeflateParams, PerMessageDeflate, negotiate_deflate

Splits = dict[str, Callable[[bytes], list[bytes]]]
RSV1 = 0x40


def client_deflate(data: bytes, bits: int = 15) -> bytes:
    """A client's compressed message payload (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def offer(*params: tuple[str, str | None]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    return [("permessage-deflate", list(params))]


@pytest.mark.parametrize(
    ("offers", "expected"),
    [
        (offer(), DeflateParams()),
        (
            offer(("server_no_context_takeover", None), ("client_max_window_bits", None)),
            DeflateParams(server_no_context_takeover=True),
        ),
        (offer(("server_max_window_bits", "10")), DeflateParams(server_max_window_bits=10)),
        (offer(("client_max_window_bits", "9")), DeflateParams(client_max_window_bits=9)),
        (offer(("client_no_context_takeover", None)), DeflateParams()),
        # zlib cannot deflate with 8 bits: accepted, our messages then go uncompressed
        (offer(("server_max_window_bits", "8")), DeflateParams(server_max_window_bits=8)),
        (offer(("server_max_window_bits", "16")), None),
        (offer(("server_max_window_bits", None)), None),
        (offer(("client_max_window_bits", "7")), None),
        (offer(("server_no_context_takeover", "1")), None),
        (offer(("x", None)), None),
        (offer(("server_no_context_takeover", None), ("server_no_context_takeover", None)), None),
        ([("x-other", [])], None),
        # The first acceptable offer wins: a declined one falls through to the next.
        (
            [*offer(("server_max_window_bits", "8")), *offer(("server_max_window_bits", "12"))],
            DeflateParams(server_max_window_bits=12),
        ),
    ],
)
def test_negotiation(
    offers: list[tuple[str, list[tuple[str, str | None]]]], expected: DeflateParams | None
) -> None:
    assert negotiate_deflate(offers) == expected


def test_negotiation_with_server_caps() -> None:
    params = negotiate_deflate(
        offer(("client_max_window_bits", None)), max_window_bits=10, no_context_takeover=True
    )
    assert params == DeflateParams(True, True, 10, 10)
    assert params.response() == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=10"
    )
    # Without client_max_window_bits in the offer we may not limit the client's window.
    assert negotiate_deflate(offer(), max_window_bits=10) == DeflateParams(False, False, 10, 15)
    assert DeflateParams().response() == "permessage-deflate"


@pytest.mark.parametrize("takeover", [True, False])
def test_client_messages_inflate(takeover: bool, splits: Splits) -> None:
    params = DeflateParams(client_no_context_takeover=not takeover)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)

    def compress(data: bytes) -> bytes:
        if not takeover:
            return client_deflate(data)
        return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]

    first, second = compress("héllo héllo".encode()), compress(b"\x00" * 5000)
    raw = client_frame(TEXT, first, rsv=RSV1)
    raw += client_frame(BINARY, second[:3], fin=False, rsv=RSV1)
    raw += client_frame(PING, b"")
    raw += client_frame(CONTINUATION, second[3:])
    raw += client_frame(BINARY, b"plain")
    for name, split in splits.items():
        parser = FrameParser(1 << 20, PerMessageDeflate(params, 1 << 20))
        events = [event for piece in split(raw) for event in parser.feed(piece)]
        assert [e for e in events if not isinstance(e, type(events[1]))] == [
            TextMessage("héllo héllo"),
            BinaryMessage(bytes(5000)),
            BinaryMessage(b"plain"),
        ], name


def test_inflation_is_bounded() -> None:
    bomb = client_deflate(bytes(10_000_000))  # about 10 KB on the wire
    assert len(bomb) < 20_000
    parser = FrameParser(100_000, PerMessageDeflate(DeflateParams(), 100_000))
    with pytest.raises(WebSocketError) as info:
        parser.feed(client_frame(BINARY, bomb, rsv=RSV1))
    assert info.value.code == 1009
    exact = client_deflate(bytes(100_000))
    ok = FrameParser(100_000, PerMessageDeflate(DeflateParams(), 100_000))
    assert ok.feed(client_frame(BINARY, exact, rsv=RSV1)) == [BinaryMessage(bytes(100_000))]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (client_frame(TEXT, client_deflate(b"\xff\xfe"), rsv=RSV1), 1007),
        (client_frame(BINARY, b"\xff\xff\xff\xff", rsv=RSV1), 1002),
        (client_frame(BINARY, b"a", fin=False) + client_frame(CONTINUATION, b"b", rsv=RSV1), 1002),
        (client_frame(PING, b"", rsv=RSV1), 1002),
        (client_frame(BINARY, b"", rsv=0x20), 1002),
    ],
)
def test_refused(raw: bytes, code: int) -> None:
    parser = FrameParser(1 << 20, PerMessageDeflate(DeflateParams(), 1 << 20))
    with pytest.raises(WebSocketError) as info:
        parser.feed(raw)
    assert info.value.code == code


def test_rsv1_refused_without_negotiation() -> None:
    _, error = feed([client_frame(BINARY, client_deflate(b"x"), rsv=RSV1)])
    assert error is not None and error.code == 1002


@pytest.mark.parametrize("takeover", [True, False])
@pytest.mark.parametrize("fragment_size", [0, 5])
def test_round_trip_server_to_parser(takeover: bool, fragment_size: int) -> None:
    params = DeflateParams(server_no_context_takeover=not takeover, server_max_window_bits=9)
    server = WebSocket(fragment_size=fragment_size, deflate=PerMessageDeflate(params, 1 << 20))
    wire = server.send_text("abc" * 100) + server.send_binary(b"") + server.send_text("abc" * 100)
    assert wire[0] & RSV1
    # The client's view of the server's frames: inflate with the agreed window.
    mirror = DeflateParams(client_no_context_takeover=not takeover, client_max_window_bits=9)
    parser = FrameParser(1 << 20, PerMessageDeflate(mirror, 1 << 20))
    assert parser.feed(remask(wire)) == [
        TextMessage("abc" * 100),
        BinaryMessage(b""),
        TextMessage("abc" * 100),
    ]


def test_a_fragmented_bomb_fails_on_its_first_frame() -> None:
    """Each frame is inflated as it arrives: the limit is hit before the message ends."""
    bomb = client_deflate(bytes(10_000_000))
    parser = FrameParser(100_000, PerMessageDeflate(DeflateParams(), 100_000))
    # The first frame alone inflates past the limit; the rest of the message never comes.
    with pytest.raises(WebSocketError) as info:
        parser.feed(client_frame(BINARY, bomb[:2000], fin=False, rsv=RSV1))
    assert info.value.code == 1009


def test_fragments_inflate_to_the_limit_across_frames() -> None:
    data = random.Random(7).randbytes(50_000)  # incompressible: deflate makes it a bit larger
    packed = client_deflate(data)
    assert len(packed) > len(data)
    raw = client_frame(BINARY, packed[:20_000], fin=False, rsv=RSV1)
    raw += client_frame(CONTINUATION, packed[20_000:])
    exact = FrameParser(50_000, PerMessageDeflate(DeflateParams(), 50_000))
    assert exact.feed(raw) == [BinaryMessage(data)]
    short = FrameParser(49_999, PerMessageDeflate(DeflateParams(), 49_999))
    with pytest.raises(WebSocketError) as info:
        short.feed(raw)
    assert info.value.code == 1009


def test_text_split_inside_a_character_across_compressed_frames() -> None:
    packed = client_deflate("é".encode() * 1000)
    for cut in range(1, len(packed)):
        raw = client_frame(TEXT, packed[:cut], fin=False, rsv=RSV1)
        raw += client_frame(CONTINUATION, packed[cut:])
        parser = FrameParser(1 << 20, PerMessageDeflate(DeflateParams(), 1 << 20))
        assert parser.feed(raw) == [TextMessage("é" * 1000)]


def test_data_after_the_end_of_the_compressed_stream_is_refused() -> None:
    ended = zlib.compressobj(6, zlib.DEFLATED, -15)
    final = ended.compress(b"done") + ended.flush(zlib.Z_FINISH)  # a BFINAL block
    parser = FrameParser(1 << 20, PerMessageDeflate(DeflateParams(), 1 << 20))
    assert parser.feed(client_frame(BINARY, final, rsv=RSV1)) == [BinaryMessage(b"done")]
    # The context ended with the stream: the next message starts a new one.
    assert parser.feed(client_frame(BINARY, client_deflate(b"next"), rsv=RSV1)) == [
        BinaryMessage(b"next")
    ]
    with pytest.raises(WebSocketError) as info:
        parser.feed(client_frame(BINARY, final + b"\x01\x02", rsv=RSV1))
    assert info.value.code == 1002


def test_a_client_limited_to_8_bits_that_deflates_with_9_is_read() -> None:
    params = negotiate_deflate(offer(("client_max_window_bits", "8")))
    assert params == DeflateParams(client_max_window_bits=8)
    data = random.Random(8).randbytes(300) * 20  # repeats 300 bytes back: beyond 256
    parser = FrameParser(1 << 20, PerMessageDeflate(params, 1 << 20))
    assert parser.feed(client_frame(BINARY, client_deflate(data, bits=9), rsv=RSV1)) == [
        BinaryMessage(data)
    ]


def test_with_an_8_bit_server_window_our_messages_go_uncompressed() -> None:
    params = negotiate_deflate(offer(("server_max_window_bits", "8")))
    assert params is not None and params.response().endswith("server_max_window_bits=8")
    server = WebSocket(deflate=PerMessageDeflate(params, 1 << 20))
    assert server.send_text("abc" * 100) == encode_message(TEXT, b"abc" * 100)
    # The client's messages are still inflated.
    received = server.receive(client_frame(TEXT, client_deflate(b"hi"), rsv=RSV1))
    assert received == [TextMessage("hi")]
