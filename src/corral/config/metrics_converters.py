"""Converters for the metrics settings: StatsD target, metrics endpoint, tags, health path.

They follow `converters.py`'s contract: take a raw value from any source, return the typed value
or raise `ValueError` with a short reason. Addresses come back in one canonical spelling that
`split_address` takes apart again, so the modules that open sockets parse nothing themselves.
Like every converter, these are pure: they never resolve a name, open a socket or read a file.
Host and port are split by corral.addresses.split_host_port, as everywhere.
"""

from __future__ import annotations

import re

from corral.addresses import split_host_port
from corral.config.converters import bind_address, optional_str, to_str

STATSD_DEFAULT_PORT = 8125
# Gunicorn reads `unix:8125` as the host named "unix" at port 8125, not as a socket path.
_UNIX_HOST_PORT = re.compile(r"unix:\d+")
_TAG_FORBIDDEN = re.compile(r"[|\s]")
_URL_PATH = re.compile(r"/[^?#\s]*")


# The name statsd.py and the tests know; the same function, not a second parser.
split_address = split_host_port


def unix_path(address: str) -> str | None:
    """The socket path of a canonical `unix:PATH` StatsD address, None for a host and port."""
    if address.startswith("unix:") and not _UNIX_HOST_PORT.fullmatch(address):
        return address[5:]
    return None


def _tcp_address(text: str, what: str) -> str:
    if text.startswith(("unix:", "fd://")):
        raise ValueError(f"{what} must be HOST:PORT or [IPv6]:PORT")
    return bind_address(text)


def statsd_address(value: object) -> str | None:
    """Where StatsD datagrams go: HOST:PORT, HOST (port 8125), [IPv6]:PORT, or unix:PATH.

    Gunicorn's `unix://PATH` is rewritten to `unix:PATH`.
    """
    text = optional_str(value)
    if text is None:
        return None
    if _UNIX_HOST_PORT.fullmatch(text):
        return text
    if text.startswith("unix:"):
        path = text[7:] if text.startswith("unix://") else text[5:]
        if not path:
            raise ValueError("unix: needs a socket path")
        return "unix:" + path
    host, port = split_address(_tcp_address(text, "a StatsD address"), STATSD_DEFAULT_PORT)
    if not host:
        raise ValueError("a StatsD address needs a host")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def metrics_address(value: object) -> str | None:
    """The metrics endpoint's address: HOST:PORT or [IPv6]:PORT; the port is required."""
    text = optional_str(value)
    if text is None:
        return None
    address = _tcp_address(text, "the metrics address")
    if split_host_port(address)[1] is None:
        raise ValueError("needs a port, as in 127.0.0.1:9100")
    return address


def url_path(value: object) -> str | None:
    """An absolute request path such as `/healthz`: no query, fragment or whitespace."""
    text = optional_str(value)
    if text is None:
        return None
    if not _URL_PATH.fullmatch(text):
        raise ValueError("must be a path starting with '/', without '?', '#' or spaces")
    return text


def dogstatsd_tags(value: object) -> str:
    """Datadog tags, `key:value` or `tag`, comma-separated; returned without spaces or blanks."""
    tags = [tag.strip() for tag in to_str(value).split(",")]
    for tag in tags:
        if _TAG_FORBIDDEN.search(tag):
            raise ValueError(f"tag {tag!r} may not contain '|' or whitespace")
    return ",".join(tag for tag in tags if tag)
