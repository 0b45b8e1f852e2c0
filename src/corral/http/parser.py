"""Parse one HTTP/1.x request head (request line + header section) from a byte buffer.

`parse_head(buf)` answers "need more bytes" (None), a `Request` with the number of bytes the
head used, or raises `ProtocolError` carrying the status to answer with (400, 414, 431, 501,
505). It is sans-IO: it never reads, never blocks and must never import socket, select,
selectors, ssl, threading or asyncio.

It is the hot path of every worker, so the work is done by C code: one `find` for the end of the
head, one latin-1 decode, one regex for the request line and one `findall` that validates and
extracts every field line at once. Python-level work is one comprehension over the fields and a
few dict lookups for the fields that decide framing; the slow, line-by-line diagnostics run
only once a request is already known to be bad.

The grammar is strict on purpose: where a lenient reading could let two HTTP implementations
disagree on where a message ends (request smuggling), we reject. Python's lenient helpers never
judge wire bytes: int() only sees what a strict regex accepted (int(" 1_0") is 10), and split
and strip are only called with explicit separators (bare str.strip() would eat "\x0b").
Every pattern is written so that it cannot backtrack more than linearly on hostile input.

The leniency options on `Limits` (Gunicorn's settings of the same names, all off by default)
are only consulted once the strict grammar has refused a request line or a field section, so
they cost the common request nothing, and they never change how an accepted request reads.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import NoReturn

from corral.errors import ProtocolError
from corral.http.grammar import (
    BWS,
    FIELD_TEXT,
    FIELD_VCHAR,
    OWS,
    PARAMETER_VALUE,
    TOKEN,
    TOKEN_RE,
)

# The three size settings count as Gunicorn 27 counts them, so that the same configuration
# refuses the same requests (docs/http.md, "Limits"), except that nothing is ever unbounded:
# - limit_request_line: the request line without its CRLF. 0 means no limit in Gunicorn's
#   Python parser and 1 MiB in its C parser; here 1 MiB. Above 8190 it is 8190.
# - limit_request_fields: field lines (after unfolding). 0, or above 32768, means 32768.
# - limit_request_field_size: a field line *with* its CRLF, plus each of its continuation lines
#   with theirs. 0 means 8190 (Gunicorn 27 does this, though its docs say "unlimited"); Gunicorn
#   has no ceiling, ours is 64 KiB.
# The field section as a whole (the field lines and the blank line) never exceeds 1 MiB.
MAX_REQUEST_LINE = 8190
UNLIMITED_REQUEST_LINE = 1 << 20
MAX_FIELDS = 32768
DEFAULT_FIELD_SIZE = 8190
MAX_FIELD_SIZE = 65536
MAX_FIELD_SECTION = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits and leniency options of a request head.

    The sizes are the settings of the same names, counted as Gunicorn counts them (see the
    constants above): `request_line` is a line without its CRLF, `field_size` a field line with
    its CRLF. The booleans are the settings of the same names, all off by default; each admits
    requests the strict grammar refuses (see docs/http.md) and costs nothing until a request
    fails the strict grammar.
    """

    request_line: int = 4094
    fields: int = 100
    field_size: int = 8190
    permit_obsolete_folding: bool = False
    strip_header_spaces: bool = False
    permit_unconventional_http_method: bool = False
    permit_unconventional_http_version: bool = False
    casefold_http_method: bool = False
    # The effective limits: the longest request line (without CRLF), the most fields, the
    # largest field (field_size: with CRLF; field_line_cap: the longest line without CRLF).
    line_cap: int = field(init=False, repr=False, compare=False)
    fields_cap: int = field(init=False, repr=False, compare=False)
    field_size_cap: int = field(init=False, repr=False, compare=False)
    field_line_cap: int = field(init=False, repr=False, compare=False)
    # The field section: the field lines with their CRLFs and the final CRLF.
    section_cap: int = field(init=False, repr=False, compare=False)
    # Whether an option may admit a request line / field section that the strict grammar
    # refused. (casefold_http_method alone admits nothing: strict methods are upper case.)
    lenient_request_line: bool = field(init=False, repr=False, compare=False)
    lenient_fields: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lenient_line = (
            self.permit_unconventional_http_method or self.permit_unconventional_http_version
        )
        object.__setattr__(self, "lenient_request_line", lenient_line)
        lenient_fields = self.permit_obsolete_folding or self.strip_header_spaces
        object.__setattr__(self, "lenient_fields", lenient_fields)
        line = self.request_line
        if line == 0:
            line = UNLIMITED_REQUEST_LINE
        elif line < 0 or line > MAX_REQUEST_LINE:
            line = MAX_REQUEST_LINE
        count = MAX_FIELDS if self.fields <= 0 or self.fields > MAX_FIELDS else self.fields
        size = DEFAULT_FIELD_SIZE if self.field_size <= 0 else min(self.field_size, MAX_FIELD_SIZE)
        object.__setattr__(self, "line_cap", line)
        object.__setattr__(self, "fields_cap", count)
        object.__setattr__(self, "field_size_cap", size)
        # A field line is never empty (that is the end of the head), so 0 already refuses all.
        object.__setattr__(self, "field_line_cap", max(size - 2, 0))
        object.__setattr__(self, "section_cap", min(count * size + 2, MAX_FIELD_SECTION))


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class Request:
    """One parsed request head. Strings are latin-1 decodings of the wire bytes."""

    method: str
    target: str  # as sent (RAW_URI)
    path: str  # still percent-encoded
    query: str
    # "HTTP/1.0" or "HTTP/1.1": what we process it as (HTTP/1.2 is 1.1); "HTTP/2" on a stream;
    # under uwsgi the client's version as the proxy saw it (close_delimited frames the response)
    version: str
    headers: list[tuple[str, str]]  # wire order; names upper case, values without OWS
    content_length: int | None
    chunked: bool
    keep_alive: bool  # whether the connection may carry another request (never after CONNECT)
    expect_continue: bool
    # RFC 9112 §3.2.2: for an absolute-form target, its authority (host[:port], as sent) is
    # where the request goes, to be used in place of the Host field (which is still required
    # and checked, and kept in headers); for CONNECT, the target itself (§3.2.3). None for
    # origin-form and asterisk-form: then Host says where.
    authority: str | None = None
    # The response ends where the connection does: never chunked, no interim (1xx) responses,
    # nothing after it. Set for a uwsgi packet (http/uwsgi.py), whose version is the client's
    # (the proxy's) and says nothing about the connection to us.
    close_delimited: bool = False


# ---------------------------------------------------------------------------------------------
# Grammar (the shared rules are in grammar.py). Patterns are str patterns applied to the latin-1
# decoding of the head, so each character stands for exactly one wire byte.

_EMPTY_LINES = re.compile(rb"(?:\r\n)*")

# RFC 9112 §3.1: method = token. Like Gunicorn's default we further require 3 to 20 of the
# tchars that Gunicorn allows (upper case letters, digits, "$%&'*+-.^_"); anything else is
# almost always garbage or an attack.
_METHOD_RE = r"[$%&'*+\-.^_0-9A-Z]{3,20}"
_METHOD = re.compile(_METHOD_RE)

# RFC 9112 §3.1 + §3.2: request-line = method SP request-target SP HTTP-version; the target
# is visible ASCII (no SP, CTL or non-ASCII), and has no fragment ("#") (RFC 9110 §4.1).
# RFC 9112 §2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive; we speak 1.0, 1.1.
_TARGET_RE = r"[\x21\x22\x24-\x7e]+"
_REQUEST_LINE = re.compile(rf"({_METHOD_RE}) ({_TARGET_RE}) HTTP/1\.([01])")
_ANY_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
# The same line read loosely (any token as method, any DIGIT.DIGIT version), tried only when
# an option may admit what _REQUEST_LINE refused; the options then judge the parts.
_LOOSE_REQUEST_LINE = re.compile(rf"({TOKEN}) ({_TARGET_RE}) HTTP/([0-9])\.([0-9])")

# RFC 9112 §5: field-line = field-name ":" OWS field-value OWS, field-name = token (no
# whitespace before the colon, §5.1); field-value = *field-content (RFC 9110 §5.5). The OWS is
# matched outside the value group, so the value comes out with leading/trailing SP and HTAB
# (and only those) removed. Trailing OWS is only tried after a non-empty value, or it would
# compete with the leading OWS.
_FIELD_CONTENT = rf"[{FIELD_VCHAR}](?:[{FIELD_TEXT}]*[{FIELD_VCHAR}])?"
_FIELD_LINE = re.compile(rf"({TOKEN}):{OWS}(?:({_FIELD_CONTENT}){OWS})?")
# The same grammar for a whole block at once (the hot path): each match is one line, anchored
# at a line start. The value keeps its trailing OWS here; it is cut off with rstrip(" \t"),
# which removes exactly SP and HTAB and nothing else. The value must start with a field-vchar
# so that the leading OWS and the value can never trade characters: that would make a failing
# line cost quadratic time in its length.
_FIELD_LINES = re.compile(rf"(?m)^({TOKEN}):{OWS}((?:[{FIELD_VCHAR}][{FIELD_TEXT}]*)?)\r\n")
# strip_header_spaces: SP and HTAB also allowed between name and colon, against §5.1.
_SPACED_FIELD_LINE = re.compile(rf"({TOKEN}){OWS}:{OWS}(?:({_FIELD_CONTENT}){OWS})?")
# permit_obsolete_folding: fields that frame or route the request are never unfolded. An
# intermediary that does not unfold (or unfolds differently) would read another length,
# coding or host than we do: the disagreement request smuggling feeds on (RFC 9112 §11.2).
_UNFOLDABLE = frozenset({"HOST", "CONTENT-LENGTH", "TRANSFER-ENCODING"})
# The line breaks between fields: those not followed by the RWS of an obs-fold.
_FIELD_START = re.compile(r"\r\n(?![\t ])")

# RFC 9110 §7.2: Host = uri-host [ ":" port ]; RFC 3986 §3.2.2: host = IP-literal /
# IPv4address / reg-name (IPv4address is a subset of the reg-name syntax), port = *DIGIT,
# reg-name = *( unreserved / pct-encoded / sub-delims ). The value may be empty (RFC 9110
# §7.2: a target without authority); we accept that. "%" is checked separately (_PCT_BAD) to
# keep the common pattern a plain character class.
_REG_NAME = r"A-Za-z0-9\-._~!$&'()*+,;=%"  # the characters of a reg-name
_IP_LITERAL = r"\[(?:([0-9A-Fa-f:.]+)|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
_HOST = re.compile(rf"(?:[{_REG_NAME}]*|{_IP_LITERAL})(?::[0-9]*)?")
_PCT_BAD = re.compile(r"%(?![0-9A-Fa-f]{2})")
# RFC 9112 §3.2.3: authority-form = uri-host ":" port (CONNECT only); we require a host
# and a port: a tunnel to nowhere is not a request we can serve.
_AUTHORITY_FORM = re.compile(rf"(?:[{_REG_NAME}]+|{_IP_LITERAL}):[0-9]{{1,5}}")
# RFC 9112 §3.2.2: absolute-form = absolute-URI; RFC 3986 §3.1 scheme. We take the
# hierarchical "scheme://authority path?query" shape that http(s) URIs have (RFC 9110 §4.2).
_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*://([^/?]*)([^?]*)(?:\?(.*))?")

# RFC 9112 §6.1 + RFC 9110 §5.6.1: Transfer-Encoding = #transfer-coding; RFC 9112 §7:
# transfer-coding = token *( OWS ";" OWS transfer-parameter ), transfer-parameter = token BWS
# "=" BWS ( token / quoted-string ). We parse elements strictly and, stricter than the list
# rule, reject empty elements: "chunked," is too close to smuggling tricks to guess at.
_PARAM = rf"{OWS};{OWS}{TOKEN}{BWS}={BWS}{PARAMETER_VALUE}"
_CODING = re.compile(rf"({TOKEN})(?:{_PARAM})*")

# RFC 9110 §8.6: Content-Length = 1*DIGIT. Bounded to 19 digits so the value stays in 64 bits.
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")

# Fields that decide routing, framing or connection handling; all others pass straight through.
_WATCHED = frozenset(
    {"HOST", "CONTENT-LENGTH", "TRANSFER-ENCODING", "CONNECTION", "EXPECT", "CONTENT-TYPE"}
)
# RFC 9110 §5.3: lines of a list-based field combine, in order, into one comma-separated list.
# The other watched fields are singletons, and more than one line of them is a 400:
# RFC 9112 §3.2 (Host); RFC 9112 §6.3 (Content-Length: the RFC allows collapsing identical
# values, we reject them all); RFC 9110 §8.3 (Content-Type).
_LIST_FIELDS = frozenset({"TRANSFER-ENCODING", "CONNECTION", "EXPECT"})

_VERSIONS = {"0": "HTTP/1.0", "1": "HTTP/1.1"}
_VALID_HOSTS: set[str] = set()


# ---------------------------------------------------------------------------------------------


def parse_head(
    buf: bytes | bytearray, limits: Limits = DEFAULT_LIMITS
) -> tuple[Request, int] | None:
    """Parse one request head at the start of buf.

    Returns None when buf holds no complete head yet (but raises ProtocolError 414 / 431 as soon
    as the incomplete data already exceeds the request-line limit / a field limit, so a client
    can never make us buffer without bound). Returns (request, n) where n is the number of bytes
    of buf the head used (through the blank line). Raises ProtocolError(status, reason) for
    malformed input.
    """
    start = 0
    # RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) received before the
    # request-line. We skip any number, bounded by the request-line limit.
    if buf.startswith(b"\r\n"):
        empty = _EMPTY_LINES.match(buf)
        start = empty.end() if empty else 0
        if start > limits.line_cap:
            raise ProtocolError(400, "too many empty lines before the request line")
    # RFC 9112 §2.1: the head ends with the empty line that ends the header section.
    end = buf.find(b"\r\n\r\n", start)
    if end < 0:
        _check_incomplete(buf, start, limits)
        return None
    # Limits first, in the order _check_incomplete applies them, so that a head gets the same
    # answer whether it arrives whole or a byte at a time.
    eol = buf.find(b"\r\n", start)
    if eol - start > limits.line_cap:
        raise ProtocolError(414, "request line too long")
    if end - eol + 2 > limits.section_cap:
        raise ProtocolError(431, "request header section too large")
    # Every line of text, the last one included, ends in CRLF.
    text = buf[start : end + 2].decode("latin-1")
    eol -= start
    pos = eol + 2
    cap = limits.field_line_cap
    if len(text) - pos > cap and max(map(len, text[pos:].split("\r\n"))) > cap:
        raise ProtocolError(431, "request header field too large")
    try:
        line = text[:eol]
        match = _REQUEST_LINE.fullmatch(line)
        if match is None:
            method, target, minor = _parse_unusual_request_line(line, limits)
        else:
            method, target, minor = match.groups()
        headers = _parse_fields(text, pos, limits)
        path, query, authority = _split_target(method, target)
        content_length, chunked, keep_alive, expect_continue = _interpret(minor, headers)
    except ProtocolError as exc:
        # A head in pieces is refused with 400 at its first bare CR or LF (_check_incomplete),
        # before the rest of its grammar is judged; a whole head must get the same answer.
        if exc.status != 400 and _has_bare_cr_or_lf(buf, start, end + 4):
            raise ProtocolError(400, "bare CR or LF in request head") from None
        raise
    request = Request(
        method,
        target,
        path,
        query,
        _VERSIONS[minor],
        headers,
        content_length,
        chunked,
        # RFC 9110 §9.3.6: after CONNECT the client sends tunnel data, not requests. No WSGI
        # application can be a tunnel, and serving those bytes as HTTP would let them pass as
        # requests a proxy never saw (smuggling): the connection closes after the response.
        keep_alive and method != "CONNECT",
        expect_continue,
        authority,
    )
    return request, end + 4


def _check_incomplete(buf: bytes | bytearray, start: int, limits: Limits) -> None:
    """Reject an unfinished head that can already never become a valid one."""
    size = len(buf) - start
    # A final CR may be the first half of a CRLF still on its way.
    pending_cr = buf.endswith(b"\r")
    first_lf = buf.find(b"\n", start)
    line = size - pending_cr if first_lf < 0 else first_lf - start - 1
    if line > limits.line_cap:
        raise ProtocolError(414, "request line too long")
    if first_lf < 0:
        return
    if len(buf) - first_lf - 1 > limits.section_cap:
        raise ProtocolError(431, "request header section too large")
    if len(buf) - buf.rfind(b"\n") - 1 - pending_cr > limits.field_line_cap:
        raise ProtocolError(431, "request header field too large")
    # RFC 9112 §2.2: a bare CR or LF is not a line ending we accept. Counting in C keeps a
    # byte-by-byte client from waiting out the section cap before being told.
    if _has_bare_cr_or_lf(buf, start, len(buf) - pending_cr):
        raise ProtocolError(400, "bare CR or LF in request head")


def _has_bare_cr_or_lf(buf: bytes | bytearray, start: int, stop: int) -> bool:
    """Whether buf[start:stop] holds a CR or an LF that is not part of a CRLF."""
    crlf = buf.count(b"\r\n", start, stop)
    return buf.count(b"\n", start, stop) != crlf or buf.count(b"\r", start, stop) != crlf


def _parse_fields(text: str, pos: int, limits: Limits) -> list[tuple[str, str]]:
    """Validate and split the field lines of text[pos:], each of which ends in CRLF and none of
    which is longer than limits.field_line_cap (parse_head checked)."""
    count = text.count("\n", pos)
    # RFC 9110 §5.4 + RFC 6585 §5: a server may refuse a field section that is too large.
    if count > limits.fields_cap:
        if not limits.permit_obsolete_folding:
            raise ProtocolError(431, "too many request header fields")
        # Continuation lines are not fields: count again after unfolding.
        return _parse_lenient_fields(text, pos, limits)
    pairs = _FIELD_LINES.findall(text, pos)
    # Each match is a whole line: it starts at a line start and ends at the first LF after it,
    # which it requires to follow a CR. So as many matches as LFs means every line matched.
    if len(pairs) != count:
        if limits.lenient_fields:
            return _parse_lenient_fields(text, pos, limits)
        for line in text[pos:].split("\r\n")[:-1]:
            parse_field_line(line)
        raise ProtocolError(400, "invalid header section")  # pragma: no cover (unreachable)
    return [(name.upper(), value.rstrip(" \t")) for name, value in pairs]


def _parse_lenient_fields(text: str, pos: int, limits: Limits) -> list[tuple[str, str]]:
    """The field lines of text[pos:], as _parse_fields, under the leniency options."""
    fields = _unfold(text[pos:-2], limits.permit_obsolete_folding) if pos < len(text) else []
    if len(fields) > limits.fields_cap:
        raise ProtocolError(431, "too many request header fields")
    strip = limits.strip_header_spaces
    pattern = _SPACED_FIELD_LINE if strip else _FIELD_LINE
    headers = []
    for line, size, folded in fields:
        # A folded field counts all its lines, each with its CRLF, as Gunicorn counts it.
        if size > limits.field_size_cap:
            raise ProtocolError(431, "request header field too large")
        match = pattern.fullmatch(line)
        if match is None:
            _reject_field_line(line, strip)
        name = match[1].upper()
        if folded and name in _UNFOLDABLE:
            raise ProtocolError(400, f"obsolete line folding in {name.title()}")
        headers.append((name, match[2] or ""))
    return headers


def _unfold(section: str, permit: bool) -> list[tuple[str, int, bool]]:
    """The fields of section (field lines joined by CRLF), each continuation line joined to the
    field line it continues if permitted.

    RFC 9112 §5.2: obs-fold = OWS CRLF RWS; a server may replace each obs-fold with SP
    before interpreting the value; we replace it with exactly one. Returns (field line, bytes
    it took on the wire with its CRLFs, whether it was folded). The section is split in C and
    Python loops over fields, not lines: a field folded thousands of times stays cheap. When
    folding is not permitted, continuation lines stay lines of their own (and fail the grammar).
    """
    if not permit:
        return [(line, len(line) + 2, False) for line in section.split("\r\n")]
    # RFC 9112 §2.2: a line that starts with whitespace right after the request line
    # continues nothing (we reject it rather than skip it).
    if section[:1] in (" ", "\t"):
        raise ProtocolError(400, "whitespace before the first header field")
    fields = []
    for chunk in _FIELD_START.split(section):
        if "\r\n" not in chunk:
            fields.append((chunk, len(chunk) + 2, False))
            continue
        first, *rest = chunk.split("\r\n")
        # RFC 9112 §5.2: obs-fold only occurs within a field value, after the colon.
        if ":" not in first:
            raise ProtocolError(400, "obsolete line folding outside a field value")
        continuations = [line.strip(" \t") for line in rest]
        # A blank continuation carries nothing, and is one strip() away from the empty line
        # that ends the head for a lax reader: refuse it.
        if "" in continuations:
            raise ProtocolError(400, "obsolete line folding with an empty line")
        fields.append((" ".join([first.rstrip(" \t"), *continuations]), len(chunk) + 2, True))
    return fields


def parse_field_line(line: str) -> tuple[str, str]:
    """Parse one field line (latin-1 text, no CRLF) into (NAME, value); raise 400 if invalid.

    Shared with the chunked decoder, whose trailer fields follow the same grammar.
    """
    match = _FIELD_LINE.fullmatch(line)
    if match is not None:
        return match[1].upper(), match[2] or ""
    _reject_field_line(line)


def _reject_field_line(line: str, strip_header_spaces: bool = False) -> NoReturn:
    """Raise the error that explains why line failed the field-line pattern."""
    # Order matters only for the message, the status is always 400.
    name = line.partition(":")[0]
    if strip_header_spaces:
        name = name.rstrip(" \t")
    if "\r" in line or "\n" in line:
        reason = "bare CR or LF in a field line"  # RFC 9112 §2.2
    elif line[:1] in (" ", "\t"):
        reason = "obsolete line folding"  # RFC 9112 §5.2: obs-fold is rejected with 400
    elif ":" not in line:
        reason = "field line without a colon"
    elif name[-1:] in (" ", "\t"):
        reason = "whitespace between field name and colon"  # RFC 9112 §5.1
    elif TOKEN_RE.fullmatch(name) is None:
        reason = "invalid field name"  # RFC 9110 §5.1
    else:
        reason = "invalid character in field value"  # RFC 9110 §5.5
    raise ProtocolError(400, reason)


def _parse_unusual_request_line(line: str, limits: Limits) -> tuple[str, str, str]:
    """(method, target, minor) of a request line that the strict pattern refused but the
    leniency options admit; otherwise raise the error that says why it is refused."""
    match = _LOOSE_REQUEST_LINE.fullmatch(line) if limits.lenient_request_line else None
    if match is None:
        _reject_request_line(line, limits)
    method, target, major, minor = match.groups()
    # permit_unconventional_http_method: any method = token (RFC 9110 §9.1), any case or length.
    if not limits.permit_unconventional_http_method and _METHOD.fullmatch(method) is None:
        _reject_request_line(line, limits)
    # permit_unconventional_http_version: RFC 9110 §6.2: a message with a higher minor version
    # than we implement is processed as the highest minor version of that major version we
    # conform to, HTTP/1.1. Another major version means another message syntax: still 505.
    if major != "1" or (minor > "1" and not limits.permit_unconventional_http_version):
        _reject_request_line(line, limits)
    # casefold_http_method (Gunicorn's pre-22 behaviour). Methods are case-sensitive (RFC 9110
    # §9.1), so only this option folds them; it can only matter for an unconventional method.
    if limits.casefold_http_method:
        method = method.upper()
    return method, target, "0" if minor == "0" else "1"


def _reject_request_line(line: str, limits: Limits) -> NoReturn:
    """Raise the error that explains why line is refused as a request line under limits."""
    if "\r" in line or "\n" in line:
        raise ProtocolError(400, "bare CR or LF in request head")  # RFC 9112 §2.2
    parts = line.split(" ")
    # RFC 9112 §3: exactly one SP between the three parts and no other whitespace. (§3 allows
    # lenient whitespace parsing; we decline it: it is a known smuggling vector.)
    if len(parts) != 3:
        raise ProtocolError(400, "malformed request line")
    method, target, version = parts
    method_pattern = TOKEN_RE if limits.permit_unconventional_http_method else _METHOD
    if method_pattern.fullmatch(method) is None:
        raise ProtocolError(400, "invalid method")
    if version not in _VERSIONS.values():
        if _ANY_VERSION.fullmatch(version) is None:
            raise ProtocolError(400, "invalid HTTP version")
        # RFC 9110 §15.6.6: a well-formed version we do not support gets 505.
        if not (limits.permit_unconventional_http_version and version.startswith("HTTP/1.")):
            raise ProtocolError(505, "HTTP version not supported")
    if "#" in target:
        raise ProtocolError(400, "fragment in request target")  # RFC 9110 §4.1
    raise ProtocolError(400, "empty request target or invalid character in it")


def _split_target(method: str, target: str) -> tuple[str, str, str | None]:
    """Return (path, query, authority) of target, enforcing the form allowed for method."""
    # RFC 9112 §3.2.1: origin-form = absolute-path [ "?" query ] — the common case.
    if target[0] == "/" and method != "CONNECT":
        path, _, query = target.partition("?")
        return path, query, None
    # RFC 9112 §3.2.4: asterisk-form is "*" and only for OPTIONS.
    if target == "*" and method == "OPTIONS":
        return "*", "", None
    # RFC 9112 §3.2.3: authority-form is used only (and always) for CONNECT.
    if method == "CONNECT":
        _check_host(target, _AUTHORITY_FORM, "CONNECT needs an authority-form target")
        return "", "", target
    # RFC 9112 §3.2.2: a server MUST accept absolute-form; the path comes from the URI.
    match = _ABSOLUTE_FORM.fullmatch(target)
    if match is None:
        raise ProtocolError(400, "invalid request target")
    authority, path, query = match.groups()
    # RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid. §4.2.4: userinfo is
    # deprecated and its presence treated as an error (it is also a phishing tool).
    if not authority or "@" in authority:
        raise ProtocolError(400, "invalid authority in request target")
    _check_host(authority, _HOST, "invalid authority in request target")
    # RFC 9112 §3.2.2: the Host field is still required and checked (§3.2), but the target's
    # authority is what counts.
    return path or "/", query or "", authority


def _check_host(value: str, pattern: re.Pattern[str], reason: str) -> None:
    """Raise 400 with reason unless value is uri-host [":" port] as pattern has it."""
    match = pattern.fullmatch(value)
    # RFC 3986 §2.1: pct-encoded = "%" HEXDIG HEXDIG.
    if match is None or ("%" in value and _PCT_BAD.search(value) is not None):
        raise ProtocolError(400, reason)
    # RFC 3986 §3.2.2: the inside of "[...]" must be a real IPv6 address.
    if match[1] is not None:
        try:
            ipaddress.IPv6Address(match[1])
        except ValueError:
            raise ProtocolError(400, reason) from None


def _combine_repeats(headers: list[tuple[str, str]]) -> dict[str, str]:
    """The watched fields by name when some field name repeats: list fields are combined,
    a repeated singleton is a 400."""
    fields: dict[str, str] = {}
    for name, value in headers:
        if name not in _WATCHED:
            continue
        if name not in fields:
            fields[name] = value
        elif name in _LIST_FIELDS:
            fields[name] += ", " + value
        else:
            raise ProtocolError(400, f"more than one {name.title()} header field")
    return fields


def _interpret(minor: str, headers: list[tuple[str, str]]) -> tuple[int | None, bool, bool, bool]:
    """Apply the field rules that decide routing and framing.

    Returns (content_length, chunked, keep_alive, expect_continue).
    """
    # Field names rarely repeat; when none does, one C-level dict gives every lookup below.
    fields = dict(headers)
    if len(fields) != len(headers):
        fields = _combine_repeats(headers)
    host = fields.get("HOST")
    if host is not None:
        # RFC 9112 §3.2: a Host with an invalid field value gets 400 ... (a server sees the
        # same few Host values over and over: the ones already found valid are remembered)
        if host not in _VALID_HOSTS:
            _check_host(host, _HOST, "invalid Host header field")
            if len(_VALID_HOSTS) >= 256:
                _VALID_HOSTS.clear()
            _VALID_HOSTS.add(host)
    elif minor == "1":
        # ... and so does an HTTP/1.1 request without Host.
        raise ProtocolError(400, "missing Host header field")
    content_length = None
    length = fields.get("CONTENT-LENGTH")
    if length is not None:
        # RFC 9110 §8.6: Content-Length = 1*DIGIT; no sign, inner space, underscore or list.
        if _CONTENT_LENGTH.fullmatch(length) is None:
            raise ProtocolError(400, "invalid Content-Length")
        content_length = int(length)
    codings = fields.get("TRANSFER-ENCODING")
    chunked = codings is not None and _check_transfer_encoding(minor, codings, content_length)
    # RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive"
    # (RFC 9112 §C.2.2). RFC 9112 §9.6: "close" always wins.
    options = fields.get("CONNECTION")
    if options is None:
        keep_alive = minor == "1"
    else:
        lowered = options.lower()
        # One element needs no splitting: the field value has no OWS around it.
        elements = _list_elements(lowered) if "," in lowered else [lowered]
        keep_alive = "close" not in elements and (minor == "1" or "keep-alive" in elements)
    # RFC 9110 §10.1.1: 100-continue means nothing to an HTTP/1.0 request; ignore it there.
    expect = fields.get("EXPECT")
    expect_continue = expect is not None and minor == "1" and _has_element(expect, "100-continue")
    return content_length, chunked, keep_alive, expect_continue


def _check_transfer_encoding(minor: str, codings: str, content_length: int | None) -> bool:
    """Validate Transfer-Encoding; return True (chunked) or raise."""
    # RFC 9112 §6.1: a server MAY reject a request with both Content-Length and
    # Transfer-Encoding, and MUST close after it anyway; we reject (smuggling vector).
    if content_length is not None:
        raise ProtocolError(400, "both Content-Length and Transfer-Encoding")
    # RFC 9112 §6.1: Transfer-Encoding was added in HTTP/1.1; in a 1.0 message it is a sign
    # of a faulty or hostile intermediary, and the framing cannot be trusted.
    if minor == "0":
        raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
    names = []
    for element in _list_elements(codings):
        match = _CODING.fullmatch(element)
        if match is None:
            raise ProtocolError(400, "invalid Transfer-Encoding")
        # RFC 9112 §7: chunked defines no parameters; "chunked;x=y" is not chunked.
        names.append(element.lower() if match.end(1) < len(element) else match[1].lower())
    # RFC 9112 §6.3 (4): chunked not final -> length unknown -> 400. RFC 9112 §6.1: chunked
    # MUST NOT be applied more than once.
    if names[-1] != "chunked" or names.count("chunked") != 1:
        raise ProtocolError(400, "chunked must be the final transfer coding, exactly once")
    # RFC 9112 §6.1: a transfer coding we do not understand gets 501.
    if len(names) > 1:
        raise ProtocolError(501, "unsupported transfer coding")
    return True


def _list_elements(value: str) -> list[str]:
    """The elements of a #list value (RFC 9110 §5.6.1: elements separated by OWS "," OWS).

    Empty elements are kept; the callers decide about them. split and strip get explicit
    separators, so nothing but "," splits and nothing but SP and HTAB is stripped. (A regex
    split on OWS "," OWS would rescan long runs of spaces: quadratic time.)
    """
    return [element.strip(" \t") for element in value.split(",")]


def _has_element(value: str, element: str) -> bool:
    """Whether the #list value has element, compared case-insensitively."""
    lowered = value.lower()
    return lowered == element or (element in lowered and element in _list_elements(lowered))
