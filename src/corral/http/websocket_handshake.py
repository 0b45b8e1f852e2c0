"""The WebSocket opening handshake, server side (RFC 6455 §4.2), sans-IO.

`is_websocket_upgrade(request)` tells the worker that a parsed request asks for a WebSocket;
`check_upgrade(request)` validates it strictly and returns a `Handshake` (the key, the offered
subprotocols and extensions), or raises `ProtocolError` with 400, or 426 when the version is
not 13; `refusal_response(error)` is the HTTP answer to such an error. `accept_response(...)`
builds the 101 head with the chosen subprotocol, the negotiated extensions and the
application's extra headers, validated as every response header is.

It never does I/O: it must never import socket, select, selectors, ssl, threading or asyncio.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from corral.errors import ProtocolError
from corral.http.grammar import OWS, QUOTED_STRING, TOKEN, TOKEN_RE
from corral.http.parser import Request
from corral.http.writer import HOP_BY_HOP, SERVER_HEADER, check_header, date_header, error_response

# RFC 6455 §1.3: the GUID appended to the client's key before hashing.
ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = "13"

# RFC 6455 §4.1/§11.3.1: Sec-WebSocket-Key is a base64-encoded 16-byte nonce: 22 base64
# characters then "==". (Non-canonical trailing bits are let through: it still decodes to 16
# bytes, which is all §4.2.1 asks.)
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")

# RFC 6455 §9.1:
#   extension = extension-token *( ";" extension-param )
#   extension-param = token [ "=" (token | quoted-string) ]
# with the quoted-string unescaping to a token. Parameters are matched one by one after the
# whole list has matched, so no pattern can backtrack more than linearly.
_PARAM = rf"{OWS};{OWS}{TOKEN}(?:{OWS}={OWS}(?:{TOKEN}|{QUOTED_STRING}))?"
_EXTENSION = rf"{TOKEN}(?:{_PARAM})*"
_EXTENSION_LIST = re.compile(rf"{OWS}{_EXTENSION}(?:{OWS},{OWS}{_EXTENSION})*{OWS}")
_EXTENSION_ITEM = re.compile(rf"({TOKEN})((?:{_PARAM})*)")
_PARAM_ITEM = re.compile(rf";{OWS}({TOKEN})(?:{OWS}={OWS}({TOKEN}|{QUOTED_STRING}))?")
_ESCAPE = re.compile(r"\\(.)")

# Response headers the handshake owns (plus HTTP's hop-by-hop ones): an application choosing a
# subprotocol or extension does it through the arguments, where it can be checked. RFC 9110
# §8.6: a 1xx response carries no Content-Length.
_OWNED = HOP_BY_HOP | {
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
}

Extension = tuple[str, list[tuple[str, str | None]]]  # name, [(param, value or None)]


@dataclass(frozen=True, slots=True)
class Handshake:
    """A valid opening handshake: what the client offered, in its order of preference."""

    key: str
    subprotocols: list[str]
    extensions: list[Extension]


def _elements(value: str) -> list[str]:
    """RFC 9110 §5.6.1 list elements, lower-cased, empty ones dropped."""
    return [item for item in (part.strip(" \t").lower() for part in value.split(",")) if item]


def _values(request: Request, name: str) -> list[str]:
    return [value for field_name, value in request.headers if field_name == name]


def is_websocket_upgrade(request: Request) -> bool:
    """Whether the request asks to upgrade to WebSocket (it may still be invalid)."""
    values = _values(request, "UPGRADE")
    if not values:
        return False  # the usual request, decided by one pass over the names
    upgrade = ",".join(values)
    return "websocket" in _elements(upgrade)


def check_upgrade(request: Request) -> Handshake:
    """RFC 6455 §4.2.1: validate an upgrade request; ProtocolError (400 or 426) if invalid."""
    # 1. A GET, HTTP/1.1 or higher (the parser reports 1.2+ as 1.1).
    if request.method != "GET" or request.version != "HTTP/1.1":
        raise ProtocolError(400, "WebSocket upgrade needs GET and HTTP/1.1")
    # A body would make the bytes after the head ambiguous: request body or frames?
    if request.chunked or request.content_length:
        raise ProtocolError(400, "WebSocket upgrade request with a body")
    # 2. |Host| (the parser already requires it for HTTP/1.1).
    # 3. |Upgrade| including "websocket"; 4. |Connection| including "Upgrade", case-insensitive.
    if not is_websocket_upgrade(request):
        raise ProtocolError(400, "Upgrade does not name websocket")
    if "upgrade" not in _elements(",".join(_values(request, "CONNECTION"))):
        raise ProtocolError(400, "Connection does not include Upgrade")
    # 6. |Sec-WebSocket-Version| 13. §4.2.2: otherwise 426 with the versions we speak, which
    # `refusal_response` adds. Checked before the key so a future client learns what to use.
    versions = _values(request, "SEC-WEBSOCKET-VERSION")
    if versions != [VERSION]:
        raise ProtocolError(426, "unsupported Sec-WebSocket-Version")
    # 5. |Sec-WebSocket-Key|: exactly one, decoding to 16 bytes.
    keys = _values(request, "SEC-WEBSOCKET-KEY")
    if len(keys) != 1 or _KEY.fullmatch(keys[0]) is None:
        raise ProtocolError(400, "invalid Sec-WebSocket-Key")
    return Handshake(keys[0], _subprotocols(request), _extensions(request))


def _subprotocols(request: Request) -> list[str]:
    """RFC 6455 §11.3.4: Sec-WebSocket-Protocol = 1#token, possibly over several fields."""
    offered: list[str] = []
    for value in _values(request, "SEC-WEBSOCKET-PROTOCOL"):
        for item in value.split(","):
            name = item.strip(" \t")
            if TOKEN_RE.fullmatch(name) is None:
                raise ProtocolError(400, "invalid Sec-WebSocket-Protocol")
            offered.append(name)
    return offered


def _extensions(request: Request) -> list[Extension]:
    """RFC 6455 §9.1: the offered extensions, each with its parameters in order."""
    offered: list[Extension] = []
    for value in _values(request, "SEC-WEBSOCKET-EXTENSIONS"):
        if _EXTENSION_LIST.fullmatch(value) is None:
            raise ProtocolError(400, "invalid Sec-WebSocket-Extensions")
        for match in _EXTENSION_ITEM.finditer(value):
            params: list[tuple[str, str | None]] = []
            for name, raw in _PARAM_ITEM.findall(match[2]):
                params.append((name.lower(), _param_value(raw)))
            offered.append((match[1].lower(), params))
    return offered


def _param_value(raw: str) -> str | None:
    if not raw:
        return None
    if raw[0] != '"':
        return raw
    value = _ESCAPE.sub(r"\1", raw[1:-1])
    # §9.1: the value after quoted-string unescaping MUST conform to the token ABNF.
    if TOKEN_RE.fullmatch(value) is None:
        raise ProtocolError(400, "invalid Sec-WebSocket-Extensions parameter")
    return value


def accept_key(key: str) -> str:
    """RFC 6455 §4.2.2 5.4: base64 of the SHA-1 of the key followed by the GUID."""
    digest = hashlib.sha1((key + ACCEPT_GUID).encode("ascii"), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def accept_response(
    handshake: Handshake,
    subprotocol: str | None = None,
    extensions: str = "",
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """The 101 head that accepts the handshake (RFC 6455 §4.2.2 5).

    subprotocol must be one the client offered (§4.2.2: "derived from the client's
    handshake"); extensions is the negotiated Sec-WebSocket-Extensions value, if any. headers
    are the application's (latin-1 str pairs); ValueError for one that could split the
    response or that the handshake owns. An application Server or Date replaces ours.
    """
    if subprotocol is not None and subprotocol not in handshake.subprotocols:
        raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
    lines = [
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(handshake.key)}\r\n"
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}\r\n")
    if extensions:
        check_header("Sec-WebSocket-Extensions", extensions)
        lines.append(f"Sec-WebSocket-Extensions: {extensions}\r\n")
    seen = set()
    for name, value in headers:
        check_header(name, value)
        lowered = name.lower()
        if lowered in _OWNED:
            raise ValueError(f"header {name!r} is set by the WebSocket handshake")
        seen.add(lowered)
        lines.append(f"{name}: {value}\r\n")
    head = "".join(lines).encode("latin-1")
    server = b"" if "server" in seen else SERVER_HEADER
    date = b"" if "date" in seen else date_header.line()
    return head + server + date + b"\r\n"


def refusal_response(error: ProtocolError) -> bytes:
    """The closing HTTP response to a refused handshake; a 426 names the version we speak."""
    if error.status != 426:
        return error_response(error.status)
    return (
        b"HTTP/1.1 426 Upgrade Required\r\n"
        + SERVER_HEADER
        + date_header.line()
        + b"Sec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Type: text/plain\r\n"
        + b"Content-Length: 21\r\n\r\n426 Upgrade Required\n"
    )
