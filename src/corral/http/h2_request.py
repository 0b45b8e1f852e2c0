"""An HTTP/2 request head (RFC 9113 §8.3) as the same `Request` the HTTP/1.1 parser produces.

The h2 library has already checked the pseudo-header rules (each once, before the regular
fields, none unknown), lower-case names and the connection-specific fields (RFC 9113 §8.2.2).
This module adds what corral holds every request to, whatever its protocol: the field grammar
of RFC 9110 §5 (no control characters, no whitespace at either end of a value: §8.2.1 calls
such a request malformed), the size limits of `Limits` (`limit_request_line` for `:path`,
`limit_request_fields`, `limit_request_field_size`), a Content-Length that is digits, and
`:authority` standing in for Host (§8.3.1), which must not contradict a Host field.

Answers are `ProtocolError`s with the status to send on the stream (400, 414, 431). What this
module must never do: accept a field the HTTP/1.1 parser would refuse for its characters, or
build an environ.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from corral.errors import ProtocolError
from corral.http.grammar import FIELD_VCHAR, TCHAR
from corral.http.parser import Limits, Request

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
_DIGITS = re.compile(rb"[0-9]{1,18}\Z")
_PATH = re.compile(rb"/[\x21\x22\x24-\x7e]*\Z")
_PSEUDO = {b":method", b":scheme", b":path", b":authority", b":protocol"}


def build_request(
    fields: Iterable[tuple[bytes, bytes]], limits: Limits, connect_protocol: bool = False
) -> tuple[Request, str | None]:
    """(request, RFC 8441 :protocol or None) for a decoded header list; raises ProtocolError."""
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[str, str]] = []
    content_length: int | None = None
    host: str | None = None
    size_cap = limits.field_size_cap
    for name, value in fields:
        if name[:1] == b":":
            if name not in _PSEUDO:
                raise ProtocolError(400, "unknown pseudo-header field")
            pseudo[name] = value
            continue
        if _NAME.match(name) is None or _VALUE.match(value) is None:
            raise ProtocolError(400, "invalid character in a header field")
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
    method = pseudo.get(b":method", b"").decode("latin-1")
    authority_bytes = pseudo.get(b":authority")
    if authority_bytes is not None and _VALUE.match(authority_bytes) is None:
        raise ProtocolError(400, "invalid :authority")
    authority = None if authority_bytes is None else authority_bytes.decode("latin-1")
    if authority is not None:
        if host is None:
            headers.append(("HOST", authority))
        elif host != authority:
            # RFC 9113 §8.3.1: a Host that names another origin than :authority is malformed.
            raise ProtocolError(400, "Host differs from :authority")
    protocol_bytes = pseudo.get(b":protocol")
    if method == "CONNECT" and protocol_bytes is None:
        # RFC 9113 §8.5: a tunnel. No application here can be one; the same answer as HTTP/1.1
        # gives once it has checked the target.
        if authority is None:
            raise ProtocolError(400, "CONNECT without :authority")
        return _make(method, authority, "", "", headers, content_length, authority), None
    if protocol_bytes is not None and not (connect_protocol and method == "CONNECT"):
        raise ProtocolError(400, ":protocol is only for extended CONNECT")
    target_bytes = pseudo.get(b":path", b"")
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
