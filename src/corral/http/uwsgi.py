"""Parse one uwsgi request packet (the binary protocol nginx speaks with `uwsgi_pass`).

A packet is a 4-byte header, modifier1 (0: a WSGI request), datasize (the size of the vars
block, little-endian u16) and modifier2, then the vars block: pairs of (u16 key length, key,
u16 value length, value), little-endian. The request body follows the packet: CONTENT_LENGTH
bytes. `parse_packet(buf)` answers "need more bytes" (None), a `Packet` with the number of
bytes the packet used, or raises `ProtocolError` (the worker then closes the connection).

The vars are the CGI variables of nginx's `uwsgi_params` file. They become corral's `Request`
(so the rest of the server serves it as any other request): REQUEST_METHOD, REQUEST_URI (the
target as the client sent it), PATH_INFO (nginx's decoded `$document_uri`, re-escaped so that
the adapters' decoding gives it back unchanged), QUERY_STRING, CONTENT_LENGTH, CONTENT_TYPE,
SERVER_PROTOCOL (the client's version, see _VERSIONS) and every HTTP_* variable as a header.
What only the proxy can know (REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT, HTTPS,
REQUEST_SCHEME) is returned beside the request, for the worker to apply when the peer is
trusted; this module never decides trust.

The request is marked `close_delimited` whatever its version: nginx reads the response raw
until the connection closes (one packet, one connection) and passes a chunked body or a 1xx
head on to the client as if it were the response, so the response is never chunked, has no
interim responses and ends with the connection.

Sizes are bounded: the vars block is at most 65535 bytes by the format, there are at most
`MAX_VARS` variables, and the headers obey the same `Limits` as HTTP/1.1 heads (count: 431,
one field's size: 431, the target's length: 414).

Sans-IO: it never reads, never blocks and must never import socket, select, selectors, ssl,
threading or asyncio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from corral.errors import ProtocolError
from corral.http.grammar import TOKEN
from corral.http.parser import DEFAULT_LIMITS, Limits, Request

HEADER_SIZE = 4
# The CGI variables of uwsgi_params are about fifteen; the rest are HTTP_* headers, which the
# Limits bound again. This caps the work a packet of tiny pairs can cause (65535 bytes hold up
# to 16383 empty pairs).
MAX_VARS = 1024

_METHOD = re.compile(TOKEN)
_DIGITS = re.compile(r"[0-9]{1,18}")
# RFC 9110 §5.5: a field value has no CR, LF or NUL; nginx never sends them, so a packet
# that has them did not come from nginx.
_BAD_VALUE = re.compile(r"[\x00\r\n]")
# A header name rebuilt from HTTP_NAME: the underscores become hyphens (what nginx turned
# the hyphens into); the name must then be a token.
_HEADER_NAME = re.compile(r"[A-Z0-9_]+")
# The body's length is CONTENT_LENGTH: nginx has already taken the client's framing apart.
# nginx also passes the client's Content-Length and Content-Type as HTTP_ vars; CONTENT_LENGTH
# and CONTENT_TYPE say the same and are the ones CGI defines, so the copies are dropped.
_SKIPPED_HEADERS = frozenset(
    {"TRANSFER-ENCODING", "CONNECTION", "KEEP-ALIVE", "TE", "UPGRADE"}
    | {"CONTENT-LENGTH", "CONTENT-TYPE"}
)
# RFC 3986 §3.3: what a path segment may hold unescaped (pchar), and "/".
_PCHARS = "/:@!$&'()*+,;=-._~"
_ON = frozenset({"on", "1", "true", "yes"})
# SERVER_PROTOCOL (nginx's $server_protocol: the client's version) as Request.version, in the
# spelling corral gives its own HTTP/2 requests, so that an application sees the same value
# whoever terminated the client's connection. Anything else (absent, HTTP/0.9, junk) is
# HTTP/1.0: the version that promises the application the least.
_VERSIONS = {
    "HTTP/1.0": "HTTP/1.0",
    "HTTP/1.1": "HTTP/1.1",
    "HTTP/2.0": "HTTP/2",
    "HTTP/2": "HTTP/2",
    "HTTP/3.0": "HTTP/3",
    "HTTP/3": "HTTP/3",
}


@dataclass(slots=True)
class Packet:
    """A parsed packet: the request, and the proxy's word on the connection (None when the
    variable was absent or empty)."""

    request: Request
    remote_addr: str | None
    remote_port: str | None
    server_name: str | None
    server_port: str | None
    https: bool | None  # HTTPS (or REQUEST_SCHEME / wsgi.url_scheme): None when unsaid


def packet_size(buf: bytes) -> int | None:
    """The size of the packet that starts `buf` (header and vars), once its header is in."""
    if len(buf) < HEADER_SIZE:
        return None
    if buf[0] != 0:
        # modifier1 0 is a WSGI/HTTP request; the others are uWSGI's own services.
        raise ProtocolError(501, f"uwsgi modifier1 {buf[0]} is not a request")
    return HEADER_SIZE + int.from_bytes(buf[1:3], "little")


def parse_packet(buf: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[Packet, int] | None:
    """A whole packet from the start of `buf`, with the bytes it used; None if incomplete."""
    size = packet_size(buf)
    if size is None or len(buf) < size:
        return None
    env = parse_vars(buf[HEADER_SIZE:size])
    return packet_from_vars(env, limits), size


def parse_vars(block: bytes) -> dict[str, str]:
    """The vars block as a dict (keys and values latin-1, one character per byte). A pair cut
    short, an empty key or more than MAX_VARS pairs is malformed."""
    env: dict[str, str] = {}
    pos = 0
    end = len(block)
    count = 0
    while pos < end:
        count += 1
        if count > MAX_VARS:
            raise ProtocolError(400, "too many uwsgi vars")
        key_end = pos + 2 + int.from_bytes(block[pos : pos + 2], "little")
        if key_end + 2 > end or key_end == pos + 2:
            raise ProtocolError(400, "malformed uwsgi var")
        value_end = key_end + 2 + int.from_bytes(block[key_end : key_end + 2], "little")
        if value_end > end:
            raise ProtocolError(400, "malformed uwsgi var")
        env[block[pos + 2 : key_end].decode("latin-1")] = block[key_end + 2 : value_end].decode(
            "latin-1"
        )
        pos = value_end
    return env


def packet_from_vars(env: dict[str, str], limits: Limits = DEFAULT_LIMITS) -> Packet:
    """The request the vars describe (see the module docstring for the mapping)."""
    method = env.get("REQUEST_METHOD") or "GET"
    if _METHOD.fullmatch(method) is None:
        raise ProtocolError(400, "bad REQUEST_METHOD")
    query = env.get("QUERY_STRING", "")
    path = env.get("PATH_INFO")
    target = env.get("REQUEST_URI") or ""
    path = _escaped_path(path, target.partition("?")[0])
    if not target:
        target = path + ("?" + query if query else "")
    if len(target) > limits.line_cap:
        raise ProtocolError(414, "REQUEST_URI too long")
    if _BAD_VALUE.search(target) or _BAD_VALUE.search(path) or _BAD_VALUE.search(query):
        raise ProtocolError(400, "control character in the request target")
    headers = _headers(env, limits)
    length = env.get("CONTENT_LENGTH") or None
    content_length = None
    if length is not None:
        if _DIGITS.fullmatch(length) is None:
            raise ProtocolError(400, "bad CONTENT_LENGTH")
        content_length = int(length)
        headers.append(("CONTENT-LENGTH", length))
    if content_type := env.get("CONTENT_TYPE"):
        headers.append(("CONTENT-TYPE", content_type))
    scheme = env.get("HTTPS") or env.get("REQUEST_SCHEME") or env.get("wsgi.url_scheme")
    request = Request(
        method=method,
        target=target,
        path=path,
        query=query,
        version=_VERSIONS.get(env.get("SERVER_PROTOCOL", ""), "HTTP/1.0"),
        headers=headers,
        content_length=content_length,
        chunked=False,
        keep_alive=False,
        expect_continue=False,  # nginx answers 100-continue itself
        # nginx reads the response until the connection closes, one packet per connection,
        # and passes a chunked body or a 1xx head on as if they were the response itself.
        close_delimited=True,
    )
    return Packet(
        request,
        env.get("REMOTE_ADDR") or None,
        env.get("REMOTE_PORT") or None,
        env.get("SERVER_NAME") or None,
        env.get("SERVER_PORT") or None,
        None if not scheme else scheme.lower() in _ON or scheme.lower() == "https",
    )


def _escaped_path(decoded: str | None, raw: str) -> str:
    """Request.path (escaped) for PATH_INFO, nginx's decoded and normalised `$document_uri`:
    the client's own spelling from REQUEST_URI when it decodes to PATH_INFO, else PATH_INFO
    escaped again. The application sees the path nginx routed on, never another one."""
    if decoded is None:  # no PATH_INFO: the path of REQUEST_URI, still escaped
        return raw or "/"
    if raw and (raw == decoded or unquote_to_bytes(raw).decode("latin-1") == decoded):
        return raw
    return quote(decoded, safe=_PCHARS, encoding="latin-1")


def _headers(env: dict[str, str], limits: Limits) -> list[tuple[str, str]]:
    """The HTTP_* vars as (NAME, value) header pairs, within the head limits."""
    headers = []
    for key, value in env.items():
        if not key.startswith("HTTP_"):
            continue
        if _HEADER_NAME.fullmatch(key, 5) is None:
            raise ProtocolError(400, f"bad uwsgi header var {key!r}")
        name = key[5:].replace("_", "-")
        if name in _SKIPPED_HEADERS:
            continue
        if len(name) + len(value) + 4 > limits.field_size_cap:
            raise ProtocolError(431, "header too large")
        if _BAD_VALUE.search(value):
            raise ProtocolError(400, f"control character in {key}")
        headers.append((name, value))
    if len(headers) > limits.fields_cap:
        raise ProtocolError(431, "too many headers")
    return headers
