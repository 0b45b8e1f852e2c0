"""Host and port: the one parser for every `HOST:PORT` corral reads.

Bind addresses, the metrics endpoint, the StatsD and syslog targets, and the Host header are all
written HOST, HOST:PORT, [IPv6] or [IPv6]:PORT, so they are all taken apart here, the same way:
an IPv6 address needs its brackets (`::1:8000` cannot be split without guessing), and a port is
ASCII digits from 0 to 65535. What a caller allows beyond that (an empty host, port 0, host
names) is the caller's rule.

This module imports nothing from corral; it never resolves a name and never opens a socket.
"""

from __future__ import annotations

import ipaddress
from typing import overload

MAX_PORT = 65535


@overload
def split_host_port(text: str, default_port: int) -> tuple[str, int]: ...


@overload
def split_host_port(text: str, default_port: None = None) -> tuple[str, int | None]: ...


def split_host_port(text: str, default_port: int | None = None) -> tuple[str, int | None]:
    """(host, port) from HOST, HOST:PORT, [IPv6] or [IPv6]:PORT.

    The host comes back without brackets, and may be empty (`:8000`); the port is
    `default_port` when the text has none. ValueError, with a reason fit for a user, when the
    brackets are not closed or are followed by anything but `:PORT`, when the bracketed text is
    not an IPv6 address, when an IPv6 address has no brackets, or when the port is not a
    number from 0 to 65535 (an empty port after the colon included).
    """
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError("IPv6 addresses are written [ADDRESS] or [ADDRESS]:PORT")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        port = rest[1:] if rest else None
    else:
        host, colon, after = text.partition(":")
        if ":" in after:
            raise ValueError("IPv6 addresses need brackets, as in [::1]:8000")
        port = after if colon else None
    if port is None:
        return host, default_port
    if not (port.isascii() and port.isdigit()) or int(port) > MAX_PORT:
        raise ValueError(f"port {port!r} must be a number from 0 to {MAX_PORT}")
    return host, int(port)
