"""Request-head parser: the corpus under every split, then persistence and pipelining."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.config import Settings
from corral.errors import ProtocolError
from corral.http.body import decoder_for
from corral.http.parser import (
    DEFAULT_LIMITS,
    MAX_FIELD_SIZE,
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
    corpus_case: dict[str, Any],
    case_limits: Callable[[dict[str, Any]], Limits],
    splits: dict[str, Splitter],
    run_request: Runner,
) -> None:
    limits = case_limits(corpus_case)
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
# Heads still arriving (the size limits are in test_limits.py)


def status_of(buf: bytes, limits: Limits = DEFAULT_LIMITS) -> int | None:
    try:
        parse_head(buf, limits)
    except ProtocolError as exc:
        return exc.status
    return None


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


@pytest.mark.parametrize("version", [b"1.0", b"1.1"])
@pytest.mark.parametrize("connection", [None, b"keep-alive", b"Upgrade, keep-alive"])
def test_connect_never_keeps_alive(version: bytes, connection: bytes | None) -> None:
    # RFC 9110 §9.3.6: after CONNECT come tunnel bytes, never a request to serve.
    head = b"CONNECT example.com:443 HTTP/" + version + b"\r\nHost: example.com:443\r\n"
    if connection is not None:
        head += b"Connection: " + connection + b"\r\n"
    pipelined = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    parsed = parse_head(head + b"\r\n" + pipelined)
    assert parsed is not None
    request, used = parsed
    assert (request.method, request.keep_alive) == ("CONNECT", False)
    assert (head + b"\r\n" + pipelined)[used:] == pipelined


def test_absolute_form_target_still_keeps_alive() -> None:
    parsed = parse_head(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert parsed is not None
    assert parsed[0].keep_alive is True


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
    # asyncio, not even through the standard library (email.utils imports socket). A fresh
    # interpreter imports every module of the package and shows what that pulls in. It runs
    # with -S: site hooks such as the coverage .pth that `make test` installs import socket
    # and threading into every interpreter, so corral's own path is put on sys.path.
    # The HTTP/2 glue's library (h2, and hpack and hyperframe beside it) is on the path too.
    # It logs, and the standard library's logging imports threading (to lock its handlers):
    # that one is allowed with logging; nothing here may start a thread or do I/O.
    src = str(Path(corral.__file__).resolve().parent.parent)
    spec = importlib.util.find_spec("h2")
    assert spec is not None and spec.origin is not None
    libs = str(Path(spec.origin).resolve().parent.parent)
    code = (
        f"import sys; sys.path[:0] = [{src!r}, {libs!r}]; "
        "import importlib, pkgutil, corral.http; "
        "names = [m.name for m in pkgutil.iter_modules(corral.http.__path__)]; "
        "[importlib.import_module('corral.http.' + name) for name in names]; "
        "print(' '.join(names)); "
        "print(sorted({'socket', 'select', 'selectors', 'ssl', 'threading', 'asyncio'}"
        " & set(sys.modules) - ({'threading'} if 'logging' in sys.modules else set())))"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    modules, io_modules = result.stdout.splitlines()
    assert {"grammar", "parser", "body", "writer", "proxy", "h2"} <= set(modules.split())
    assert io_modules == "[]"


# ---------------------------------------------------------------------------------------------
# Leniency options (corpus cases in tests/corpus/options.json; here what the corpus cannot say)

LENIENCY = (
    "permit_obsolete_folding",
    "strip_header_spaces",
    "permit_unconventional_http_method",
    "permit_unconventional_http_version",
    "casefold_http_method",
)
PERMISSIVE = Limits(**dict.fromkeys(LENIENCY, True))


def test_leniency_options_are_settings_with_the_same_default() -> None:
    # The worker builds Limits from the settings of the same names; all default to off.
    settings = Settings()
    for name in LENIENCY:
        assert getattr(DEFAULT_LIMITS, name) is False
        assert getattr(settings, name) is False, name


def test_lenient_flags() -> None:
    assert not DEFAULT_LIMITS.lenient_request_line and not DEFAULT_LIMITS.lenient_fields
    assert not Limits(casefold_http_method=True).lenient_request_line
    assert Limits(permit_unconventional_http_method=True).lenient_request_line
    assert Limits(permit_unconventional_http_version=True).lenient_request_line
    assert Limits(permit_obsolete_folding=True).lenient_fields
    assert Limits(strip_header_spaces=True).lenient_fields
    assert Limits(fields=3, strip_header_spaces=True).fields_cap == 3


def test_options_do_not_change_what_the_defaults_accept() -> None:
    assert parse_head(GET, PERMISSIVE) == parse_head(GET)
    head = b"PUT http://a.example/x HTTP/1.0\r\nX-A:  b \r\nContent-Length: 0\r\n\r\n"
    assert parse_head(head, PERMISSIVE) == parse_head(head)


@pytest.mark.parametrize(
    ("raw", "limits", "words"),
    [
        (b"GET / HTTP/1.1\r\n X: a\r\nHost: a\r\n\r\n", PERMISSIVE, "first header field"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX\r\n : a\r\n\r\n", PERMISSIVE, "outside a field value"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n \r\n\r\n", PERMISSIVE, "empty line"),
        (b"GET / HTTP/1.1\r\nHost:\r\n a\r\n\r\n", PERMISSIVE, "folding in Host"),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 1\r\n\r\n",
            PERMISSIVE,
            "Content-Length",
        ),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Limits(permit_obsolete_folding=True), "colon"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX Y : a\r\n\r\n", PERMISSIVE, "invalid field name"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX : \x00\r\n\r\n", PERMISSIVE, "field value"),
        (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", Limits(casefold_http_method=True), "method"),
        (
            b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
            Limits(permit_unconventional_http_version=True),
            "method",
        ),
        (b"g@t / HTTP/1.1\r\nHost: a\r\n\r\n", PERMISSIVE, "method"),
        (b"get / HTTP/1.1 \r\nHost: a\r\n\r\n", PERMISSIVE, "malformed request line"),
        (b"get /# HTTP/1.1\r\nHost: a\r\n\r\n", PERMISSIVE, "fragment"),
        (b"get / HTTP/1.22\r\nHost: a\r\n\r\n", PERMISSIVE, "invalid HTTP version"),
    ],
)
def test_lenient_reasons(raw: bytes, limits: Limits, words: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_head(raw, limits)
    assert info.value.status == 400
    assert words in info.value.reason


@pytest.mark.parametrize("version", [b"0.9", b"2.0", b"3.0", b"9.9"])
def test_other_major_versions_stay_505(version: bytes) -> None:
    assert status_of(b"get / HTTP/" + version + b"\r\nHost: a\r\n\r\n", PERMISSIVE) == 505


def test_unconventional_version_is_processed_as_http11() -> None:
    # RFC 9110 §6.2: the response, the framing and persistence are those of HTTP/1.1.
    limits = Limits(permit_unconventional_http_version=True)
    parsed = parse_head(b"GET / HTTP/1.7\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", limits)
    assert parsed is not None
    request = parsed[0]
    assert (request.version, request.keep_alive, request.expect_continue) == (
        "HTTP/1.1",
        True,
        True,
    )


def test_casefold_only_touches_ascii_letters() -> None:
    limits = Limits(permit_unconventional_http_method=True, casefold_http_method=True)
    parsed = parse_head(b"a-b_c.1~z / HTTP/1.1\r\nHost: a\r\n\r\n", limits)
    assert parsed is not None
    assert parsed[0].method == "A-B_C.1~Z"


def test_trailers_keep_the_strict_grammar() -> None:
    # The options cover the header section only (docs/http.md): trailers are never folded.
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    parsed = parse_head(head, PERMISSIVE)
    assert parsed is not None
    decoder = decoder_for(parsed[0])
    with pytest.raises(ProtocolError):
        decoder.feed(b"0\r\nX-T: a\r\n b\r\n\r\n")


LENIENT_HOSTILE = [
    b"X: a" + b"\r\n b" * 4000,  # one field folded thousands of times
    b"X: a" + b"\r\n" + b" " * 8000 + b"b",  # a long whitespace run before the continuation
    b"X" + b" " * 8000 + b":" + b" " * 8000 + b"\x00",  # spaces before and after the colon
    b"X" * 8000 + b" " * 8000 + b"\x00",
]


@pytest.mark.parametrize("lines", LENIENT_HOSTILE, ids=range(len(LENIENT_HOSTILE)))
def test_lenient_hostile_heads_take_linear_time(lines: bytes) -> None:
    # The largest limits, so that the hostile lines reach the grammar rather than a size limit.
    limits = Limits(
        request_line=0,
        fields=0,
        field_size=MAX_FIELD_SIZE,
        **dict.fromkeys(LENIENCY, True),
    )
    head = b"GET / HTTP/1.1\r\nHost: a\r\n" + (lines + b"\r\n") * 30 + b"\r\n"
    started = time.perf_counter()
    status_of(head, limits)
    assert time.perf_counter() - started < 0.5
