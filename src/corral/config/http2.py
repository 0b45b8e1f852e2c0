"""The HTTP/2 settings: their converters, the startup rules that look at them together, and the
ALPN names they stand for.

The converters keep the contract of `converters.py`: a typed value, or `ValueError` with a short
reason that the loader turns into a one-line `ConfigError`. `check_http2` runs once every source
has been applied (at startup, on --check-config and on each HUP): a configuration that cannot
serve what it asks for raises `ConfigError`; one that serves but will never negotiate HTTP/2
gets warnings. `alpn_protocols` is what TLS contexts advertise.

What this module must never do: import the h2 library, ssl or sockets at import time. Settings
are loaded in every process and h2 is optional; it is imported only by `require_h2_library`,
and only when `h2` is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Literal

from corral.config.converters import to_int
from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.config.settings import Settings

HttpProtocol = Literal["h1", "h2"]
Http2Cleartext = Literal["off", "prior-knowledge", "upgrade", "both"]
HTTP_PROTOCOLS: dict[str, HttpProtocol] = {"h1": "h1", "h2": "h2"}
HTTP2_CLEARTEXT_MODES: dict[str, Http2Cleartext] = {
    "off": "off",
    "prior-knowledge": "prior-knowledge",
    "upgrade": "upgrade",
    "both": "both",
}
# The protocol IDs of the IANA "TLS ALPN Protocol IDs" registry (RFC 7301; RFC 9113 section 3.2).
ALPN_NAMES: dict[HttpProtocol, str] = {"h1": "http/1.1", "h2": "h2"}

# RFC 9113 section 6.9.1: a flow-control window never exceeds 2^31-1 octets.
MAX_WINDOW_SIZE = 2**31 - 1
# RFC 9113 section 6.5.2: SETTINGS_MAX_FRAME_SIZE lies between 2^14 and 2^24-1.
MIN_FRAME_SIZE = 2**14
MAX_FRAME_SIZE = 2**24 - 1
# What http2_max_header_list_size 0 (Gunicorn: no limit) and anything larger mean here: HPACK
# lets a few bytes on the wire expand into a large header list, so the decoded size always has
# a bound. 1 MiB is far above any real request's headers.
HEADER_LIST_CEILING = 1024 * 1024
H2_MINIMUM_VERSION = (4, 1)
INSTALL_HINT = "install corral[http2] (pip install 'corral[http2]')"


# --- converters ----------------------------------------------------------------------------


def http_protocols(value: object) -> list[HttpProtocol]:
    """h1 and/or h2, most preferred first, from "h2,h1" or (config file) a list or tuple.

    None and an empty string mean the default, ["h1"], as in Gunicorn.
    """
    if value is None:
        return ["h1"]
    if isinstance(value, str):
        words = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        words = list(value)
    else:
        raise ValueError("must be a comma-separated string such as 'h2,h1', or a list of strings")
    names = [word.strip().lower() for word in words if word.strip()]
    protocols: list[HttpProtocol] = []
    for name in names:
        protocol = HTTP_PROTOCOLS.get(name)
        if protocol is None:
            raise ValueError(f"unknown protocol {name!r}; the protocols are h1 and h2")
        if protocol in protocols:
            raise ValueError(f"{name} is listed twice")
        protocols.append(protocol)
    return protocols or ["h1"]


def http2_cleartext(value: object) -> Http2Cleartext:
    """off, prior-knowledge, upgrade or both (any case); a config file's True means
    prior-knowledge and False off, as Gunicorn reads them."""
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "prior-knowledge" if value else "off"
    if isinstance(value, str) and value.strip().lower() in HTTP2_CLEARTEXT_MODES:
        return HTTP2_CLEARTEXT_MODES[value.strip().lower()]
    raise ValueError("the mode must be one of: off, prior-knowledge, upgrade, both")


def http2_max_concurrent_streams(value: object) -> int:
    """At least 1 (a server that allows no stream serves nothing)."""
    number = to_int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def http2_window_size(value: object) -> int:
    """0 to 2^31-1."""
    number = to_int(value)
    if not 0 <= number <= MAX_WINDOW_SIZE:
        raise ValueError(f"must be between 0 and {MAX_WINDOW_SIZE}")
    return number


def http2_frame_size(value: object) -> int:
    """16384 to 16777215."""
    number = to_int(value)
    if not MIN_FRAME_SIZE <= number <= MAX_FRAME_SIZE:
        raise ValueError(f"must be between {MIN_FRAME_SIZE} and {MAX_FRAME_SIZE}")
    return number


def http2_header_list_size(value: object) -> int:
    """At least 0; 0 and values above HEADER_LIST_CEILING mean the ceiling (never unbounded)."""
    number = to_int(value)
    if number < 0:
        raise ValueError("must be at least 0")
    return HEADER_LIST_CEILING if number == 0 else min(number, HEADER_LIST_CEILING)


# --- ALPN ----------------------------------------------------------------------------------


def alpn_protocols(settings: Settings) -> list[str]:
    """The ALPN protocol IDs a TLS listener offers, in the order of http_protocols:
    ["http/1.1"] by default, ["h2", "http/1.1"] for `h2,h1`."""
    return [ALPN_NAMES[protocol] for protocol in settings.http_protocols]


# --- startup rules -------------------------------------------------------------------------


def require_h2_library() -> None:
    """Raise a one-line ConfigError unless a usable h2 library can be imported."""
    try:
        h2 = importlib.import_module("h2")
        importlib.import_module("h2.connection")
    except ImportError as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            "HTTP/2 (http_protocols includes h2) needs the h2 library, which cannot be "
            f"imported ({reason}): {INSTALL_HINT}"
        ) from None
    version = str(getattr(h2, "__version__", "0"))
    if _version_tuple(version) < H2_MINIMUM_VERSION:
        minimum = ".".join(map(str, H2_MINIMUM_VERSION))
        raise ConfigError(
            f"HTTP/2 (http_protocols includes h2) needs h2 {minimum} or later, "
            f"found {version}: {INSTALL_HINT}"
        )


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:2]:
        digits = "".join(char for char in part if char.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_http2(settings: Settings) -> list[str]:
    """The startup rules: raise ConfigError for what cannot serve, return warnings for what
    serves but will never speak HTTP/2 the way the settings suggest."""
    tls = settings.certfile is not None
    cleartext = settings.http2_cleartext
    if "h2" not in settings.http_protocols:
        if cleartext != "off":
            return [
                f"http2_cleartext is {cleartext} but http_protocols does not include h2: "
                "no cleartext HTTP/2 will be served"
            ]
        return []
    if settings.effective_worker_class == "sync":
        raise ConfigError(
            "HTTP/2 (http_protocols includes h2) cannot run on the sync worker, which serves "
            "one request at a time and cannot multiplex streams: use -k gthread or -k asgi"
        )
    if settings.effective_worker_class == "gevent":
        raise ConfigError(
            "HTTP/2 (http_protocols includes h2) is not served by the gevent worker: "
            "use -k gthread or -k asgi"
        )
    require_h2_library()
    if not tls and cleartext == "off":
        return [
            "http_protocols includes h2 but there is no TLS (certfile) and http2_cleartext is "
            "off: HTTP/2 will never be negotiated"
        ]
    if tls and cleartext != "off":
        return [
            f"http2_cleartext is {cleartext} but TLS is on (certfile), so no listener is "
            "cleartext: it is ignored, and ALPN chooses HTTP/2"
        ]
    return []
