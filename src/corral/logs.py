"""The error log, the access log, and reopening their files for logrotate.

Two loggers, named as users configure them: ``corral.error`` (lifecycle lines, warnings,
application tracebacks) and ``corral.access`` (one line per request, in a user-chosen format).
Call sites use ``%``-style lazy arguments.

Access lines are built from *atoms*: ``fmt % atoms`` where ``atoms`` is a mapping that works
each value out only when the format asks for it, since this runs once per request. Every
string value is escaped so that bytes chosen by a client (a header, the request target) cannot
forge a second log line or break a quoted field.

This module must never log from a signal handler (the arbiter's loop calls
:func:`reopen_log_files` after USR1 is queued), and must never format an access line when the
access log is off.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from corral.errors import ConfigError

error_log = logging.getLogger("corral.error")
access_log = logging.getLogger("corral.access")

DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

# "[2026-11-29 11:08:56 +0000] [1234] [INFO] Booting worker with pid: 1234", as Gunicorn
# writes it: people grep their logs for these lines.
_ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
_ERROR_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# A level no record reaches, so `access_log.isEnabledFor(...)` is False for every level.
_OFF = logging.CRITICAL + 10


class _ReopenableFileHandler(logging.FileHandler):
    """Appends to a path, and can be pointed back at that path after logrotate moved the file.

    Reopening on request (USR1), rather than WatchedFileHandler's stat() before every record,
    keeps the per-request cost of access logging to one write.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path, mode="a", encoding="utf-8", errors="backslashreplace")

    def reopen(self) -> None:
        self.acquire()
        try:
            # Open the new file before closing the old one: if the open fails, records keep
            # going to the old file instead of nowhere.
            stream = self._open()
            old, self.stream = self.stream, stream
            if old is not None:
                old.flush()
                old.close()
        finally:
            self.release()


# What setup_logging installed, so that a second call (reload) or close_logging() removes
# exactly that, and reopen_log_files() knows which files to reopen.
_installed: list[tuple[logging.Logger, logging.Handler]] = []
_captured_path: str | None = None


def setup_logging(
    errorlog: str, loglevel: str, accesslog: str | None, capture_output: bool = False
) -> None:
    """Point the error and access loggers at their destinations, replacing any earlier setup.

    `errorlog` "-" is stderr, anything else a file appended to; `accesslog` "-" is stdout, a
    path is a file, None switches access logging off. `capture_output` sends what the process
    (and the application) writes to file descriptors 1 and 2 into the error log file.
    """
    global _captured_path
    level = LOG_LEVELS.get(loglevel.lower())
    if level is None:
        choices = ", ".join(LOG_LEVELS)
        raise ConfigError(f"Invalid log level {loglevel!r}: expected one of {choices}.")
    close_logging()

    error_handler = _make_handler(errorlog, sys.stderr)
    error_handler.setFormatter(logging.Formatter(_ERROR_FORMAT, _ERROR_DATE_FORMAT))
    _install(error_log, error_handler, level)

    if accesslog is None:
        access_log.propagate = False
        access_log.setLevel(_OFF)
    else:
        access_handler = _make_handler(accesslog, sys.stdout)
        access_handler.setFormatter(logging.Formatter("%(message)s"))
        _install(access_log, access_handler, logging.INFO)

    _captured_path = None
    if capture_output and errorlog != "-":
        _redirect_output(errorlog)
        _captured_path = errorlog


def reopen_log_files() -> None:
    """Reopen every log file setup_logging opened; a file moved away is recreated at its path.

    Called from the master's loop and the workers on USR1, never from the signal handler.
    """
    for _, handler in _installed:
        if isinstance(handler, _ReopenableFileHandler):
            try:
                handler.reopen()
            except OSError as exc:
                error_log.error("Cannot reopen log file %s: %s", handler.baseFilename, exc)
    if _captured_path is not None:
        try:
            _redirect_output(_captured_path)
        except OSError as exc:
            error_log.error("Cannot reopen %s for captured output: %s", _captured_path, exc)


def close_logging() -> None:
    """Remove and close every handler setup_logging installed (output redirection stays)."""
    while _installed:
        logger, handler = _installed.pop()
        logger.removeHandler(handler)
        handler.close()


def _make_handler(destination: str, stream: Any) -> logging.Handler:
    if destination == "-":
        return logging.StreamHandler(stream)
    return _ReopenableFileHandler(destination)


def _install(logger: logging.Logger, handler: logging.Handler, level: int) -> None:
    logger.addHandler(handler)
    logger.setLevel(level)
    # Our handlers are the whole story: a root handler set up by the application must not
    # print every server line a second time.
    logger.propagate = False
    _installed.append((logger, handler))


def _redirect_output(path: str) -> None:
    """Make file descriptors 1 and 2 append to `path`."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
            # Workers leave with os._exit(): a block-buffered print would be lost.
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


class AccessLog:
    """Writes one `corral.access` line per request in the user's format (`%(atom)s` keys)."""

    def __init__(self, fmt: str, enabled: bool) -> None:
        self.fmt = fmt
        self.enabled = enabled
        try:
            fmt % _Atoms(_SAMPLE_ENVIRON, "200 OK", (), 0, 0.0)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Invalid access log format {fmt!r}: {exc}.") from None

    def log(
        self,
        environ: Mapping[str, Any],
        status: str,
        response_headers: Sequence[tuple[str, str]],
        response_length: int | None,
        request_time: float,
    ) -> None:
        """Log one request; `response_length` is the body bytes sent, `request_time` seconds."""
        if not self.enabled or not access_log.isEnabledFor(logging.INFO):
            return
        atoms = _Atoms(environ, status, response_headers, response_length, request_time)
        # Formatted here, not by the handler: the line is already final, and its "%" signs
        # are not placeholders (logging formats a message only when it has arguments).
        access_log.info(self.fmt % atoms)


# --- access log atoms -------------------------------------------------------------------------

# C0 controls and DEL become \xNN; the quote and the backslash are escaped so a value cannot
# close a quoted field and an escape sequence in the log always means what it says.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]')
_NAMED_ESCAPES = {'"': '\\"', "\\": "\\\\"}


def _escape_match(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED_ESCAPES.get(char) or f"\\x{ord(char):02x}"


def escape(value: str) -> str:
    """`value` with control characters, quotes and backslashes escaped for one log line."""
    return _UNSAFE.sub(_escape_match, value)


class _Atoms(dict[str, Any]):
    """The access log atoms of one request, each computed on first use and then kept."""

    __slots__ = ("environ", "headers", "length", "micros", "status")

    def __init__(
        self,
        environ: Mapping[str, Any],
        status: str,
        headers: Sequence[tuple[str, str]],
        length: int | None,
        request_time: float,
    ) -> None:
        super().__init__()
        self.environ = environ
        self.status = status
        self.headers = headers
        self.length = length
        self.micros = round(request_time * 1_000_000)

    def __missing__(self, key: str) -> Any:
        compute = _ATOMS.get(key)
        if compute is not None:
            value = compute(self)
        elif len(key) > 3 and key[0] == "{" and key[-2] == "}" and key[-1] in _BRACED_ATOMS:
            value = _BRACED_ATOMS[key[-1]](self, key[1:-2])
        else:
            value = "-"
        self[key] = value
        return value

    def env(self, key: str) -> str:
        value = self.environ.get(key)
        return "-" if value is None else escape(str(value))


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _date(_: _Atoms) -> str:
    """`[10/Oct/2000:13:55:36 +0000]` in local time, with English month names in any locale."""
    now = time.localtime()
    offset = now.tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return (
        f"[{now.tm_mday:02d}/{_MONTHS[now.tm_mon - 1]}/{now.tm_year}:"
        f"{now.tm_hour:02d}:{now.tm_min:02d}:{now.tm_sec:02d} {sign}{hours:02d}{minutes:02d}]"
    )


def _user(atoms: _Atoms) -> str:
    """The user name of `Authorization: Basic ...`, or "-"."""
    authorization = atoms.environ.get("HTTP_AUTHORIZATION")
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


def _request_line(atoms: _Atoms) -> str:
    environ = atoms.environ
    target = environ.get("RAW_URI")
    if target is None:
        target = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING")
        if query:
            target = f"{target}?{query}"
    method = environ.get("REQUEST_METHOD", "-")
    protocol = environ.get("SERVER_PROTOCOL", "-")
    return escape(f"{method} {target} {protocol}")


def _request_header(atoms: _Atoms, name: str) -> str:
    key = name.upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    return atoms.env(key)


def _response_header(atoms: _Atoms, name: str) -> str:
    name = name.lower()
    values = [value for header, value in atoms.headers if header.lower() == name]
    return escape(", ".join(values)) if values else "-"


def _environ_variable(atoms: _Atoms, name: str) -> str:
    # CGI variables are upper case; `{remote_addr}e` finds REMOTE_ADDR as Gunicorn's does.
    if name not in atoms.environ:
        name = name.upper()
    return atoms.env(name)


_ATOMS: dict[str, Callable[[_Atoms], Any]] = {
    "h": lambda a: a.env("REMOTE_ADDR") if a.environ.get("REMOTE_ADDR") else "-",
    "l": lambda a: "-",
    "u": _user,
    "t": _date,
    "r": _request_line,
    "m": lambda a: a.env("REQUEST_METHOD"),
    "U": lambda a: a.env("PATH_INFO"),
    "q": lambda a: a.env("QUERY_STRING"),
    "H": lambda a: a.env("SERVER_PROTOCOL"),
    "s": lambda a: escape(a.status.split(" ", 1)[0]),
    "B": lambda a: a.length or 0,
    "b": lambda a: "-" if a.length is None else str(a.length),
    "f": lambda a: a.env("HTTP_REFERER"),
    "a": lambda a: a.env("HTTP_USER_AGENT"),
    "T": lambda a: a.micros // 1_000_000,
    "D": lambda a: a.micros,
    "M": lambda a: a.micros // 1_000,
    "L": lambda a: "{}.{:06d}".format(*divmod(a.micros, 1_000_000)),
    "p": lambda a: f"<{os.getpid()}>",
}

_BRACED_ATOMS: dict[str, Callable[[_Atoms, str], str]] = {
    "i": _request_header,
    "o": _response_header,
    "e": _environ_variable,
}

# What AccessLog checks a format against, so a broken format fails at startup, not per request.
_SAMPLE_ENVIRON: dict[str, str] = {
    "REQUEST_METHOD": "GET",
    "RAW_URI": "/",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
}
