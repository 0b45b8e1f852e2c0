"""Response side of HTTP/1.1, sans-IO: status lines, header blocks, framing, error responses.

Everything here turns values into bytes. It never touches a socket: the worker sends what this
module builds. Response header validation lives here too, so an application can never split a
response by putting CR or LF into a header (RFC 9110 §5.5).
"""

from __future__ import annotations

import re
import time

from corral import SERVER_SOFTWARE
from corral.http.grammar import FIELD_TEXT, TOKEN_RE

# RFC 9110 §5.5: field-value = *field-content; no CTL except HTAB (obs-text allowed). Leading
# and trailing SP/HTAB are let through: they are OWS on the wire, harmless to the framing.
_FIELD_VALUE = re.compile(rf"[{FIELD_TEXT}]*")
# RFC 9110 §15: status-code is three digits (we send 1xx to 5xx). RFC 9112 §4: the status
# line is status-code SP [ reason-phrase ], reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ).
_STATUS = re.compile(rf"([1-5][0-9][0-9])(?: [{FIELD_TEXT}]*)?")

# RFC 9110 §6.4.1 and RFC 9112 §6.3: these responses never carry content.
NO_BODY_STATUSES = frozenset({204, 304}) | frozenset(range(100, 200))

# Headers the server owns: framing and connection management (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
SERVER_HEADER = b"Server: " + SERVER_SOFTWARE.split("/")[0].encode() + b"\r\n"


# RFC 9110 §5.6.7: IMF-fixdate = day-name "," SP day SP month SP year SP hour ":" minute ":"
# second SP "GMT", with English names whatever the locale ("Sun, 06 Nov 1994 08:49:37 GMT").
# (email.utils.formatdate writes the same, but importing it imports socket.)
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # tm_wday 0 is Monday
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def imf_fixdate(seconds: float) -> str:
    """The HTTP date of a POSIX timestamp."""
    t = time.gmtime(seconds)
    return (
        f"{_DAY_NAMES[t.tm_wday]}, {t.tm_mday:02d} {_MONTH_NAMES[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


class DateHeader:
    """The `Date` header line (RFC 9110 §6.6.1), formatted at most once per second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"Date: " + imf_fixdate(now).encode("ascii") + b"\r\n"
        return self._line


date_header = DateHeader()


def check_status(status: str) -> int:
    """Return the status code of a WSGI status string, or raise ValueError naming the problem."""
    if type(status) is not str:
        raise ValueError(f"status must be a str, not {type(status).__name__}")
    match = _STATUS.fullmatch(status)
    if match is None:
        raise ValueError(f"invalid status line {status!r}")
    return int(match.group(1))


def check_header(name: str, value: str) -> None:
    """Raise ValueError when an application header could corrupt the response."""
    if type(name) is not str or type(value) is not str:
        raise ValueError(f"header {name!r}: name and value must be str")
    if TOKEN_RE.fullmatch(name) is None:
        raise ValueError(f"invalid header name {name!r}")
    if _FIELD_VALUE.fullmatch(value) is None:
        raise ValueError(f"invalid value for header {name!r}: {value!r}")


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1); never call it with empty data."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def health_response(status: int, keep_alive: bool, head: bool = False) -> bytes:
    """The answer to the health-check path: `ok` or `stopping`, never cached."""
    body = b"ok\n" if status == 200 else b"stopping\n"
    return b"".join(
        (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n".encode(),
            SERVER_HEADER,
            date_header.line(),
            b"Content-Type: text/plain\r\nCache-Control: no-store\r\n",
            b"" if keep_alive else b"Connection: close\r\n",
            b"Content-Length: %d\r\n\r\n" % len(body),
            b"" if head else body,
        )
    )


def error_response(status: int, version: str = "HTTP/1.1") -> bytes:
    """A complete, closing response for a protocol error or a failure before the app answered."""
    reason = REASONS.get(status, "Error")
    body = f"{status} {reason}\n".encode()
    return b"".join(
        (
            f"{version} {status} {reason}\r\n".encode(),
            SERVER_HEADER,
            date_header.line(),
            b"Connection: close\r\nContent-Type: text/plain\r\n",
            b"Content-Length: %d\r\n\r\n" % len(body),
            body,
        )
    )
