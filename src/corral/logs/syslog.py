"""Sending the error and access logs to a syslog daemon, in the shape Gunicorn sends them.

Each record becomes one message `<PRI>TAG: [PID] MESSAGE` (RFC 3164 style, with no timestamp
or host name: the daemon adds those), where PRI combines the facility with the record's level
and TAG is `gunicorn.<prefix>.error` or `gunicorn.<prefix>.access`. That is Gunicorn's tag,
word for word, so that syslog filters written for Gunicorn keep matching; a logger class can
change the first word (`corral.logs.logger.Logger.syslog_program`).

Addresses are written as in Gunicorn: `udp://HOST:PORT`, `tcp://HOST:PORT`, and
`unix://PATH`, optionally followed by `#dgram` or `#stream`. The parsing here is pure (it is
also the setting's converter); only `make_handler` opens a socket. This module never formats
access lines and never decides which loggers get a handler: `logger.py` does.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

from corral.addresses import split_host_port
from corral.errors import ConfigError

DEFAULT_PORT = 514
# The stdlib table: Gunicorn's facility names and a few more (console, ntp, solaris-cron).
# Facility codes (RFC 5424 §6.2.1 and the BSD extensions), named as Python's SysLogHandler
# (spelled out so that importing this module does not pull in logging.handlers).
FACILITIES: dict[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13,
    "console": 14, "solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18,
    "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
_SCHEMES = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}
_UNIX_TYPES = {"dgram": socket.SOCK_DGRAM, "stream": socket.SOCK_STREAM}


@dataclass(frozen=True)
class SyslogAddress:
    """Where to send: a unix socket path or a (host, port), and the socket type.

    `socktype` None (a unix path without `#dgram` or `#stream`) tries a datagram socket
    first, then a stream socket, as the C library's syslog() does.
    """

    address: str | tuple[str, int]
    socktype: socket.SocketKind | None


def parse_address(text: str) -> SyslogAddress:
    """Parse a syslog_addr value; ValueError says what is wrong with it."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise ValueError("expected unix://PATH, udp://HOST:PORT or tcp://HOST:PORT")
    scheme = scheme.lower()
    if scheme == "unix":
        path, _, kind = rest.partition("#")
        if not path:
            raise ValueError("the unix socket path is missing")
        if kind and kind.lower() not in _UNIX_TYPES:
            raise ValueError(f"unknown unix socket type {kind!r}: expected dgram or stream")
        return SyslogAddress(path, _UNIX_TYPES[kind.lower()] if kind else None)
    if scheme not in _SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}: expected unix, udp or tcp")
    return SyslogAddress(_host_and_port(rest), _SCHEMES[scheme])


def _host_and_port(text: str) -> tuple[str, int]:
    """`HOST`, `HOST:PORT`, `[IPv6]` or `[IPv6]:PORT`; the host defaults to localhost."""
    host, port = split_host_port(text, DEFAULT_PORT)
    if port == 0:
        raise ValueError("port 0 cannot receive syslog messages")
    return host.lower() or "localhost", port


def facility_code(name: str) -> int:
    """The number of a facility name (any letter case); ValueError for an unknown name."""
    code = FACILITIES.get(name.lower())
    if code is None:
        raise ValueError(f"unknown facility {name!r}: expected one of {', '.join(FACILITIES)}")
    return code


@dataclass(frozen=True)
class SyslogTarget:
    """What `setup_logging` needs to send the logs to syslog."""

    address: str  # the syslog_addr setting, as written
    facility: str
    tag: str  # "gunicorn.<prefix>"; ".error" or ".access" is appended per log
    access: bool  # False: only the error log goes to syslog


def make_handler(target: SyslogTarget, log_name: str) -> logging.Handler:
    """A handler sending records to `target`, tagged `<tag>.<log_name>`; ConfigError when the
    address or facility is invalid, or the (TCP) connection or host lookup fails."""
    try:
        address = parse_address(target.address)
        facility = facility_code(target.facility)
    except ValueError as exc:
        raise ConfigError(f"Invalid syslog setting: {exc}") from None
    try:
        from logging.handlers import SysLogHandler

        handler = SysLogHandler(address.address, facility, address.socktype)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"Cannot reach syslog at {target.address}: {reason}") from None
    # The tag goes in `ident`, outside the format string, so a "%" in a prefix is harmless.
    handler.ident = f"{target.tag}.{log_name}: "
    handler.setFormatter(logging.Formatter("[%(process)d] %(message)s"))
    return handler


def default_prefix(proc_name: str | None, app_spec: str | None) -> str:
    """The prefix when syslog_prefix is unset: the process name, with ':' written as '.'."""
    return (proc_name or app_spec or "corral").replace(":", ".")
