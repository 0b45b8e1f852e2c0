"""The access log: one record per request, one atom table, one compiled line, one writer.

A finished request becomes an `AccessRecord`. Its line is built by a `LineBuilder`: either the
user's `%(atom)s` format, turned once at startup into one generated function (`compile_format`)
that computes only the atoms it names, each once, and joins them in a single f-string; or the
JSON object of `--access-log-json` (`json_line`). `access_writer` puts the builder in front of a
sink: the lines waiting for a plain file (`batched_file.py`, written by the worker's loop before
it next waits for events), or the `corral.access` logger (syslog, a user's logging
configuration).

Every value taken from the request is rendered with str() (an application may have put any
object in the environ) and escaped (`escape`) or JSON-encoded, so that bytes chosen by a client
cannot forge a second line or break a quoted field. A line that cannot be built is reported in
the error log and skipped: this module must never let an exception reach the request that
asked for the line, and never write to a file it did not open.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from corral.errors import ConfigError
from corral.logs.batched_file import BatchedFile

access_log = logging.getLogger("corral.access")
error_log = logging.getLogger("corral.error")

DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

ResponseHeaders = Sequence[tuple[str, str]]
# What a worker calls per request: (environ, status, response headers, body bytes, seconds).
Writer = Callable[[Mapping[str, Any], str, ResponseHeaders, "int | None", float], None]


class AccessRecord:
    """One finished request as the access log sees it: what every atom is computed from."""

    __slots__ = ("environ", "headers", "length", "seconds", "status")

    def __init__(
        self,
        environ: Mapping[str, Any],
        status: str,
        headers: ResponseHeaders,
        length: int | None,
        seconds: float,
    ) -> None:
        self.environ = environ
        self.status = status  # the WSGI status line, "200 OK"
        self.headers = headers  # the response headers the application gave
        self.length = length  # body bytes sent, None when unknown
        self.seconds = seconds  # from reading the request to the end of the response


LineBuilder = Callable[[AccessRecord], str]


# --- escaping ---------------------------------------------------------------------------------

# C0 controls and DEL become \xNN; the quote and the backslash are escaped so a value cannot
# close a quoted field and an escape sequence in the log always means what it says.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]')
_NAMED_ESCAPES = {'"': '\\"', "\\": "\\\\"}


def _escape_match(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED_ESCAPES.get(char) or f"\\x{ord(char):02x}"


def escape(value: str) -> str:
    """`value` with control characters, quotes and backslashes escaped for one log line; any
    other object than a str (an application may put anything in the environ) is str()'d."""
    try:
        # Nearly every value is clean, and three C-level checks say so faster than a regex:
        # a printable string has no C0 control and no DEL.
        if value.isprintable() and '"' not in value and "\\" not in value:
            return value
    except AttributeError:  # not a str: found here at no cost to the str values
        value = str(value)
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(_escape_match, value)


class _StatusWords(dict[object, str]):
    """Status line -> its first word, escaped: "200 OK" -> "200", and "2000 x" -> "2000" (as
    Gunicorn logs it). An application sends few distinct lines, so each is split only once."""

    def __missing__(self, status: object) -> str:
        words = str(status).split(None, 1)
        word = escape(words[0]) if words else "-"
        if len(self) >= 256:  # an application that puts request data in its reason phrases
            self.clear()
        self[status] = word
        return word


_STATUS_WORDS = _StatusWords()


# --- the atoms ----------------------------------------------------------------------------------
# Each atom is one Python expression over the record `r` and `get` (its environ's get), giving a
# str, or an int for B, T, M and D (so that `%(M)5d` works). A value the request has is logged
# as it is, even when empty, as Gunicorn logs it; one it lacks is "-" (Gunicorn writes "None").


def _env(key: str) -> str:
    return f'("-" if (_v := get({key!r})) is None else ESC(_v))'


_MICROS = "round(r.seconds * 1_000_000)"

_ATOMS: dict[str, str] = {
    # An empty address (a unix socket's peer) is "-": the combined format's first field is
    # never empty. Gunicorn writes an empty field there.
    "h": '(ESC(_v) if (_v := get("REMOTE_ADDR")) else "-")',
    "l": '"-"',
    "u": '("-" if (_v := get("HTTP_AUTHORIZATION")) is None else USER(_v))',
    "t": "CLF_NOW()",
    # Inline rather than a helper: it is in the default format.
    "r": "ESC(f\"{'-' if (_m := get('REQUEST_METHOD')) is None else _m}"
    " {TARGET(r.environ) if (_t := get('RAW_URI')) is None else _t}"
    " {'-' if (_p := get('SERVER_PROTOCOL')) is None else _p}\")",
    "m": _env("REQUEST_METHOD"),
    "U": _env("PATH_INFO"),
    "q": _env("QUERY_STRING"),
    "H": _env("SERVER_PROTOCOL"),
    "s": "STATUS_WORDS[r.status]",
    "B": "(r.length or 0)",
    "b": '("-" if (_v := r.length) is None else str(_v))',
    "f": _env("HTTP_REFERER"),
    "a": _env("HTTP_USER_AGENT"),
    # Request times as Gunicorn gives them, from a timedelta: whole seconds, milliseconds and
    # microseconds (integers), and seconds with six decimals.
    "T": f"({_MICROS} // 1_000_000)",
    "M": f"({_MICROS} // 1_000)",
    "D": _MICROS,
    "L": f'"%d.%06d" % divmod({_MICROS}, 1_000_000)',
    "p": "PROCESS.tag",
}


def _request_header(name: str) -> str:
    key = name.upper().replace("-", "_")
    return _env(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key)


def _environ_variable(name: str) -> str:
    # CGI variables are upper case; `{remote_addr}e` finds REMOTE_ADDR as Gunicorn's does.
    upper = name.upper()
    if upper == name:
        return _env(name)
    return f"(ESC(_v) if (_v := get({name!r})) is not None else {_env(upper)})"


_BRACED_ATOMS: dict[str, Callable[[str], str]] = {
    "i": _request_header,
    "o": lambda name: f"RESPONSE_HEADER(r.headers, {name.lower()!r})",
    "e": _environ_variable,
}


def _atom(key: str) -> str:
    """The expression of atom `key`; unknown atoms are "-"."""
    expression = _ATOMS.get(key)
    if expression is not None:
        return expression
    if len(key) > 3 and key[0] == "{" and key[-2] == "}" and key[-1] in _BRACED_ATOMS:
        return _BRACED_ATOMS[key[-1]](key[1:-2])
    return '"-"'


class _Process:
    """This process's ID, kept right across fork: os.getpid() would cost a system call."""

    __slots__ = ("pid", "tag")

    def __init__(self) -> None:
        self.update()

    def update(self) -> None:
        self.pid = os.getpid()
        self.tag = f"<{self.pid}>"  # the `p` atom


_PROCESS = _Process()
os.register_at_fork(after_in_child=_PROCESS.update)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# (whole second, its `t` atom): the date is worked out once a second, not once a request.
_clf_clock: tuple[int, str] = (-1, "")


def _clf_now() -> str:
    """`[10/Oct/2000:13:55:36 +0000]` in local time, with English month names in any locale."""
    global _clf_clock
    second = int(time.time())
    if second != _clf_clock[0]:
        now = time.localtime(second)
        hours, minutes = divmod(abs(now.tm_gmtoff // 60), 60)
        _clf_clock = (
            second,
            f"[{now.tm_mday:02d}/{_MONTHS[now.tm_mon - 1]}/{now.tm_year}:"
            f"{now.tm_hour:02d}:{now.tm_min:02d}:{now.tm_sec:02d} "
            f"{'-' if now.tm_gmtoff < 0 else '+'}{hours:02d}{minutes:02d}]",
        )
    return _clf_clock[1]


def _user(authorization: object) -> str:
    """The user name of `Authorization: Basic ...`, or "-"."""
    scheme, _, credentials = str(authorization).strip().partition(" ")
    if scheme.lower() != "basic":
        return "-"
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return "-"
    return escape(decoded.partition(":")[0]) or "-"


def _target(environ: Mapping[str, Any]) -> str:
    """The request target rebuilt from the CGI variables, when RAW_URI is missing."""
    target = f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}"
    query = environ.get("QUERY_STRING")
    return f"{target}?{query}" if query else target


def _response_header(headers: ResponseHeaders, name: str) -> str:
    """The values of response header `name` (lower case), joined with ", "; or "-"."""
    values = [str(value) for header, value in headers if str(header).lower() == name]
    return escape(", ".join(values)) if values else "-"


_NAMES: dict[str, object] = {
    "ESC": escape,
    "STATUS_WORDS": _STATUS_WORDS,
    "USER": _user,
    "CLF_NOW": _clf_now,
    "TARGET": _target,
    "RESPONSE_HEADER": _response_header,
    "PROCESS": _PROCESS,
}


# --- the format, compiled -----------------------------------------------------------------------

# Each "%" starts "%%" or "%(key)" and a printf conversion; anything else is an error.
_PERCENT = re.compile(
    r"%(?:(?P<percent>%)"
    r"|\((?P<key>[^)]*)\)(?P<spec>[#0 +-]*\d*(?:\.\d+)?[hlL]?[diouxXeEfFgGcrsa]))?"
)


def compile_format(fmt: str) -> LineBuilder:
    """The function building `fmt`'s line for a record; ConfigError when `fmt` cannot work.

    `'%(h)s "%(r)s" %(M)5d'` becomes, in effect:
        def line(r):
            get = r.environ.get
            v0 = <h>; v1 = <r>; v2 = <M>; p5 = "%5d" % (v2,)
            return f'{v0} "{v1}" {p5}'
    """
    body = ["def line(r):", "    get = r.environ.get"]
    pieces: list[str] = []  # string literals and f-string fields, joined into one f-string
    local: dict[str, str] = {}  # atom -> the variable holding it: each atom is computed once
    position = 0
    for match in _PERCENT.finditer(fmt):
        pieces.append(repr(fmt[position : match.start()]))
        position = match.end()
        if match["percent"]:
            pieces.append(repr("%"))
            continue
        key, spec = match["key"], match["spec"]
        if key is None:
            raise ConfigError(
                f"Invalid access log format {fmt!r}: a % that is not %% or %(atom)s, "
                f"at {fmt[match.start() : match.start() + 5]!r}."
            )
        name = local.get(key)
        if name is None:
            name = local[key] = f"v{len(local)}"
            body.append(f"    {name} = {_atom(key)}")
        if spec != "s":  # a printf conversion (`%(B)05d`): formatted as `%` formats it
            printf = f"p{len(body)}"
            body.append(f"    {printf} = {'%' + spec!r} % ({name},)")
            name = printf
        pieces.append(f"f'{{{name}}}'")
    pieces.append(repr(fmt[position:]))
    # Adjacent literals and f-strings compile to one string build: no intermediate strings.
    body.append(f"    return {' '.join(p for p in pieces if p != repr('')) or repr('')}")
    namespace: dict[str, Any] = dict(_NAMES)
    exec(compile("\n".join(body), f"<access log format {fmt!r}>", "exec"), namespace)
    build: LineBuilder = namespace["line"]
    try:
        build(_SAMPLE)
    except (TypeError, ValueError, OverflowError) as exc:  # `%(h)d`: a str where %d wants int
        raise ConfigError(f"Invalid access log format {fmt!r}: {exc}.") from None
    return build


_SAMPLE = AccessRecord(
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


# --- JSON lines ---------------------------------------------------------------------------------

# ensure_ascii: every character outside printable ASCII, line breaks included (and U+2028, U+0085,
# which some tools also split lines at), is written as a \u escape. `default=str` keeps a line
# coming for an environ value that is not a str or a number.
_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)


def _json(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is str:
        return _json_string(value)
    return _JSON.encode(value)


def json_line(r: AccessRecord) -> str:
    """The JSON object of one request, on one line (keys in docs/logging.md). Written out
    field by field: twice as fast as encoding a dict, for the same bytes."""
    get = r.environ.get
    target = get("RAW_URI")
    if target is None:
        path, query = f"{get('SCRIPT_NAME', '')}{get('PATH_INFO', '')}", get("QUERY_STRING")
    else:
        path, _, query = str(target).partition("?")
    status = _STATUS_WORDS[r.status]
    return (
        f'{{"time":"{_iso_now()}","remote_addr":{_json(get("REMOTE_ADDR") or None)},'
        f'"method":{_json(get("REQUEST_METHOD"))},"path":{_json(path)},"query":{_json(query)},'
        f'"protocol":{_json(get("SERVER_PROTOCOL"))},'
        f'"status":{int(status) if status.isdecimal() else "null"},'
        f'"response_length":{_json(r.length)},'
        f'"request_time_us":{round(r.seconds * 1_000_000)},'
        f'"referer":{_json(get("HTTP_REFERER"))},"user_agent":{_json(get("HTTP_USER_AGENT"))},'
        f'"pid":{_PROCESS.pid}}}'
    )


# (whole second, "2026-11-29T11:08:57", "+01:00"): the date part changes once a second.
_iso_clock: tuple[int, str, str] = (-1, "", "")


def _iso_now() -> str:
    """Now, local time, ISO 8601 with milliseconds and the UTC offset."""
    global _iso_clock
    now = time.time()
    second = int(now)
    if second != _iso_clock[0]:
        local = time.localtime(second)
        hours, minutes = divmod(abs(local.tm_gmtoff // 60), 60)
        sign = "-" if local.tm_gmtoff < 0 else "+"
        date = time.strftime("%Y-%m-%dT%H:%M:%S", local)
        _iso_clock = (second, date, f"{sign}{hours:02d}:{minutes:02d}")
    _, date, zone = _iso_clock
    return f"{date}.{int((now - second) * 1000):03d}{zone}"


# --- where lines go -----------------------------------------------------------------------------


def _emit(line: str) -> None:
    # makeRecord + handle is what Logger.info does, minus the stack walk that finds the caller's
    # file and line: the same for every access line, and a sizeable share of its cost. The line
    # is final: logging formats a message only when it has arguments, so "%" is safe in it.
    access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, "", 0, line, (), None))


def access_writer(build: LineBuilder, batch: BatchedFile | None) -> Writer:
    """What a worker calls per request: build the line, then batch it for `batch`'s file, or
    (None) hand it to the `corral.access` logger. It never raises."""
    if batch is None:
        append: Callable[[str], None] = _emit
        pending: collections.deque[str] | tuple[()] = ()
    else:
        append, pending = batch.pending.append, batch.pending
    limit, flush = BatchedFile.LIMIT, batch.flush if batch is not None else None

    def access(
        environ: Mapping[str, Any],
        status: str,
        headers: ResponseHeaders,
        length: int | None,
        seconds: float,
    ) -> None:
        try:
            append(build(AccessRecord(environ, status, headers, length, seconds)))
        # The per-request guard of the access log: an application's odd environ value (or a
        # logging handler's failure) costs one line, never the request or the worker.
        except Exception:
            error_log.exception("Cannot write the access log line of a request")
            return
        if len(pending) >= limit and flush is not None:
            flush()

    return access
