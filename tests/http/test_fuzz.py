"""Property tests: mutated requests either parse into a well-formed Request or raise
ProtocolError with a 4xx/5xx status; and what parses survives a serialize/re-parse round trip.

Each property runs with the default Limits and again with every leniency option on
(PERMISSIVE), fed mutations that those options are about (folds, spaces before colons, odd
methods and versions). A request the defaults accept must parse the same under PERMISSIVE.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from corral.errors import ProtocolError
from corral.http.body import ChunkedDecoder, decoder_for
from corral.http.parser import DEFAULT_LIMITS, Limits, Request, parse_head

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "M-SEARCH"]
TARGETS = ["/", "/a/b?c=d", "/%20x?", "http://example.com/p?q", "http://[::1]:80", "*"]
FIELDS = [
    ("Accept", "*/*"),
    ("User-Agent", "fuzz/1.0 (x)"),
    ("Connection", "keep-alive"),
    ("Connection", "close"),
    ("Cookie", "a=1; b=2"),
    ("X-Empty", ""),
    ("X-Obs", "caf\xe9"),
    ("Expect", "100-continue"),
    ("Content-Type", "text/plain"),
]
SPECIAL = [b"\r", b"\n", b"\x00", b" ", b"\t", b"\x0b", b"\x85", b"\xa0", b":", b",", b"\r\n"]

PERMISSIVE = Limits(
    permit_obsolete_folding=True,
    strip_header_spaces=True,
    permit_unconventional_http_method=True,
    permit_unconventional_http_version=True,
    casefold_http_method=True,
)
# What the leniency options are about: folds, whitespace before a colon, odd methods/versions.
LENIENT_METHODS = [*METHODS, "get", "G", "m-search", "Patch", "x#y"]
LENIENT_VERSIONS = ["HTTP/1.2", "HTTP/1.9"]
LENIENT_SPECIAL = [*SPECIAL, b"\r\n ", b"\r\n\t", b"\r\n \t", b" :", b"\t:", b"\r\n \r\n"]


@st.composite
def requests(draw: st.DrawFn, lenient: bool = False) -> bytes:
    """A valid request: request line, Host, some fields, and a body framed one of three ways.
    When lenient, the request line may be one only the leniency options admit."""
    method = draw(st.sampled_from(LENIENT_METHODS if lenient else METHODS))
    target = draw(st.sampled_from(TARGETS))
    versions = ["HTTP/1.1", "HTTP/1.0", *(LENIENT_VERSIONS if lenient else [])]
    version = draw(st.sampled_from(versions))
    if target == "*" and method != "OPTIONS":
        target = "/"  # RFC 9112 §3.2.4: asterisk-form is for OPTIONS only
    fields = draw(st.lists(st.sampled_from(FIELDS), unique_by=lambda field: field[0]))
    lines = [f"{name}: {value}" for name, value in fields] + ["Host: example.com"]
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    if framing == "chunked" and version != "HTTP/1.0":
        lines.append("Transfer-Encoding: chunked")
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\nX-T: 1\r\n\r\n"
    elif framing == "length":
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    else:
        payload = b""
    lines = [f"{method} {target} {version}", *draw(st.permutations(lines))]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


@st.composite
def mutated(draw: st.DrawFn, lenient: bool = False) -> bytes:
    raw = bytearray(draw(requests(lenient)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(raw)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "swap"]))
        if kind == "flip" and pos < len(raw):
            raw[pos] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            raw[pos:pos] = draw(st.sampled_from(LENIENT_SPECIAL if lenient else SPECIAL))
        elif kind == "delete":
            del raw[pos : pos + draw(st.integers(1, 3))]
        else:
            raw = bytearray(_reorder_lines(bytes(raw), kind, draw(st.integers(0, 50))))
    return bytes(raw)


def _reorder_lines(raw: bytes, kind: str, index: int) -> bytes:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if len(lines) < 3:
        return raw
    i = 1 + index % (len(lines) - 1)
    if kind == "duplicate":
        lines.insert(i, lines[i])
    else:
        j = 1 + (index * 7) % (len(lines) - 1)
        lines[i], lines[j] = lines[j], lines[i]
    return b"\r\n".join(lines) + sep + rest


TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Z]+")
METHOD = re.compile(r"[$%&'*+\-.^_0-9A-Z]{3,20}")
VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")


def check_well_formed(
    request: Request, used: int, buf: bytes, limits: Limits = DEFAULT_LIMITS
) -> None:
    assert 0 < used <= len(buf)
    assert buf[:used].endswith(b"\r\n\r\n")
    if limits.permit_unconventional_http_method:
        # A token; upper case here because PERMISSIVE casefolds too.
        assert TOKEN.fullmatch(request.method)
    else:
        assert METHOD.fullmatch(request.method)
    assert request.version in ("HTTP/1.0", "HTTP/1.1")
    assert re.fullmatch(r"[\x21-\x7e]+", request.target) and "#" not in request.target
    if request.target.startswith("/"):
        assert request.target == request.path + (
            "?" + request.query if "?" in request.target else ""
        )
    for name, value in request.headers:
        assert TOKEN.fullmatch(name)
        assert VALUE.fullmatch(value), value
    assert request.content_length is None or request.content_length >= 0
    assert not (request.chunked and request.content_length is not None)
    assert not (request.chunked and request.version == "HTTP/1.0")
    names = [name for name, _ in request.headers]
    assert request.version == "HTTP/1.0" or names.count("HOST") == 1
    # RFC 9112 §3.2.2-3: an authority exactly for absolute-form and CONNECT targets.
    if request.authority is None:
        assert request.target.startswith("/") or request.target == "*"
    else:
        assert request.authority in request.target


def decode(request: Request, rest: bytes) -> tuple[bytes, list[tuple[str, str]], bool]:
    decoder = decoder_for(request)
    body, _ = decoder.feed(rest)
    trailers = decoder.trailers if isinstance(decoder, ChunkedDecoder) else []
    return body, trailers, decoder.done


def serialize(request: Request, body: bytes, trailers: list[tuple[str, str]]) -> bytes:
    head = f"{request.method} {request.target} {request.version}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in request.headers) + "\r\n"
    if not request.chunked:
        return head.encode("latin-1") + body
    chunks = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
    tail = "".join(f"{name}: {value}\r\n" for name, value in trailers) + "\r\n"
    return head.encode("latin-1") + chunks + b"0\r\n" + tail.encode("latin-1")


def check_round_trip(
    request: Request,
    body: bytes,
    trailers: list[tuple[str, str]],
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    again = serialize(request, body, trailers)
    parsed = parse_head(again, limits)
    assert parsed is not None
    assert parsed[0] == request
    assert decode(parsed[0], again[parsed[1] :]) == (body, trailers, True)


def parse_or_fail_cleanly(raw: bytes, limits: Limits) -> None:
    try:
        parsed = parse_head(raw, limits)
        if parsed is None:
            event("incomplete head")
            return
        request, used = parsed
        check_well_formed(request, used, raw, limits)
        body, trailers, done = decode(request, raw[used:])
    except ProtocolError as exc:
        event(f"rejected: {exc.status}")
        assert 400 <= exc.status < 600
        return
    event("accepted" if done else "accepted, body incomplete")
    if done:
        check_round_trip(request, body, trailers, limits)


@FUZZ
@given(mutated())
def test_mutations_parse_or_fail_cleanly(raw: bytes) -> None:
    parse_or_fail_cleanly(raw, DEFAULT_LIMITS)


@FUZZ
@given(mutated(lenient=True))
def test_permissive_mutations_parse_or_fail_cleanly(raw: bytes) -> None:
    parse_or_fail_cleanly(raw, PERMISSIVE)
    # The options only ever admit more: what the defaults accept parses the same under them.
    try:
        strict = parse_head(raw)
    except ProtocolError:
        return
    if strict is not None:
        assert parse_head(raw, PERMISSIVE) == strict


@settings(max_examples=150, deadline=None)
@given(requests())
def test_valid_requests_parse_and_round_trip(raw: bytes) -> None:
    parsed = parse_head(raw)
    assert parsed is not None
    request, used = parsed
    check_well_formed(request, used, raw)
    body, trailers, done = decode(request, raw[used:])
    assert done
    check_round_trip(request, body, trailers)
    assert parse_head(raw, PERMISSIVE) == parsed


@settings(max_examples=150, deadline=None)
@given(requests(lenient=True))
def test_lenient_requests_parse_under_permissive_and_round_trip(raw: bytes) -> None:
    parsed = parse_head(raw, PERMISSIVE)
    assert parsed is not None
    request, used = parsed
    check_well_formed(request, used, raw, PERMISSIVE)
    body, trailers, done = decode(request, raw[used:])
    assert done
    check_round_trip(request, body, trailers, PERMISSIVE)


@settings(max_examples=300, deadline=None)
@given(raw=mutated())
def test_mutations_get_one_answer_however_split(
    raw: bytes,
    splits: dict[str, Callable[[bytes], list[bytes]]],
    run_request: Callable[..., dict[str, Any]],
) -> None:
    # Whole, line by line, byte by byte or in random pieces: the same request, the same body,
    # or the same status. (Fixtures from conftest.py, session-scoped.)
    whole = run_request([raw])
    for name in ("lines", "bytes", "random0"):
        assert run_request(splits[name](raw)) == whole, name


@settings(max_examples=200, deadline=None)
@given(raw=mutated(lenient=True))
def test_permissive_mutations_get_one_answer_however_split(
    raw: bytes,
    splits: dict[str, Callable[[bytes], list[bytes]]],
    run_request: Callable[..., dict[str, Any]],
) -> None:
    whole = run_request([raw], PERMISSIVE)
    for name in ("lines", "bytes", "random0"):
        assert run_request(splits[name](raw), PERMISSIVE) == whole, name
