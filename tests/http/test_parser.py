"""Request-head parser: the corpus under every split, then limits, persistence and pipelining."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from corral.errors import ProtocolError
from corral.http.body import decoder_for
from corral.http.parser import (
    DEFAULT_LIMITS,
    MAX_FIELD_SIZE,
    MAX_FIELDS,
    MAX_HEAD_SIZE,
    MAX_REQUEST_LINE,
    Limits,
    Request,
    parse_field_line,
    parse_head,
)

# ---------------------------------------------------------------------------------------------
# Corpus (fixtures in conftest.py)

Splitter = Callable[[bytes], list[bytes]]
Runner = Callable[..., dict[str, Any]]


DEFAULT_EXPECT = {"body": "", "leftover": "", "trailers": [], "body_complete": True}


def test_corpus_case(
    corpus_case: dict[str, Any], splits: dict[str, Splitter], run_request: Runner
) -> None:
    limits = Limits(**corpus_case.get("limits", {}))
    raw = corpus_case["raw"]
    results = {name: run_request(split(raw), limits) for name, split in splits.items()}
    first = results["whole"]
    for name, result in results.items():
        assert result == first, f"{name} split disagrees with whole feed"
    if "status" in corpus_case:
        assert first == {"status": corpus_case["status"]}, corpus_case["why"]
    else:
        expect = {**DEFAULT_EXPECT, **corpus_case["expect"]}
        got = {key: first.get(key, "<missing>") for key in expect}
        assert got == expect, corpus_case["why"]


def test_corpus_is_big_and_explained(corpus_cases: list[dict[str, Any]]) -> None:
    cases = corpus_cases
    assert len(cases) >= 120
    assert all("RFC" in case["why"] or "corral" in case["why"] for case in cases)
    assert sum("status" in case for case in cases) >= 60


# ---------------------------------------------------------------------------------------------
# Shape of a result

GET = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"


def test_returns_request_and_bytes_used() -> None:
    parsed = parse_head(GET)
    assert parsed is not None
    request, used = parsed
    assert used == len(GET)
    assert request == Request(
        method="GET",
        target="/a?b=c",
        path="/a",
        query="b=c",
        version="HTTP/1.1",
        headers=[("HOST", "example.com"), ("ACCEPT", "*/*")],
        content_length=None,
        chunked=False,
        keep_alive=True,
        expect_continue=False,
    )


def test_bytearray_and_bytes_agree() -> None:
    assert parse_head(bytearray(GET)) == parse_head(GET)


@pytest.mark.parametrize("cut", range(len(GET)))
def test_every_prefix_needs_more(cut: int) -> None:
    assert parse_head(GET[:cut]) is None


def test_leading_empty_lines_are_counted_in_n() -> None:
    parsed = parse_head(b"\r\n\r\n" + GET)
    assert parsed is not None
    assert parsed[1] == 4 + len(GET)


def test_only_empty_lines_need_more() -> None:
    assert parse_head(b"\r\n" * 10) is None
    assert parse_head(b"\r\n\r") is None


def test_head_without_fields() -> None:
    parsed = parse_head(b"GET / HTTP/1.0\r\n\r\n")
    assert parsed is not None
    assert parsed[0].headers == []
    assert parsed[1] == 18


# ---------------------------------------------------------------------------------------------
# Pipelining


def test_two_requests_in_one_buffer() -> None:
    first = b"POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    second = b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n"
    buf = first + second
    parsed = parse_head(buf)
    assert parsed is not None
    request, used = parsed
    assert used == len(first) - 3
    decoder = decoder_for(request)
    body, rest = decoder.feed(buf[used:])
    assert (body, decoder.done) == (b"abc", True)
    assert rest == second
    again = parse_head(buf[used + 3 :])
    assert again is not None
    assert again[0].path == "/two"
    assert again[1] == len(second)


def test_pipelined_after_chunked_body() -> None:
    first = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    second = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    parsed = parse_head(first + second)
    assert parsed is not None
    decoder = decoder_for(parsed[0])
    body, rest = decoder.feed((first + second)[parsed[1] :])
    assert body == b"abc"
    assert rest == second
    follow = parse_head(rest)
    assert follow is not None
    assert follow[0].path == "/next"


# ---------------------------------------------------------------------------------------------
# Limits: complete heads and heads still arriving

SMALL = Limits(request_line=30, fields=3, field_size=40)


def status_of(buf: bytes, limits: Limits = DEFAULT_LIMITS) -> int | None:
    try:
        parse_head(buf, limits)
    except ProtocolError as exc:
        return exc.status
    return None


def test_request_line_limit_complete_and_incomplete() -> None:
    line = b"GET /" + b"a" * 21 + b" HTTP/1.1"  # 35 bytes
    assert status_of(line + b"\r\nHost: a\r\n\r\n", SMALL) == 414
    assert status_of(line, SMALL) == 414  # no CRLF yet
    assert status_of(line + b"\r\nHost: a\r\n", SMALL) == 414  # no blank line yet
    ok = b"GET /" + b"a" * 16 + b" HTTP/1.1"  # exactly 30 bytes
    assert status_of(ok + b"\r\nHost: a\r\n\r\n", SMALL) is None
    assert status_of(ok, SMALL) is None
    assert status_of(ok + b"\r", SMALL) is None  # the CR may start the CRLF


def test_request_line_limit_default() -> None:
    long_target = b"/" + b"x" * 4100
    assert status_of(b"GET " + long_target + b" HTTP/1.1\r\nHost: a\r\n\r\n") == 414
    assert status_of(b"GET " + long_target) == 414


def test_field_count_limit() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 2\r\n"
    assert status_of(head + b"\r\n", SMALL) is None
    assert status_of(head + b"D: 3\r\n\r\n", SMALL) == 431


def test_field_size_limit_complete_and_incomplete() -> None:
    field = b"X-Long: " + b"v" * 33  # 41 bytes
    head = b"GET / HTTP/1.1\r\nHost: a\r\n"
    assert status_of(head + field + b"\r\n\r\n", SMALL) == 431
    assert status_of(head + field, SMALL) == 431
    assert status_of(head + field[:-1] + b"\r\n\r\n", SMALL) is None
    assert status_of(head + field[:-1] + b"\r", SMALL) is None


def test_head_cap_stops_incomplete_head() -> None:
    limits = Limits(request_line=100, fields=2, field_size=100)
    assert limits.head_cap == 100 + 2 + 2 * 102 + 2
    head = b"GET / HTTP/1.1\r\n" + b"A: 1\r\n" * 60  # many short lines, never finished
    assert status_of(head, limits) == 431


def test_limit_zero_means_the_ceiling() -> None:
    limits = Limits(request_line=0, fields=0, field_size=0)
    assert limits.line_cap == MAX_REQUEST_LINE
    assert limits.fields_cap == MAX_FIELDS
    assert limits.field_size_cap == MAX_FIELD_SIZE
    assert limits.head_cap == MAX_HEAD_SIZE
    too_big = Limits(request_line=10**6, fields=10**6, field_size=10**7)
    assert (too_big.line_cap, too_big.fields_cap) == (MAX_REQUEST_LINE, MAX_FIELDS)
    assert status_of(b"GET /" + b"a" * MAX_REQUEST_LINE, limits) == 414
    assert status_of(b"GET / HTTP/1.1\r\n" + b"A: 1\r\n" * (MAX_HEAD_SIZE // 6), limits) == 431


def test_limits_are_frozen() -> None:
    with pytest.raises(AttributeError):
        DEFAULT_LIMITS.fields = 5  # type: ignore[misc]


def test_bare_lf_rejected_before_the_head_is_complete() -> None:
    assert status_of(b"GET / HTTP/1.1\nHost: a\n") == 400
    assert status_of(b"GET / HTTP/1.1\r\nHost: a\rX") == 400


def test_too_many_empty_lines() -> None:
    assert status_of(b"\r\n" * 3000) == 400
    assert status_of(b"\r\n" * 3000 + GET) == 400


HOSTILE_LINES = [
    b"X:" + b" " * 8000 + b"\x00",  # leading OWS then a bad byte
    b"X: a" + b" " * 8000 + b"\x00",  # trailing OWS then a bad byte
    b"X: " + b"a " * 4000 + b"\x00",
    b"X" * 8000 + b"\x00:",
    b"Connection: a" + b" " * 8000 + b"b",  # list parsing over long runs of spaces
    b"Transfer-Encoding: a" + b" " * 8000 + b"b",
    b"Expect: a" + b" \t" * 4000 + b"b",
]


@pytest.mark.parametrize("line", HOSTILE_LINES, ids=range(len(HOSTILE_LINES)))
def test_hostile_heads_take_linear_time(line: bytes) -> None:
    # 99 lines of 8 KB each: a backtracking regex or a rescanning split would take seconds.
    head = b"GET / HTTP/1.1\r\nHost: a\r\n" + (line + b"\r\n") * 99 + b"\r\n"
    started = time.perf_counter()
    status_of(head)
    assert time.perf_counter() - started < 0.5


# ---------------------------------------------------------------------------------------------
# Persistence and Expect


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"Close", False),
        (b"1.1", b"keep-alive", True),
        (b"1.1", b"upgrade, close", False),
        (b"1.1", b"closed", True),
        (b"1.1", b"", True),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"KEEP-ALIVE", True),
        (b"1.0", b"te,  keep-alive ,x", True),
        (b"1.0", b"keep-alive, close", False),
        (b"1.0", b"keep-alives", False),
    ],
)
def test_keep_alive(version: bytes, connection: bytes | None, keep_alive: bool) -> None:
    head = b"GET / HTTP/" + version + b"\r\nHost: a\r\n"
    if connection is not None:
        head += b"Connection: " + connection + b"\r\n"
    parsed = parse_head(head + b"\r\n")
    assert parsed is not None
    assert parsed[0].keep_alive is keep_alive


@pytest.mark.parametrize(
    ("version", "expect", "expect_continue"),
    [
        (b"1.1", b"100-continue", True),
        (b"1.1", b"100-CONTINUE", True),
        (b"1.1", b"foo, 100-continue", True),
        (b"1.1", b"100-continues", False),
        (b"1.1", None, False),
        (b"1.0", b"100-continue", False),
    ],
)
def test_expect_continue(version: bytes, expect: bytes | None, expect_continue: bool) -> None:
    head = b"PUT / HTTP/" + version + b"\r\nHost: a\r\nContent-Length: 1\r\n"
    if expect is not None:
        head += b"Expect: " + expect + b"\r\n"
    parsed = parse_head(head + b"\r\n")
    assert parsed is not None
    assert parsed[0].expect_continue is expect_continue


# ---------------------------------------------------------------------------------------------
# Errors say why


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", "method"),
        (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", "version"),
        (b"GET /# HTTP/1.1\r\nHost: a\r\n\r\n", "fragment"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n x\r\n\r\n", "folding"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "colon"),
        (b"GET / HTTP/1.1\r\n\r\n", "Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", "Content-Length"),
    ],
)
def test_reasons(raw: bytes, words: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_head(raw)
    assert words in info.value.reason


def test_parse_field_line() -> None:
    assert parse_field_line("x-a:  b c \t") == ("X-A", "b c")
    with pytest.raises(ProtocolError) as info:
        parse_field_line("no colon here")
    assert info.value.status == 400


def test_sans_io_imports_nothing_that_does_io() -> None:
    # STYLE.md: the http package never imports socket, select, selectors, ssl, threading or
    # asyncio. A fresh interpreter shows what importing the parser and decoders pulls in.
    code = (
        "import sys, corral.http.parser, corral.http.body; "
        "print(sorted({'socket', 'select', 'selectors', 'ssl', 'threading', 'asyncio'}"
        " & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
