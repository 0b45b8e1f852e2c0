"""The size limits against Gunicorn's own request parser: with the same settings, corral refuses
the same heads with the same status (docs/http.md, "Limits").

Runs only where Gunicorn is installed (it is no dependency of corral); elsewhere every test here
is skipped. Gunicorn's pure-Python parser is the one compared: it is what Gunicorn runs unless
the optional gunicorn_h1c extension is installed. Where corral deliberately differs, the case
says so and the test checks both sides, so a change in either shows up here.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("gunicorn")

from gunicorn.config import Config
from gunicorn.http import errors
from gunicorn.http.parser import RequestParser

from corral.errors import ProtocolError
from corral.http.parser import Limits, parse_head

Outcome = int | str  # a status, or "ok"

# What Gunicorn's worker answers each parse error with (gunicorn/workers/base.py handle_error).
GUNICORN_STATUS: dict[type[Exception], int] = {
    errors.LimitRequestLine: 414,
    errors.LimitRequestHeaders: 431,
    errors.UnsupportedTransferCoding: 501,
}
# Setting name -> corral Limits keyword.
LIMITS = {
    "limit_request_line": "request_line",
    "limit_request_fields": "fields",
    "limit_request_field_size": "field_size",
    "permit_obsolete_folding": "permit_obsolete_folding",
}


def gunicorn_outcome(raw: bytes, settings: dict[str, Any]) -> tuple[Outcome, bool]:
    """(status or "ok", whether Gunicorn closes the connection after it)."""
    cfg = Config()
    if "http_parser" in cfg.settings:
        cfg.set("http_parser", "python")
    for name, value in settings.items():
        cfg.set(name, value)
    try:
        request = next(iter(RequestParser(cfg, iter([raw]), ("127.0.0.1", 40000))))
    except errors.ParseException as exc:
        return GUNICORN_STATUS.get(type(exc), 400), True
    return "ok", bool(request.should_close())


def corral_outcome(raw: bytes, settings: dict[str, Any]) -> tuple[Outcome, bool]:
    limits = Limits(**{LIMITS[name]: value for name, value in settings.items()})
    try:
        parsed = parse_head(raw, limits)
    except ProtocolError as exc:
        return exc.status, True
    assert parsed is not None
    return "ok", not parsed[0].keep_alive


def request_line(size: int) -> bytes:
    return b"GET /" + b"a" * (size - 14) + b" HTTP/1.1"


def head(line: bytes = b"GET / HTTP/1.1", fields: bytes = b"") -> bytes:
    return line + b"\r\nHost: a\r\n" + fields + b"\r\n"


def field_line(size: int) -> bytes:
    return b"X-A: " + b"a" * (size - 5) + b"\r\n"


def fields(count: int) -> bytes:
    """count - 1 fields, for a head with count fields once Host is counted."""
    return b"".join(b"X-%d: v\r\n" % n for n in range(count - 1))


SAME: list[tuple[str, bytes, dict[str, Any]]] = [
    ("line default at", head(request_line(4094)), {}),
    ("line default over", head(request_line(4095)), {}),
    ("line 30 at", head(request_line(30)), {"limit_request_line": 30}),
    ("line 30 over", head(request_line(31)), {"limit_request_line": 30}),
    ("line 8190 at", head(request_line(8190)), {"limit_request_line": 8190}),
    ("line 8190 over", head(request_line(8191)), {"limit_request_line": 8190}),
    ("line 9000 is 8190", head(request_line(8191)), {"limit_request_line": 9000}),
    ("line 0 unlimited", head(request_line(100_000)), {"limit_request_line": 0}),
    ("line after crlf at", b"\r\n" + head(request_line(30)), {"limit_request_line": 30}),
    ("line after crlf over", b"\r\n" + head(request_line(31)), {"limit_request_line": 30}),
    ("fields default at", head(fields=fields(100)), {}),
    ("fields default over", head(fields=fields(101)), {}),
    ("fields 3 at", head(fields=fields(3)), {"limit_request_fields": 3}),
    ("fields 3 over", head(fields=fields(4)), {"limit_request_fields": 3}),
    ("fields 0 at max", head(fields=fields(32768)), {"limit_request_fields": 0}),
    ("fields 0 over max", head(fields=fields(32769)), {"limit_request_fields": 0}),
    ("fields 40000 is max", head(fields=fields(32769)), {"limit_request_fields": 40000}),
    ("size default at", head(fields=field_line(8188)), {}),
    ("size default over (issue 10)", head(fields=field_line(8189)), {}),
    ("size 20 at", head(fields=field_line(18)), {"limit_request_field_size": 20}),
    ("size 20 over", head(fields=field_line(19)), {"limit_request_field_size": 20}),
    ("size 9 counts host", head(), {"limit_request_field_size": 9}),
    ("size 8 counts host", head(), {"limit_request_field_size": 8}),
    ("size 0 is 8190 at", head(fields=field_line(8188)), {"limit_request_field_size": 0}),
    ("size 0 is 8190 over", head(fields=field_line(8189)), {"limit_request_field_size": 0}),
    ("size 65536 at", head(fields=field_line(65534)), {"limit_request_field_size": 65536}),
    ("size 65536 over", head(fields=field_line(65535)), {"limit_request_field_size": 65536}),
    (
        "folded at",
        head(fields=b"X-A: 12345\r\n 12345\r\n"),
        {"limit_request_field_size": 20, "permit_obsolete_folding": True},
    ),
    (
        "folded over",
        head(fields=b"X-A: 123456\r\n 12345\r\n"),
        {"limit_request_field_size": 20, "permit_obsolete_folding": True},
    ),
    (
        "folded fields counted unfolded",
        head(fields=b"X-A: a\r\n b\r\n c\r\n"),
        {"limit_request_fields": 2, "permit_obsolete_folding": True},
    ),
    ("connect closes", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", {}),
    ("http/1.0 closes", b"GET / HTTP/1.0\r\n\r\n", {}),
    ("http/1.1 persists", head(), {}),
]


@pytest.mark.parametrize(("raw", "settings"), [c[1:] for c in SAME], ids=[c[0] for c in SAME])
def test_same_outcome_as_gunicorn(raw: bytes, settings: dict[str, Any]) -> None:
    assert corral_outcome(raw, settings) == gunicorn_outcome(raw, settings)


# (id, raw, settings, corral's outcome, Gunicorn's outcome): each one is in docs/http.md.
DIFFERENT: list[tuple[str, bytes, dict[str, Any], Outcome, Outcome]] = [
    (
        "line 0 is bounded at 1 MiB",
        head(request_line((1 << 20) + 1)),
        {"limit_request_line": 0},
        414,
        "ok",
    ),
    (
        "field size above 64 KiB is 64 KiB",
        head(fields=field_line(65535)),
        {"limit_request_field_size": 100_000},
        431,
        "ok",
    ),
    (
        "field section over 1 MiB",
        head(fields=field_line(8000) * 140),
        {"limit_request_fields": 200},
        431,
        "ok",
    ),
    ("two empty lines before the request line", b"\r\n\r\n" + head(), {}, "ok", 400),
]


@pytest.mark.parametrize(
    ("raw", "settings", "ours", "theirs"),
    [c[1:] for c in DIFFERENT],
    ids=[c[0] for c in DIFFERENT],
)
def test_documented_differences(
    raw: bytes, settings: dict[str, Any], ours: Outcome, theirs: Outcome
) -> None:
    assert corral_outcome(raw, settings)[0] == ours
    assert gunicorn_outcome(raw, settings)[0] == theirs
