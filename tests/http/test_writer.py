"""Response bytes: status and header checks, chunks, and the complete answers the writer builds."""

from __future__ import annotations

import email.utils

import pytest

from corral.http import writer


@pytest.mark.parametrize("status", ["200 OK", "404 Not Found", "599 x\ty", "204 ", "100"])
def test_valid_status(status: str) -> None:
    assert writer.check_status(status) == int(status[:3])


@pytest.mark.parametrize(
    "status", ["20 OK", "200OK", "600 Bad", "099 Low", "200 OK\r\nX: y", "200 a\x00", ""]
)
def test_invalid_status(status: str) -> None:
    with pytest.raises(ValueError, match="status"):
        writer.check_status(status)


def test_status_must_be_str() -> None:
    with pytest.raises(ValueError, match="str"):
        writer.check_status(b"200 OK")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-A", "b"), ("x-a", ""), ("X-A", " padded\t"), ("X-!#$%&'*+.^_`|~", "caf\xe9")],
)
def test_valid_header(name: str, value: str) -> None:
    writer.check_header(name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X A", "b"),
        ("X-A:", "b"),
        ("", "b"),
        ("X-A\r\nX-B", "b"),
        ("X-A", "b\r\nX-B: c"),
        ("X-A", "b\nc"),
        ("X-A", "b\x00"),
        ("X-A", "b\x7f"),
        ("X-\xe9", "b"),
    ],
)
def test_invalid_header(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="header"):
        writer.check_header(name, value)


def test_header_must_be_str() -> None:
    with pytest.raises(ValueError, match="str"):
        writer.check_header("X-A", b"b")  # type: ignore[arg-type]


def test_encode_chunk() -> None:
    assert writer.encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert writer.encode_chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"


@pytest.mark.parametrize(
    "seconds", [0, 784111777, 951782400, 1_700_000_000.9, 2_000_000_000, 253402300799]
)
def test_imf_fixdate_is_what_email_utils_writes(seconds: float) -> None:
    assert writer.imf_fixdate(seconds) == email.utils.formatdate(seconds, usegmt=True)


def test_imf_fixdate_rfc_example() -> None:
    assert writer.imf_fixdate(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110 §5.6.7


def test_date_header_is_an_imf_fixdate_once_per_second() -> None:
    date = writer.DateHeader()
    line = date.line()
    assert line.startswith(b"Date: ") and line.endswith(b" GMT\r\n")
    parsed = email.utils.parsedate_to_datetime(line[6:-2].decode())
    assert parsed.tzinfo is not None
    again = date.line()
    assert again is line or again != line  # built once per second: the same bytes, or a new second


def test_error_response_closes_and_says_why() -> None:
    response = writer.error_response(431)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"\r\nConnection: close\r\n" in head
    assert b"\r\nContent-Length: %d" % len(body) in head
    assert body == b"431 Request Header Fields Too Large\n"
    assert writer.error_response(599).startswith(b"HTTP/1.1 599 Error\r\n")
    assert writer.error_response(400, "HTTP/1.0").startswith(b"HTTP/1.0 400 Bad Request\r\n")


@pytest.mark.parametrize(
    ("status", "keep_alive", "head", "body"),
    [(200, True, False, b"ok\n"), (503, False, False, b"stopping\n"), (200, True, True, b"")],
)
def test_health_response(status: int, keep_alive: bool, head: bool, body: bytes) -> None:
    response = writer.health_response(status, keep_alive, head)
    top, _, rest = response.partition(b"\r\n\r\n")
    assert top.startswith(f"HTTP/1.1 {status} ".encode())
    assert (b"Connection: close" in top) is not keep_alive
    assert b"Cache-Control: no-store" in top
    assert rest == body
