"""How a connection comes to speak HTTP/2: ALPN, the cleartext preface, or `Upgrade: h2c`.

- TLS: the client and server agree on "h2" by ALPN (RFC 7301) during the handshake; the worker
  asks `alpn_is_h2` with what the handshake selected.
- Cleartext by prior knowledge (RFC 9113 §3.3): the client's first bytes are the connection
  preface. `preface_state` says whether a buffer is the preface, could still become it, or is
  something else.
- Cleartext by upgrade (RFC 7540 §3.2; RFC 9113 §3.1 deprecates it but clients still send it):
  an HTTP/1.1 request with `Upgrade: h2c`, `Connection: Upgrade, HTTP2-Settings` and one
  HTTP2-Settings field. The server answers 101 and the request becomes stream 1.

Cleartext HTTP/2 is accepted only from trusted peers (`forwarded_allow_ips`), as Gunicorn does:
an h2c port is meant for a proxy that terminated TLS, not for the internet. `cleartext_modes`
turns the `http2_cleartext` setting and the peer's trust into what the connection may do.

What this module must never do: read or write a socket, switch a connection that did not
ask to be switched, or import the h2 library (servers without HTTP/2 import this module too).
"""

from __future__ import annotations

import base64
import binascii
import re

from corral.http.parser import Request

# RFC 9113 §3.4: what a client sends first on a connection that starts in HTTP/2. (The same
# bytes as http/h2.py's PREFACE, spelled out here so that this module never imports the h2
# library: the HTTP/1.1 reader asks it about every cleartext connection's first bytes.)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# The 101 answer to a request that upgrades to h2c (RFC 7540 §3.2).
SWITCHING_PROTOCOLS = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
)

H2 = "h2"
H1 = "h1"
MORE = "more"

_TOKENS = re.compile(r"[^\s,]+")
_SETTINGS_VALUE = re.compile(r"[A-Za-z0-9_-]*=*\Z")


def cleartext_modes(setting: str, trusted: bool, h2_enabled: bool) -> tuple[bool, bool]:
    """(prior knowledge allowed, upgrade allowed) for a cleartext connection from this peer."""
    if not h2_enabled or not trusted:
        return False, False
    return setting in ("prior-knowledge", "both"), setting in ("upgrade", "both")


def alpn_is_h2(selected: str | None) -> bool:
    return selected == "h2"


def preface_state(buf: bytes) -> str:
    """H2 when `buf` starts with the client preface, MORE while it is a shorter prefix of it,
    H1 when it can never be it."""
    if buf[: len(PREFACE)] == PREFACE[: len(buf)]:
        return H2 if len(buf) >= len(PREFACE) else MORE
    return H1


def upgrade_settings(req: Request) -> bytes | None:
    """The HTTP2-Settings value (for the session) when `req` asks to switch to h2c and may:
    a request without a body (a body would have to be read in HTTP/1.1 first, which this
    server does not do: it answers in HTTP/1.1 instead, as RFC 7540 §3.2 allows)."""
    upgrade = settings = None
    connection = ""
    for name, value in req.headers:
        if name == "UPGRADE":
            upgrade = value
        elif name == "CONNECTION":
            connection += "," + value
        elif name == "HTTP2-SETTINGS":
            if settings is not None:
                return None  # exactly one (RFC 7540 §3.2.1)
            settings = value
    if upgrade is None or settings is None or req.version != "HTTP/1.1":
        return None
    if "h2c" not in (token.lower() for token in _TOKENS.findall(upgrade)):
        return None
    options = {token.lower() for token in _TOKENS.findall(connection)}
    if "upgrade" not in options or "http2-settings" not in options:
        return None
    if req.content_length or req.chunked or req.method == "CONNECT":
        return None
    if _SETTINGS_VALUE.match(settings) is None:
        return None
    try:
        payload = base64.urlsafe_b64decode(settings + "=" * (-len(settings) % 4))
    except (binascii.Error, ValueError):
        return None
    if not settings_payload_valid(payload):
        return None
    return settings.encode("ascii")


# RFC 9113 §6.5.2: the values a SETTINGS parameter may take, where it is limited.
_SETTING_RANGES = {
    0x2: (0, 1),  # ENABLE_PUSH
    0x4: (0, 2**31 - 1),  # INITIAL_WINDOW_SIZE
    0x5: (2**14, 2**24 - 1),  # MAX_FRAME_SIZE
    0x8: (0, 1),  # ENABLE_CONNECT_PROTOCOL (RFC 8441)
}


def settings_payload_valid(payload: bytes) -> bool:
    """Whether a decoded HTTP2-Settings value is a SETTINGS payload the session will take:
    whole 6-byte parameters, each within its range. A bad one is refused before the 101
    (after it, it could only end the connection)."""
    if len(payload) % 6:
        return False
    for offset in range(0, len(payload), 6):
        code = int.from_bytes(payload[offset : offset + 2], "big")
        value = int.from_bytes(payload[offset + 2 : offset + 6], "big")
        low, high = _SETTING_RANGES.get(code, (0, 2**32 - 1))
        if not low <= value <= high:
            return False
    return True
