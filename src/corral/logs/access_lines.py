"""Access log lines: the `%(atom)s` format with its atoms, the JSON lines, and escaping.

`AccessLog` writes one line per request in the user's format; `JsonAccessLog` writes one JSON
object per request instead (--access-log-json). Both hand the finished line to the
`corral.access` logger, where the configured handlers (file, stdout, syslog, a user's logging
config) pick it up.

This runs once per request, so the work is planned when the writer is built: the format is
applied once to a sample request, which both checks it (a broken format fails at startup) and
records the atoms it names. Per request, only those atoms are computed, each once, into a plain
dict. Every string taken from the request is escaped (`escape`) or JSON-encoded, so that bytes
chosen by a client cannot forge a second log line or break a quoted field.

This module never formats a line when the `corral.access` logger would drop it, and never
touches handlers: `logs.py` installs them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from corral.errors import ConfigError

access_log = logging.getLogger("corral.access")

DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

ResponseHeaders = Sequence[tuple[str, str]]


def _emit(line: str) -> None:
    # makeRecord + handle is what Logger.info does, minus the stack walk that finds the caller's
    # file and line: the same for every access line, and a sizeable share of its cost.
    access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, "", 0, line, (), None))


class AccessLog:
    """Writes one `corral.access` line per request in the user's format (`%(atom)s` keys)."""

    def __init__(self, fmt: str, enabled: bool) -> None:
        self.fmt = fmt
        self.enabled = enabled
        self._plan = _plan(fmt)

    def log(
        self,
        environ: Mapping[str, Any],
        status: str,
        response_headers: ResponseHeaders,
        response_length: int | None,
        request_time: float,
    ) -> None:
        """Log one request; `response_length` is the body bytes sent, `request_time` seconds."""
        if not self.enabled or not access_log.isEnabledFor(logging.INFO):
            return
        # The line is final: its "%" signs are not placeholders (logging formats a message only
        # when it has arguments).
        _emit(self.line(environ, status, response_headers, response_length, request_time))

    def line(
        self,
        environ: Mapping[str, Any],
        status: str,
        response_headers: ResponseHeaders,
        response_length: int | None,
        request_time: float,
    ) -> str:
        """The access line of one request, in the user's format."""
        request = _Request(environ, status, response_headers, response_length, request_time)
        return self.fmt % {key: atom(request) for key, atom in self._plan}


class JsonAccessLog(AccessLog):
    """Writes one JSON object per request (--access-log-json); see docs/logging.md for keys."""

    def __init__(self, enabled: bool) -> None:
        self.fmt = ""
        self.enabled = enabled
        self._plan = ()

    def line(
        self,
        environ: Mapping[str, Any],
        status: str,
        response_headers: ResponseHeaders,
        response_length: int | None,
        request_time: float,
    ) -> str:
        """The JSON object of one request, on one line."""
        get = environ.get
        target = get("RAW_URI")
        if target is None:
            path, query = get("SCRIPT_NAME", "") + get("PATH_INFO", ""), get("QUERY_STRING")
        else:
            path, _, query = str(target).partition("?")
        try:
            code: int | None = int(status[:3])
        except ValueError:
            code = None
        # ensure_ascii: every byte outside printable ASCII, line breaks included (and U+2028,
        # U+0085, which some tools also split lines at), is written as a \u escape.
        return _JSON.encode(
            {
                "time": _iso_time(),
                "remote_addr": get("REMOTE_ADDR") or None,
                "method": get("REQUEST_METHOD"),
                "path": path,
                "query": query,
                "protocol": get("SERVER_PROTOCOL"),
                "status": code,
                "response_length": response_length,
                "request_time_us": round(request_time * 1_000_000),
                "referer": get("HTTP_REFERER"),
                "user_agent": get("HTTP_USER_AGENT"),
                "pid": os.getpid(),
            }
        )


# Built once: json.dumps with options would build an encoder per call. `default=str` keeps a
# line coming for an environ value that is not a str (an application may have replaced one);
# the object is flat, so there is no cycle to look for.
_JSON = json.JSONEncoder(
    ensure_ascii=True, separators=(",", ":"), default=str, check_circular=False
)

# (whole second, "2026-11-29T11:08:57", "+01:00"): the date part changes once a second.
_clock: tuple[int, str, str] = (-1, "", "")


def _iso_time() -> str:
    """Now, local time, ISO 8601 with milliseconds and the UTC offset."""
    global _clock
    now = time.time()
    second = int(now)
    if second != _clock[0]:
        local = time.localtime(second)
        offset = local.tm_gmtoff // 60
        hours, minutes = divmod(abs(offset), 60)
        sign = "-" if offset < 0 else "+"
        date = time.strftime("%Y-%m-%dT%H:%M:%S", local)
        _clock = (second, date, f"{sign}{hours:02d}:{minutes:02d}")
    _, date, zone = _clock
    return f"{date}.{int((now - second) * 1000):03d}{zone}"


# --- escaping ---------------------------------------------------------------------------------

# C0 controls and DEL become \xNN; the quote and the backslash are escaped so a value cannot
# close a quoted field and an escape sequence in the log always means what it says.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]')
_NAMED_ESCAPES = {'"': '\\"', "\\": "\\\\"}


def _escape_match(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED_ESCAPES.get(char) or f"\\x{ord(char):02x}"


def escape(value: str) -> str:
    """`value` with control characters, quotes and backslashes escaped for one log line."""
    # Nearly every value is clean, and three C-level checks say so faster than a regex:
    # a printable string has no C0 control and no DEL.
    if value.isprintable() and '"' not in value and "\\" not in value:
        return value
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(_escape_match, value)


# --- atoms ------------------------------------------------------------------------------------


class _Request:
    """What the atoms of one request are computed from."""

    __slots__ = ("environ", "headers", "length", "micros", "status")

    def __init__(
        self,
        environ: Mapping[str, Any],
        status: str,
        headers: ResponseHeaders,
        length: int | None,
        request_time: float,
    ) -> None:
        self.environ = environ
        self.status = status
        self.headers = headers
        self.length = length
        self.micros = round(request_time * 1_000_000)

    def env(self, key: str) -> str:
        value = self.environ.get(key)
        return "-" if value is None else escape(str(value))


Atom = Callable[[_Request], Any]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# (whole second, its `t` atom): the date is worked out once a second, not once a request.
_clf_clock: tuple[int, str] = (-1, "")


def _date(_: _Request) -> str:
    """`[10/Oct/2000:13:55:36 +0000]` in local time, with English month names in any locale."""
    global _clf_clock
    second = int(time.time())
    if second != _clf_clock[0]:
        now = time.localtime(second)
        offset = now.tm_gmtoff // 60
        sign = "-" if offset < 0 else "+"
        hours, minutes = divmod(abs(offset), 60)
        _clf_clock = (
            second,
            f"[{now.tm_mday:02d}/{_MONTHS[now.tm_mon - 1]}/{now.tm_year}:"
            f"{now.tm_hour:02d}:{now.tm_min:02d}:{now.tm_sec:02d} {sign}{hours:02d}{minutes:02d}]",
        )
    return _clf_clock[1]


def _user(request: _Request) -> str:
    """The user name of `Authorization: Basic ...`, or "-"."""
    authorization = request.environ.get("HTTP_AUTHORIZATION")
    if not authorization:
        return "-"
    scheme, _, credentials = str(authorization).strip().partition(" ")
    if scheme.lower() != "basic":
        return "-"
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return "-"
    return escape(decoded.partition(":")[0]) or "-"


def _request_line(request: _Request) -> str:
    environ = request.environ
    target = environ.get("RAW_URI")
    if target is None:
        target = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING")
        if query:
            target = f"{target}?{query}"
    method = environ.get("REQUEST_METHOD", "-")
    protocol = environ.get("SERVER_PROTOCOL", "-")
    return escape(f"{method} {target} {protocol}")


def _request_header(request: _Request, name: str) -> str:
    key = name.upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    return request.env(key)


def _response_header(request: _Request, name: str) -> str:
    name = name.lower()
    values = [value for header, value in request.headers if header.lower() == name]
    return escape(", ".join(values)) if values else "-"


def _environ_variable(request: _Request, name: str) -> str:
    # CGI variables are upper case; `{remote_addr}e` finds REMOTE_ADDR as Gunicorn's does.
    if name not in request.environ:
        name = name.upper()
    return request.env(name)


# Request times as Gunicorn gives them: T whole seconds, M milliseconds, D microseconds (all
# integers), L seconds with six decimals.
_ATOMS: dict[str, Atom] = {
    "h": lambda r: r.env("REMOTE_ADDR") if r.environ.get("REMOTE_ADDR") else "-",
    "l": lambda r: "-",
    "u": _user,
    "t": _date,
    "r": _request_line,
    "m": lambda r: r.env("REQUEST_METHOD"),
    "U": lambda r: r.env("PATH_INFO"),
    "q": lambda r: r.env("QUERY_STRING"),
    "H": lambda r: r.env("SERVER_PROTOCOL"),
    "s": lambda r: escape(r.status.split(" ", 1)[0]),
    "B": lambda r: r.length or 0,
    "b": lambda r: "-" if r.length is None else str(r.length),
    "f": lambda r: r.env("HTTP_REFERER"),
    "a": lambda r: r.env("HTTP_USER_AGENT"),
    "T": lambda r: r.micros // 1_000_000,
    "D": lambda r: r.micros,
    "M": lambda r: r.micros // 1_000,
    "L": lambda r: "{}.{:06d}".format(*divmod(r.micros, 1_000_000)),
    "p": lambda r: f"<{os.getpid()}>",
}

_BRACED_ATOMS: dict[str, Callable[[_Request, str], str]] = {
    "i": _request_header,
    "o": _response_header,
    "e": _environ_variable,
}


def _atom(key: str) -> Atom:
    """The function computing atom `key`; unknown atoms are "-"."""
    atom = _ATOMS.get(key)
    if atom is not None:
        return atom
    if len(key) > 3 and key[0] == "{" and key[-2] == "}" and key[-1] in _BRACED_ATOMS:
        braced, name = _BRACED_ATOMS[key[-1]], key[1:-2]
        return lambda request: braced(request, name)
    return lambda request: "-"


class _FormatProbe(dict[str, Any]):
    """Records the keys a format asks for, answering each with its value for a sample request."""

    def __missing__(self, key: str) -> Any:
        value = self[key] = _atom(key)(_SAMPLE_REQUEST)
        return value


def _plan(fmt: str) -> tuple[tuple[str, Atom], ...]:
    """The (key, atom) pairs `fmt` uses, in order; ConfigError when the format cannot work."""
    probe = _FormatProbe()
    try:
        fmt % probe
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid access log format {fmt!r}: {exc}.") from None
    return tuple((key, _atom(key)) for key in probe)


_SAMPLE_REQUEST = _Request(
    {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    },
    "200 OK",
    (),
    0,
    0.0,
)
