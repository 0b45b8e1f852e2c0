"""Body decoders: Content-Length and chunked framing, under every split, with leftovers."""

from __future__ import annotations

import random
import time

import pytest

from corral.errors import ProtocolError
from corral.http.body import (
    FORBIDDEN_TRAILERS,
    ChunkedDecoder,
    ContentLengthDecoder,
    decoder_for,
)
from corral.http.parser import parse_head

Decoder = ContentLengthDecoder | ChunkedDecoder


def feed_all(decoder: Decoder, pieces: list[bytes]) -> tuple[bytes, bytes]:
    body, leftover = bytearray(), bytearray()
    for piece in pieces:
        data, rest = decoder.feed(piece)
        body += data
        leftover += rest
        if rest:
            assert decoder.done, "leftover before the body ended"
    return bytes(body), bytes(leftover)


def two_way_splits(raw: bytes) -> list[list[bytes]]:
    return [[raw[:cut], raw[cut:]] for cut in range(len(raw) + 1)]


# ---------------------------------------------------------------------------------------------
# Content-Length


def test_content_length_exact() -> None:
    decoder = ContentLengthDecoder(5)
    assert not decoder.done
    assert decoder.feed(b"hello") == (b"hello", b"")
    assert decoder.done


def test_content_length_in_pieces_with_leftover() -> None:
    decoder = ContentLengthDecoder(5)
    assert decoder.feed(b"he") == (b"he", b"")
    assert decoder.feed(b"") == (b"", b"")
    assert not decoder.done
    assert decoder.feed(b"lloGET") == (b"llo", b"GET")
    assert decoder.done
    assert decoder.feed(b" / HTTP/1.1") == (b"", b" / HTTP/1.1")


def test_content_length_zero_is_done_at_once() -> None:
    decoder = ContentLengthDecoder(0)
    assert decoder.done
    assert decoder.feed(b"next") == (b"", b"next")


@pytest.mark.parametrize("pieces", two_way_splits(b"0123456789tail"))
def test_content_length_any_split(pieces: list[bytes]) -> None:
    assert feed_all(ContentLengthDecoder(10), pieces) == (b"0123456789", b"tail")


def test_content_length_returns_the_same_object_when_possible() -> None:
    data = b"x" * 1000
    body, _ = ContentLengthDecoder(5000).feed(data)
    assert body is data


# ---------------------------------------------------------------------------------------------
# Chunked

CHUNKED = (
    b'4;a=b;c="q;\\"x"\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n'
    b"0\r\nX-Sum: 1\r\n\r\nNEXT"
)


@pytest.mark.parametrize("pieces", two_way_splits(CHUNKED))
def test_chunked_any_two_way_split(pieces: list[bytes]) -> None:
    decoder = ChunkedDecoder()
    assert feed_all(decoder, pieces) == (b"Wikipedia in \r\n\r\nchunks.", b"NEXT")
    assert decoder.done
    assert decoder.trailers == [("X-SUM", "1")]


@pytest.mark.parametrize("seed", range(20))
def test_chunked_random_splits(seed: int) -> None:
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(CHUNKED):
        size = rng.randint(0, 7)
        pieces.append(CHUNKED[pos : pos + size])
        pos += size
    assert feed_all(ChunkedDecoder(), pieces) == (b"Wikipedia in \r\n\r\nchunks.", b"NEXT")


def test_chunked_byte_by_byte() -> None:
    pieces = [CHUNKED[i : i + 1] for i in range(len(CHUNKED))]
    assert feed_all(ChunkedDecoder(), pieces) == (b"Wikipedia in \r\n\r\nchunks.", b"NEXT")


def test_chunked_feed_after_done() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"0\r\n\r\n") == (b"", b"")
    assert decoder.done
    assert decoder.feed(b"more") == (b"", b"more")


def test_chunked_not_done_without_final_crlf() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"3\r\nabc\r\n0\r\n") == (b"abc", b"")
    assert not decoder.done
    assert decoder.feed(b"\r\n") == (b"", b"")
    assert decoder.done


def test_chunked_largest_size_is_accepted() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"ffffffffffffffff\r\nabc") == (b"abc", b"")
    assert not decoder.done


def reject(decoder: ChunkedDecoder, data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decoder.feed(data)
    return info.value


def test_chunk_ext_cap() -> None:
    ext = b";a=" + b"x" * 97  # 100 bytes of extension
    assert feed_all(ChunkedDecoder(max_chunk_ext=100), [b"1" + ext + b"\r\nz\r\n0\r\n\r\n"]) == (
        b"z",
        b"",
    )
    error = reject(ChunkedDecoder(max_chunk_ext=100), b"1" + ext + b"x\r\nz\r\n0\r\n\r\n")
    assert error.status == 400


def test_chunk_ext_cap_applies_before_the_line_ends() -> None:
    decoder = ChunkedDecoder(max_chunk_ext=100)
    decoder.feed(b"1;a=" + b"x" * 100)
    assert reject(decoder, b"x" * 20).status == 400


def test_trailer_size_cap() -> None:
    line = b"X-A: " + b"v" * 93  # 98 bytes + CRLF = 100
    ok = b"0\r\n" + line + b"\r\n\r\n"
    decoder = ChunkedDecoder(max_trailer_size=100)
    assert feed_all(decoder, [ok]) == (b"", b"")
    assert decoder.trailers == [("X-A", "v" * 93)]
    too_big = b"0\r\n" + line + b"v\r\n\r\n"
    assert reject(ChunkedDecoder(max_trailer_size=100), too_big).status == 431


def test_trailer_size_cap_counts_all_lines() -> None:
    decoder = ChunkedDecoder(max_trailer_size=30)
    error = reject(decoder, b"0\r\n" + b"X-A: 1234567\r\n" * 3 + b"\r\n")
    assert error.status == 431


def test_trailer_count_cap() -> None:
    decoder = ChunkedDecoder(max_trailer_fields=2)
    assert reject(decoder, b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n").status == 431


@pytest.mark.parametrize(
    "name", ["Content-Length", "transfer-encoding", "HOST", "Content-Type", "Trailer"]
)
def test_forbidden_trailers(name: str) -> None:
    assert name.upper() in FORBIDDEN_TRAILERS
    error = reject(ChunkedDecoder(), b"0\r\n" + name.encode() + b": x\r\n\r\n")
    assert error.status == 400


def test_large_upload_in_64k_pieces_is_linear() -> None:
    chunk = bytes(range(256)) * 32  # 8 KiB
    framed = (b"2000\r\n" + chunk + b"\r\n") * 1024 + b"0\r\n\r\n"  # 8 MiB of body
    decoder = ChunkedDecoder()
    started = time.perf_counter()
    total = 0
    for pos in range(0, len(framed), 65536):
        data, rest = decoder.feed(framed[pos : pos + 65536])
        total += len(data)
        assert rest == b""
    assert decoder.done
    assert total == 8 * 1024 * 1024
    assert time.perf_counter() - started < 2.0


def test_many_tiny_chunks() -> None:
    framed = b"1\r\nx\r\n" * 20000 + b"0\r\n\r\n"
    decoder = ChunkedDecoder()
    body = b"".join(
        decoder.feed(framed[pos : pos + 4096])[0] for pos in range(0, len(framed), 4096)
    )
    assert body == b"x" * 20000
    assert decoder.done


# ---------------------------------------------------------------------------------------------
# Choosing a decoder


def test_decoder_for_chunked() -> None:
    parsed = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert parsed is not None
    assert isinstance(decoder_for(parsed[0]), ChunkedDecoder)


def test_decoder_for_content_length() -> None:
    parsed = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\n")
    assert parsed is not None
    decoder = decoder_for(parsed[0])
    assert isinstance(decoder, ContentLengthDecoder)
    assert decoder.remaining == 7
    assert not decoder.done


def test_decoder_for_no_body() -> None:
    parsed = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parsed is not None
    decoder = decoder_for(parsed[0])
    assert decoder.done
    assert decoder.feed(b"GET /next") == (b"", b"GET /next")


# ---------------------------------------------------------------------------------------------
# limit_request_body


def test_decoder_for_refuses_a_content_length_over_the_limit() -> None:
    parsed = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
    assert parsed is not None
    with pytest.raises(ProtocolError) as error:
        decoder_for(parsed[0], max_body=10)
    assert error.value.status == 413
    assert isinstance(decoder_for(parsed[0], max_body=11), ContentLengthDecoder)
    assert isinstance(decoder_for(parsed[0], max_body=0), ContentLengthDecoder)  # 0: no limit


@pytest.mark.parametrize("limit", [9, 10, 11, 0])
def test_chunked_body_is_refused_at_the_size_line_that_passes_the_limit(limit: int) -> None:
    """Chunks of 4 + 6 bytes: refused under a limit of 9, at the second size line (before its
    data), under every split; served at 10 and above, and with no limit."""
    raw = b"4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n"
    for pieces in [[raw], [bytes([b]) for b in raw], *two_way_splits(raw)]:
        decoder = ChunkedDecoder(max_body=limit)
        if limit == 9:
            with pytest.raises(ProtocolError) as error:
                feed_all(decoder, pieces)
            assert error.value.status == 413
        else:
            assert feed_all(decoder, pieces) == (b"abcdefghij", b"")
    decoder = ChunkedDecoder(max_body=9)
    assert decoder.feed(b"4\r\nabcd\r\n") == (b"abcd", b"")
    with pytest.raises(ProtocolError):
        decoder.feed(b"6\r\n")  # refused before any byte of that chunk
