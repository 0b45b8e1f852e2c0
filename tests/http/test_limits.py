"""Request-head size limits, counted as Gunicorn 27 counts them (docs/http.md, "Limits").

`limit_request_line` counts the request line without its CRLF, `limit_request_field_size` a
field line with its CRLF, `limit_request_fields` the fields after unfolding. For each: exactly
at the limit passes and one byte (or one field) over is refused, with the same answer whether
the head arrives whole or in pieces; 0 and values above the ceiling mean what they mean in
Gunicorn, bounded where Gunicorn is not. (tests/http/test_gunicorn_parity.py checks the same
boundaries against Gunicorn's own parser when it is installed.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from corral.errors import ProtocolError
from corral.http.parser import (
    DEFAULT_FIELD_SIZE,
    DEFAULT_LIMITS,
    MAX_FIELD_SECTION,
    MAX_FIELD_SIZE,
    MAX_FIELDS,
    MAX_REQUEST_LINE,
    UNLIMITED_REQUEST_LINE,
    Limits,
    parse_head,
)

Splitter = Callable[[bytes], list[bytes]]
Runner = Callable[..., dict[str, Any]]

HOST = b"Host: a\r\n"


def request_line(size: int) -> bytes:
    """A request line of exactly `size` bytes, without its CRLF."""
    return b"GET /" + b"a" * (size - 14) + b" HTTP/1.1"


def field_line(size: int) -> bytes:
    """A field line of exactly `size` bytes, without its CRLF."""
    return b"X-A: " + b"a" * (size - 5)


def with_fields(count: int) -> bytes:
    """A complete head with exactly `count` fields, Host among them."""
    return b"GET / HTTP/1.1\r\n" + HOST + b"".join(b"X-%d: v\r\n" % n for n in range(count - 1))


def outcome(
    raw: bytes, limits: Limits, splits: dict[str, Splitter], run_request: Runner
) -> int | str:
    """The status raw is refused with, or "ok", after checking every split agrees.

    Heads over 20 KB are fed whole and in quarters: in small pieces they would cost quadratic
    time here (each piece re-parses the whole buffer; a worker waits for a line end instead)."""
    if len(raw) < 20_000:
        results = {name: run_request(split(raw), limits) for name, split in splits.items()}
    else:
        step = len(raw) // 4 + 1
        quarters = [raw[pos : pos + step] for pos in range(0, len(raw), step)]
        results = {"whole": run_request([raw], limits), "quarters": run_request(quarters, limits)}
    first = results["whole"]
    for name, result in results.items():
        assert result == first, f"{name} split disagrees with whole feed"
    assert "head_complete" not in first
    return first.get("status", "ok")


# (setting, length of the request line, expected)
REQUEST_LINE_CASES = [
    (4094, 4094, "ok"),  # the default
    (4094, 4095, 414),
    (30, 30, "ok"),
    (30, 31, 414),
    (MAX_REQUEST_LINE, MAX_REQUEST_LINE, "ok"),
    (MAX_REQUEST_LINE, MAX_REQUEST_LINE + 1, 414),
    (9000, MAX_REQUEST_LINE, "ok"),  # above the maximum means the maximum, as in Gunicorn
    (9000, MAX_REQUEST_LINE + 1, 414),
    (-1, MAX_REQUEST_LINE + 1, 414),
    (0, MAX_REQUEST_LINE + 1, "ok"),  # 0: no limit in Gunicorn ...
    (0, UNLIMITED_REQUEST_LINE, "ok"),
    (0, UNLIMITED_REQUEST_LINE + 1, 414),  # ... but a bound here (1 MiB, as Gunicorn's C parser)
]


@pytest.mark.parametrize(("setting", "size", "expected"), REQUEST_LINE_CASES)
def test_request_line_limit(
    setting: int, size: int, expected: int | str, splits: dict[str, Splitter], run_request: Runner
) -> None:
    raw = request_line(size) + b"\r\n" + HOST + b"\r\n"
    assert outcome(raw, Limits(request_line=setting), splits, run_request) == expected


@pytest.mark.parametrize(("size", "expected"), [(30, "ok"), (31, 414)])
def test_request_line_limit_after_an_empty_line(
    size: int, expected: int | str, splits: dict[str, Splitter], run_request: Runner
) -> None:
    # RFC 9112 §2.2: the empty line skipped before the request line is not part of it.
    raw = b"\r\n" + request_line(size) + b"\r\n" + HOST + b"\r\n"
    assert outcome(raw, Limits(request_line=30), splits, run_request) == expected


# (setting, number of fields, expected)
FIELD_COUNT_CASES = [
    (100, 100, "ok"),  # the default
    (100, 101, 431),
    (3, 3, "ok"),
    (3, 4, 431),
    (1, 1, "ok"),
    (1, 2, 431),
    (0, MAX_FIELDS, "ok"),  # 0 means the maximum, as in Gunicorn
    (0, MAX_FIELDS + 1, 431),
    (40000, MAX_FIELDS + 1, 431),
]


@pytest.mark.parametrize(("setting", "count", "expected"), FIELD_COUNT_CASES)
def test_field_count_limit(
    setting: int, count: int, expected: int | str, splits: dict[str, Splitter], run_request: Runner
) -> None:
    raw = with_fields(count) + b"\r\n"
    assert outcome(raw, Limits(fields=setting), splits, run_request) == expected


# (setting, length of the field line without CRLF, expected): the CRLF counts.
FIELD_SIZE_CASES = [
    (8190, 8188, "ok"),  # the default: 8188 + CRLF = 8190
    (8190, 8189, 431),  # issue 10: Gunicorn refuses this one, and so do we
    (20, 18, "ok"),
    (20, 19, 431),
    (0, DEFAULT_FIELD_SIZE - 2, "ok"),  # 0 means 8190 in Gunicorn 27 (its docs say unlimited)
    (0, DEFAULT_FIELD_SIZE - 1, 431),
    (MAX_FIELD_SIZE, MAX_FIELD_SIZE - 2, "ok"),
    (MAX_FIELD_SIZE, MAX_FIELD_SIZE - 1, 431),
    (70000, MAX_FIELD_SIZE - 1, 431),  # Gunicorn has no ceiling; ours is 64 KiB
]


@pytest.mark.parametrize(("setting", "size", "expected"), FIELD_SIZE_CASES)
def test_field_size_limit(
    setting: int, size: int, expected: int | str, splits: dict[str, Splitter], run_request: Runner
) -> None:
    raw = b"GET / HTTP/1.1\r\n" + HOST + field_line(size) + b"\r\n\r\n"
    assert outcome(raw, Limits(field_size=setting), splits, run_request) == expected


@pytest.mark.parametrize("setting", [1, 2])
def test_tiny_field_size_refuses_every_field(setting: int) -> None:
    limits = Limits(field_size=setting)
    assert limits.field_line_cap == 0
    assert parse_head(b"GET / HTTP/1.0\r\n\r\n", limits) is not None
    with pytest.raises(ProtocolError) as info:
        parse_head(b"GET / HTTP/1.0\r\nA:\r\n\r\n", limits)
    assert info.value.status == 431


# ---------------------------------------------------------------------------------------------
# Heads still arriving are refused as soon as they are over a limit

SMALL = Limits(request_line=30, fields=3, field_size=40)


def status_of(buf: bytes, limits: Limits = DEFAULT_LIMITS) -> int | None:
    try:
        parse_head(buf, limits)
    except ProtocolError as exc:
        return exc.status
    return None


def test_request_line_over_the_limit_before_its_crlf() -> None:
    assert status_of(request_line(31), SMALL) == 414
    assert status_of(request_line(31) + b"\r\n" + HOST, SMALL) == 414  # no blank line yet
    assert status_of(request_line(30), SMALL) is None
    assert status_of(request_line(30) + b"\r", SMALL) is None  # the CR may start the CRLF


def test_field_over_the_limit_before_its_crlf() -> None:
    head = b"GET / HTTP/1.1\r\n" + HOST
    assert status_of(head + field_line(39), SMALL) == 431
    assert status_of(head + field_line(38), SMALL) is None
    assert status_of(head + field_line(38) + b"\r", SMALL) is None


def test_section_cap_stops_an_endless_head() -> None:
    limits = Limits(request_line=100, fields=2, field_size=100)
    # At most 2 fields of 100 bytes, CRLF included, and the blank line.
    assert limits.section_cap == 2 * 100 + 2
    head = b"GET / HTTP/1.1\r\n" + b"A: 1\r\n" * 60  # many short lines, never finished
    assert status_of(head, limits) == 431


def test_the_largest_valid_head_is_accepted() -> None:
    limits = Limits(request_line=40, fields=3, field_size=30)
    section = HOST + (field_line(28) + b"\r\n") * 2 + b"\r\n"
    head = request_line(40) + b"\r\n" + section
    assert status_of(head, limits) is None
    assert len(section) <= limits.section_cap
    for cut in range(len(head)):
        assert status_of(head[:cut], limits) is None


def test_field_section_never_exceeds_one_mebibyte() -> None:
    # Gunicorn would buffer 32768 fields of 8 KB (256 MiB) with these settings; we stop at 1 MiB,
    # however long the request line may be.
    limits = Limits(request_line=0, fields=0, field_size=0)
    assert limits.section_cap == MAX_FIELD_SECTION
    fields = MAX_FIELD_SECTION // 8000 + 1
    section = HOST + (field_line(7998) + b"\r\n") * fields
    for line in (request_line(100), request_line(UNLIMITED_REQUEST_LINE)):
        head = line + b"\r\n" + section
        assert status_of(head, limits) == 431
        assert status_of(head + b"\r\n", limits) == 431
    fitting = HOST + (field_line(7998) + b"\r\n") * (fields - 2) + b"\r\n"
    assert len(fitting) <= MAX_FIELD_SECTION
    assert status_of(request_line(UNLIMITED_REQUEST_LINE) + b"\r\n" + fitting, limits) is None


def test_limits_are_frozen() -> None:
    with pytest.raises(AttributeError):
        DEFAULT_LIMITS.fields = 5  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# permit_obsolete_folding: fields are counted unfolded, their size on the wire


def test_fold_limits_count_fields_and_wire_size() -> None:
    folded = b"GET / HTTP/1.1\r\nHost: a\r\nX: a" + b"\r\n b" * 9 + b"\r\n\r\n"
    # "X: a" + CRLF, then 9 continuation lines " b" + CRLF: 6 + 9 * 4 = 42 bytes on the wire.
    limits = Limits(fields=2, field_size=42, permit_obsolete_folding=True)
    parsed = parse_head(folded, limits)
    assert parsed is not None
    assert parsed[0].headers == [("HOST", "a"), ("X", "a b b b b b b b b b")]
    # 9 continuation lines are not 9 fields; but the whole folded field must fit field_size,
    # though unfolded it is only 22 bytes.
    assert status_of(folded, Limits(fields=2, field_size=41, permit_obsolete_folding=True)) == 431
    assert status_of(folded, Limits(fields=1, permit_obsolete_folding=True)) == 431
