"""An HTTP/2 request head (RFC 9113 §8.3) as the same `Request` the HTTP/1.1 parser produces.

The h2 library is told not to check request fields (a failed check there ends the whole
connection); this module checks them, so that a bad request costs only its own stream:
- A malformed request (RFC 9113 §8.1.1: §8.2.1's field-name and field-value rules, §8.2.2's
  connection-specific fields and TE, §8.3's pseudo-header rules, a Host that contradicts
  :authority) raises `MalformedRequest`, a stream error of type PROTOCOL_ERROR.
- What corral holds every request to, whatever its protocol, raises `ProtocolError` with the
  status to answer on the stream (400, 414, 431): the field grammar of RFC 9110 §5 (no control
  characters), the size limits of `Limits` (`limit_request_line` for `:path`,
  `limit_request_fields`, `limit_request_field_size`), a Content-Length that is digits, a
  method that is a token, an origin-form `:path`, a Host or `:authority`.
`:authority` stands in for Host (§8.3.1).

What this module must never do: accept a field the HTTP/1.1 parser would refuse for its
characters, or build an environ.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from corral.errors import ProtocolError
from corral.http.grammar import FIELD_VCHAR, TCHAR
from corral.http.parser import Limits, Request


class MalformedRequest(ProtocolError):
    """RFC 9113 §8.1.1: a malformed request; reset its stream with PROTOCOL_ERROR. (Its
    `status`, 400, is for whoever treats it as any ProtocolError.)"""

    def __init__(self, reason: str) -> None:
        super().__init__(400, reason)


# RFC 9110 §5.1 (token, lower case in HTTP/2) and §5.5 (field-value, trimmed per RFC 9113).
_NAME = re.compile(rb"[" + TCHAR.replace("A-Z", "").encode() + rb"]+\Z")
_VALUE = re.compile(
    rb"(?:["
    + FIELD_VCHAR.encode()
    + rb"](?:[\t "
    + FIELD_VCHAR.encode()
    + rb"]*["
    + FIELD_VCHAR.encode()
    + rb"])?)?\Z"
)
# RFC 9113 §8.2.1: what makes a field malformed (the rest of RFC 9110's grammar is a 400).
_MALFORMED_NAME = re.compile(rb"[\x00-\x20A-Z\x7f-\xff]")
_MALFORMED_VALUE = re.compile(rb"[\x00\r\n]|\A[\t ]|[\t ]\Z")
# RFC 9113 §8.2.2: fields that only mean something to one HTTP/1.1 connection.
_CONNECTION_SPECIFIC = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding"}
_CONNECTION_SPECIFIC.add(b"upgrade")
_DIGITS = re.compile(rb"[0-9]{1,18}\Z")
_METHOD = re.compile(rb"[" + TCHAR.encode() + rb"]+\Z")
_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*\Z")
_PATH = re.compile(rb"/[\x21\x22\x24-\x7e]*\Z")
_PSEUDO = {b":method", b":scheme", b":path", b":authority", b":protocol"}


def check_field(name: bytes, value: bytes) -> None:
    """A regular field of a request or its trailers; raises MalformedRequest or a 400."""
    if not name or name[:1] == b":" or _MALFORMED_NAME.search(name) is not None:
        raise MalformedRequest("invalid field name")
    if _MALFORMED_VALUE.search(value) is not None:
        raise MalformedRequest("invalid field value")
    if name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
        raise MalformedRequest("connection-specific field")
    if _NAME.match(name) is None or _VALUE.match(value) is None:
        raise ProtocolError(400, "invalid character in a header field")


def check_trailers(fields: Iterable[tuple[bytes, bytes]]) -> None:
    """Request trailers (RFC 9113 §8.1): regular fields only."""
    for name, value in fields:
        check_field(name, value)


def build_request(
    fields: Iterable[tuple[bytes, bytes]], limits: Limits, connect_protocol: bool = False
) -> tuple[Request, str | None]:
    """(request, RFC 8441 :protocol or None) for a decoded header list; raises
    MalformedRequest or ProtocolError."""
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[str, str]] = []
    content_length: int | None = None
    host: str | None = None
    size_cap = limits.field_size_cap
    for name, value in fields:
        if name[:1] == b":":
            if headers or name not in _PSEUDO or name in pseudo:
                raise MalformedRequest("pseudo-header field unknown, repeated or out of place")
            pseudo[name] = value
            continue
        check_field(name, value)
        if len(name) + len(value) + 4 > size_cap:
            raise ProtocolError(431, "header field too large")
        key = name.decode("latin-1").upper()
        text = value.decode("latin-1")
        if key == "CONTENT-LENGTH":
            if _DIGITS.match(value) is None or (
                content_length is not None and int(value) != content_length
            ):
                raise ProtocolError(400, "invalid Content-Length")
            content_length = int(value)
        elif key == "HOST":
            host = text
        headers.append((key, text))
    if len(headers) > limits.fields_cap:
        raise ProtocolError(431, "too many header fields")
    return _request(pseudo, headers, content_length, host, limits, connect_protocol)


def _request(
    pseudo: dict[bytes, bytes],
    headers: list[tuple[str, str]],
    content_length: int | None,
    host: str | None,
    limits: Limits,
    connect_protocol: bool,
) -> tuple[Request, str | None]:
    method_bytes = pseudo.get(b":method")
    if method_bytes is None:
        raise MalformedRequest("no :method")
    if _METHOD.match(method_bytes) is None:
        raise ProtocolError(400, "invalid :method")
    method = method_bytes.decode("latin-1")
    authority = _authority(pseudo.get(b":authority"), host, headers)
    protocol_bytes = pseudo.get(b":protocol")
    if method == "CONNECT" and protocol_bytes is None:
        # RFC 9113 §8.5: a tunnel, named by :authority alone. No application here can be one;
        # the same answer as HTTP/1.1 gives once it has checked the target.
        if authority is None or b":scheme" in pseudo or b":path" in pseudo:
            raise MalformedRequest("CONNECT with other pseudo-header fields than :authority")
        return _make(method, authority, "", "", headers, content_length, authority), None
    if protocol_bytes is not None and not (connect_protocol and method == "CONNECT"):
        raise MalformedRequest(":protocol is only for extended CONNECT")  # RFC 8441 §4
    scheme, target_bytes = pseudo.get(b":scheme"), pseudo.get(b":path")
    if scheme is None or not target_bytes:
        raise MalformedRequest("no :scheme or no :path")
    if _SCHEME.match(scheme) is None:
        raise ProtocolError(400, "invalid :scheme")
    if authority is None and host is None:
        raise ProtocolError(400, "no :authority and no Host")  # as HTTP/1.1 requires Host
    if method == "OPTIONS" and target_bytes == b"*":
        return _make(method, "*", "*", "", headers, content_length, None), None
    if _PATH.match(target_bytes) is None:
        raise ProtocolError(400, "invalid :path")
    if len(target_bytes) > limits.line_cap:
        raise ProtocolError(414, "request target too long")
    target = target_bytes.decode("latin-1")
    path, _, query = target.partition("?")
    protocol = None if protocol_bytes is None else protocol_bytes.decode("latin-1")
    return _make(method, target, path, query, headers, content_length, None), protocol


def _authority(value: bytes | None, host: str | None, headers: list[tuple[str, str]]) -> str | None:
    """:authority as text, given as Host when there is none (RFC 9113 §8.3.1)."""
    if value is None:
        return None
    if _VALUE.match(value) is None:
        raise ProtocolError(400, "invalid :authority")
    authority = value.decode("latin-1")
    if host is None:
        headers.append(("HOST", authority))
    elif host != authority:
        raise MalformedRequest("Host differs from :authority")  # §8.3.1
    return authority


def _make(
    method: str,
    target: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    content_length: int | None,
    authority: str | None,
) -> Request:
    expect = any(key == "EXPECT" for key, _ in headers)
    return Request(
        method,
        target,
        path,
        query,
        "HTTP/2",
        headers,
        content_length,
        False,
        True,
        expect,
        authority,
    )
