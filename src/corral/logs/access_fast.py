"""The access log's fast path: lines built by code generated from the format, written in batches.

With access logging on, every request pays for its line. Through the `logging` module that is a
record object, a handler lock and a write per request: more than the rest of the request costs
in a fast worker. When the access log goes to a plain file or stdout (no syslog copy, no user
logging configuration, the default logger class), corral instead:

- turns the `%(atom)s` format into one generated function that computes just the atoms the
  format names, inline (escaping every value a client or the application could have chosen),
  and applies the format once;
- appends the line to an in-memory batch that is written with one system call when it reaches
  512 lines, and at least once a second by the worker's loop (and at exit, and before USR1 reopens
  the file).

Lines are the same, byte for byte, as the logging path writes. This module never formats a
line for an access log that is off, and never writes to a file it did not open.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from corral.logs import access_lines
from corral.logs.access_lines import escape

LineBuilder = Callable[
    [Mapping[str, Any], str, Sequence[tuple[str, str]], "int | None", float], str
]

_PLACEHOLDER = re.compile(r"%\((?P<key>[^)]*)\)(?P<conv>[^a-zA-Z%]*[a-zA-Z%])")

# Atom -> expression over (environ as `e`, `get` = e.get, status, headers, length, seconds `t`),
# giving a str. Anything from the environ is escaped: a client chose it, or an application
# replaced it.
_INLINE = {
    "h": '(ESC(_h) if (_h := get("REMOTE_ADDR")) else "-")',
    "l": '"-"',
    "t": "DATE(None)",
    "m": '(ESC(_m) if (_m := get("REQUEST_METHOD")) else "-")',
    "U": '(ESC(_u) if (_u := get("PATH_INFO")) else "-")',
    "q": '(ESC(_q) if (_q := get("QUERY_STRING")) else "-")',
    "H": '(ESC(_p) if (_p := get("SERVER_PROTOCOL")) else "-")',
    "s": "status[:3]",  # checked by start_response: three digits
    "b": '("-" if length is None else str(length))',
    "B": "str(length or 0)",
    "f": '(ESC(_f) if (_f := get("HTTP_REFERER")) else "-")',
    "a": '(ESC(_a) if (_a := get("HTTP_USER_AGENT")) else "-")',
    "u": '("-" if "HTTP_AUTHORIZATION" not in e else USER(REQ(e, status, headers, length, t)))',
    "r": "ESC(f\"{get('REQUEST_METHOD') or '-'} {TARGET(e)} {get('SERVER_PROTOCOL') or '-'}\")",
}


def compile_line(fmt: str) -> LineBuilder | None:
    """A function building the line `fmt` describes, or None when the format uses anything
    but `%(key)s` placeholders (then the general path, which handles every format, is used).

    The function concatenates the literal text and the atoms' values directly: no dict of
    values and no %-formatting per request."""
    parts: list[str] = []
    generic = False
    position = 0
    for match in _PLACEHOLDER.finditer(fmt):
        if match["conv"] != "s":
            return None
        literal = fmt[position : match.start()]
        if "%" in literal.replace("%%", ""):
            return None
        if literal:
            parts.append(repr(literal.replace("%%", "%")))
        key = match["key"]
        expression = _INLINE.get(key)
        if expression is None:
            # The rest ({header}i, times, pid, unknown atoms) use the general atoms.
            generic = True
            expression = f"str(ATOMS[{key!r}](req))"
        parts.append(expression)
        position = match.end()
    tail = fmt[position:]
    if "%" in tail.replace("%%", ""):
        return None
    if tail:
        parts.append(repr(tail.replace("%%", "%")))
    source = "def line(e, status, headers, length, t):\n    get = e.get\n"
    if generic:
        source += "    req = REQ(e, status, headers, length, t)\n"
    source += f"    return {' + '.join(parts) or repr('')}\n"
    keys = [match["key"] for match in _PLACEHOLDER.finditer(fmt)]
    names: dict[str, Any] = {
        "ESC": escape,
        "DATE": access_lines._date,
        "USER": access_lines._user,
        "REQ": access_lines._Request,
        "ATOMS": {key: access_lines._atom(key) for key in keys},
        "TARGET": _target,
    }
    exec(compile(source, f"<access log format {fmt!r}>", "exec"), names)
    builder: LineBuilder = names["line"]
    return builder


def _target(environ: Mapping[str, Any]) -> str:
    """The request target as received (RAW_URI), or rebuilt from the CGI variables."""
    target = environ.get("RAW_URI")
    if target is not None:
        return str(target)
    target = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING")
    return f"{target}?{query}" if query else str(target)


class BatchedFile:
    """An append-only log file (or stdout for "-") written in batches of lines."""

    LIMIT = 512  # lines per batch, at most

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = self._open()
        # deque: append and popleft are atomic, so gthread's threads need no lock here.
        self.lines: collections.deque[str] = collections.deque()

    def _open(self) -> int:
        if self.path == "-":
            return 1
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)

    def write(self, line: str) -> None:
        lines = self.lines
        lines.append(line)
        if len(lines) >= self.LIMIT:
            self.flush()

    def flush(self) -> None:
        lines = self.lines
        batch = [lines.popleft() for _ in range(len(lines))]
        if not batch:
            return
        data = ("\n".join(batch) + "\n").encode("utf-8", "backslashreplace")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            pass  # a full disk must not take requests down; the error log says the rest

    def reopen(self) -> None:
        """USR1: logrotate moved the file; write what is pending, then open the path anew."""
        self.flush()
        if self.fd != 1:
            old, self.fd = self.fd, self._open()
            os.close(old)

    def close(self) -> None:
        self.flush()
        if self.fd != 1:
            os.close(self.fd)
            self.fd = -1
