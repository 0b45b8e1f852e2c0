"""Read the PROXY protocol header (HAProxy, versions 1 and 2) that starts a proxied connection.

`parse_proxy_header(buf, mode)` answers "need more bytes" (None), the addresses the header
carries with the number of bytes it used, or raises `ProtocolError(400, reason)`. The worker
calls it on the first bytes of a connection from a peer allowed to send the header, before the
HTTP parser sees anything. It is sans-IO: it never reads, never blocks and must never import
socket, select, selectors, ssl, threading or asyncio.

Section numbers refer to "The PROXY protocol, Versions 1 & 2" (haproxy doc/proxy-protocol.txt,
revision 2020/03/05). The reading is strict: a header the spec does not allow is rejected, and
it is rejected as soon as the bytes seen so far cannot begin a valid one (§2.1: "abort the
connection as soon as possible"), so a peer cannot hold a worker's buffer with junk.

Where the header gives no usable client address (v1 UNKNOWN, v2 LOCAL, v2 UNSPEC, v2 AF_UNIX)
the `ProxyInfo` fields are None and the worker keeps the socket's own peer address.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from corral.errors import ProtocolError

# §2.1: the longest v1 line, "PROXY UNKNOWN" with two full IPv6 addresses and ports, CRLF included.
V1_MAX_LINE = 107
# §2.2: 12-byte signature, version/command, family/transport and a 16-bit length.
V2_FIXED_SIZE = 16
# §2.2 lets the length field announce up to 65535 bytes. Real senders (HAProxy, AWS NLB, GCP)
# stay far below this; anything larger is refused rather than buffered.
V2_MAX_HEADER = 4096

MODES = ("v1", "v2", "auto")


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """The client (source) and server (destination) endpoints the proxy saw.

    None means the header carried no address we use: keep the socket's peer (and sock) name.
    """

    client_addr: str | None
    client_port: int | None
    server_addr: str | None
    server_port: int | None


NO_ADDRESS = ProxyInfo(None, None, None, None)


def _reject(reason: str) -> ProtocolError:
    return ProtocolError(400, reason)


# --- version 1: the human-readable line ------------------------------------------------------

# §2.1: the line starts with "PROXY" and exactly one space.
_V1_PREFIX = b"PROXY "
# §2.1: IPv4 is exactly 4 decimal integers in [0..255] separated by single dots; "heading zeroes
# are not permitted" (they could be read as octal).
_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = re.compile(rb"(?:%s\.){3}%s" % (_OCTET, _OCTET))
# Every beginning of a valid octet is itself a valid octet, so a partial address is some whole
# octets with their dots and at most one more octet.
_IPV4_START = re.compile(rb"(?:%s\.){0,3}(?:%s)?" % (_OCTET, _OCTET))
# §2.1: IPv6 is colon-separated groups of up to 4 hex digits, upper or lower case, with at most
# one "::". The dotted tail of mapped addresses ("::ffff:192.0.2.1") is accepted too, because
# senders format with inet_ntop, which writes it. ipaddress then checks the whole form (128
# bits, one "::", no leading zeros in a dotted tail). No zone ids: "%" is not in the set.
_IPV6 = re.compile(rb"[0-9A-Fa-f:.]{2,45}")
_IPV6_START = re.compile(rb"[0-9A-Fa-f:.]{0,45}")
# §2.1: ports are decimal integers in [0..65535], no heading zeroes (and so no sign either).
_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")
_PORT_START = re.compile(rb"(?:0|[1-9][0-9]{0,4})?")


@dataclass(frozen=True, slots=True)
class _V1Family:
    """How one v1 protocol name ("TCP4", "TCP6") writes its addresses."""

    name: str
    address: re.Pattern[bytes]
    address_start: re.Pattern[bytes]
    parse: Callable[[str], ipaddress.IPv4Address | ipaddress.IPv6Address]


# §2.1: only "TCP4", "TCP6" and "UNKNOWN" (None: no addresses to use) are allowed.
_V1_FAMILIES: dict[bytes, _V1Family | None] = {
    b"TCP4": _V1Family("TCP4", _IPV4, _IPV4_START, ipaddress.IPv4Address),
    b"TCP6": _V1Family("TCP6", _IPV6, _IPV6_START, ipaddress.IPv6Address),
    b"UNKNOWN": None,
}
# The four fields after the protocol name: source address, destination address, source port,
# destination port (§2.1, in that order).
_V1_FIELD_NAMES = ("source address", "destination address", "source port", "destination port")


def _v1_address(family: _V1Family, token: bytes, which: str) -> str:
    if family.address.fullmatch(token):
        try:
            return str(family.parse(token.decode("ascii")))
        except ValueError:
            pass
    raise _reject(f"PROXY v1 {which} is not a valid {family.name} address")


def _v1_port(token: bytes, which: str) -> int:
    if _PORT.fullmatch(token) and int(token) <= 0xFFFF:
        return int(token)
    raise _reject(f"PROXY v1 {which} is not a port number")


def _v1_family(name: bytes) -> _V1Family | None:
    if name not in _V1_FAMILIES:
        raise _reject("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")
    return _V1_FAMILIES[name]


def _check_v1_start(part: bytes) -> None:
    """Raise when `part`, a line still waiting for its CRLF, cannot begin a valid v1 line."""
    # §2.1: "must not tolerate a single CR or LF character to end the line".
    if b"\n" in part or b"\r" in part[:-1]:
        raise _reject("PROXY v1 line has a bare CR or LF")
    tokens = part.rstrip(b"\r").split(b" ")[1:]
    if len(tokens) == 1:
        if not any(name.startswith(tokens[0]) for name in _V1_FAMILIES):
            raise _reject("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")
        return
    family = _v1_family(tokens[0]) if tokens else None
    if family is None:
        return  # §2.1: after UNKNOWN the receiver ignores everything up to the CRLF
    fields = tokens[1:]
    if len(fields) > len(_V1_FIELD_NAMES):
        raise _reject("PROXY v1 line has too many fields")
    *done, last = fields
    for index, token in enumerate(done):
        if index < 2:
            _v1_address(family, token, _V1_FIELD_NAMES[index])
        else:
            _v1_port(token, _V1_FIELD_NAMES[index])
    start = family.address_start if len(done) < 2 else _PORT_START
    if not start.fullmatch(last):
        raise _reject(f"PROXY v1 {_V1_FIELD_NAMES[len(done)]} is malformed")


def _parse_v1_line(line: bytes) -> ProxyInfo:
    """The addresses of a complete v1 line, given without its CRLF."""
    if b"\r" in line or b"\n" in line:
        raise _reject("PROXY v1 line has a bare CR or LF")
    _, name, *fields = line.split(b" ")
    family = _v1_family(name)
    if family is None:
        return NO_ADDRESS  # §2.1: UNKNOWN, use the real connection's endpoints
    # §2.1: exactly one space between fields, so a doubled or trailing space makes an empty
    # field, which no validator accepts.
    if len(fields) != len(_V1_FIELD_NAMES):
        raise _reject(f"PROXY v1 {family.name} line needs 4 fields, not {len(fields)}")
    src, dst, sport, dport = fields
    return ProxyInfo(
        _v1_address(family, src, _V1_FIELD_NAMES[0]),
        _v1_port(sport, _V1_FIELD_NAMES[2]),
        _v1_address(family, dst, _V1_FIELD_NAMES[1]),
        _v1_port(dport, _V1_FIELD_NAMES[3]),
    )


def _parse_v1(buf: bytes) -> tuple[ProxyInfo, int] | None:
    # §2.1: "If the CRLF sequence is not found in the first 107 characters, the receiver should
    # declare the line invalid." find() with this end only sees a CRLF that fits in 107 bytes.
    end = buf.find(b"\r\n", 0, V1_MAX_LINE)
    if end < 0:
        _check_v1_start(buf[:V1_MAX_LINE])
        if len(buf) >= V1_MAX_LINE:
            raise _reject(f"PROXY v1 line has no CRLF within {V1_MAX_LINE} bytes")
        return None
    return _parse_v1_line(buf[:end]), end + 2


# --- version 2: the binary header ------------------------------------------------------------

# §2.2: the 12-byte signature, with a NUL at the 5th byte.
_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# §2.2: high nibble of the 13th byte is the version, which must be 2.
_V2_VERSION = 0x2
# §2.2: low nibble of the 13th byte: 0 LOCAL (health check by the proxy itself), 1 PROXY.
_LOCAL, _PROXY = 0x0, 0x1
# §2.2: 14th byte, address family in the high nibble (0 UNSPEC, 1 AF_INET, 2 AF_INET6,
# 3 AF_UNIX), transport in the low nibble (0 UNSPEC, 1 STREAM, 2 DGRAM); other values "must be
# rejected as invalid by receivers".
_MAX_FAMILY, _MAX_TRANSPORT = 0x3, 0x2
_UNSPEC, _DGRAM = 0x0, 0x2


def _inet(size: int) -> Callable[[bytes], ProxyInfo]:
    """§2.2: source address, destination address (`size` bytes each), source port, destination
    port (2 bytes each), all in network byte order."""

    def decode(block: bytes) -> ProxyInfo:
        src = ipaddress.ip_address(block[:size])
        dst = ipaddress.ip_address(block[size : 2 * size])
        ports = block[2 * size :]
        return ProxyInfo(
            str(src), int.from_bytes(ports[:2], "big"), str(dst), int.from_bytes(ports[2:], "big")
        )

    return decode


def _unix(block: bytes) -> ProxyInfo:
    # §2.2: two 108-byte paths. A unix path is no REMOTE_ADDR: keep the socket's peer.
    return NO_ADDRESS


# §2.2: the family/transport bytes whose address block we read, with its size: TCP over IPv4
# (2*4 + 2*2), TCP over IPv6 (2*16 + 2*2), UNIX stream (2*108).
_V2_ADDRESSES: dict[int, tuple[int, Callable[[bytes], ProxyInfo]]] = {
    0x11: (12, _inet(4)),
    0x21: (36, _inet(16)),
    0x31: (216, _unix),
}


def _check_v2_fixed(head: bytes) -> None:
    """Raise when the first (up to 16) bytes cannot begin a v2 header we accept."""
    if len(head) > 12:
        version, command = head[12] >> 4, head[12] & 0xF
        if version != _V2_VERSION:
            raise _reject(f"PROXY v2 header has version {version}, not 2")
        # §2.2: "Receivers must drop connections presenting unexpected values here."
        if command not in (_LOCAL, _PROXY):
            raise _reject(f"PROXY v2 header has unknown command {command}")
    if len(head) > 13:
        family, transport = head[13] >> 4, head[13] & 0xF
        if family > _MAX_FAMILY or transport > _MAX_TRANSPORT:
            raise _reject(f"PROXY v2 header has unknown family/transport 0x{head[13]:02x}")
        # corral serves HTTP over TCP: a relayed UDP flow cannot be what reached us. Under
        # LOCAL the family is ignored altogether (§2.2), so only PROXY is checked.
        if transport == _DGRAM and head[12] & 0xF == _PROXY:
            raise _reject("PROXY v2 header announces a datagram (UDP) connection")
    if len(head) == V2_FIXED_SIZE:
        length = int.from_bytes(head[14:16], "big")
        if V2_FIXED_SIZE + length > V2_MAX_HEADER:
            raise _reject(f"PROXY v2 header longer than {V2_MAX_HEADER} bytes")
        known = _V2_ADDRESSES.get(head[13])
        if known is not None and head[12] & 0xF == _PROXY and length < known[0]:
            raise _reject("PROXY v2 length is too short for its addresses")


def _check_tlvs(buf: bytes, start: int, end: int) -> None:
    """§2.2: after the addresses come Type-Length-Value vectors: 1 byte type, 2 bytes length
    (big-endian), then the value. We use none of them, but each must end within the header;
    checked over the bytes received so far, so an overrun is caught before the header ends."""
    received = min(len(buf), end)
    pos = start
    while pos + 3 <= received:
        pos += 3 + int.from_bytes(buf[pos + 1 : pos + 3], "big")
        if pos > end:
            raise _reject("PROXY v2 TLV runs past the end of the header")
    if received == end and pos != end:
        raise _reject("PROXY v2 header ends inside a TLV")


def _parse_v2(buf: bytes) -> tuple[ProxyInfo, int] | None:
    head = buf[:V2_FIXED_SIZE]
    _check_v2_fixed(head)
    if len(head) < V2_FIXED_SIZE:
        return None
    # §2.2: "the length of the protocol header in bytes is always exactly 16 + this value".
    end = V2_FIXED_SIZE + int.from_bytes(head[14:16], "big")
    known = _V2_ADDRESSES.get(head[13])
    # §2.2: LOCAL means "use the real connection endpoints and discard the protocol block";
    # UNSPEC (in either nibble) means "the receiver should ignore address information". In both
    # cases the block's layout is not ours to know, so it is skipped unread.
    if head[12] & 0xF == _LOCAL or known is None:
        return (NO_ADDRESS, end) if len(buf) >= end else None
    size, decode = known
    _check_tlvs(buf, V2_FIXED_SIZE + size, end)
    if len(buf) < end:
        return None
    return decode(buf[V2_FIXED_SIZE : V2_FIXED_SIZE + size]), end


# --- the entry point -------------------------------------------------------------------------

# §2.2 ("Identifying the protocol version"): v2 starts with its signature, v1 with "PROXY".
# Both beginnings are told apart by the first byte, so a prefix of either is unambiguous.
_VERSIONS: dict[str, tuple[bytes, Callable[[bytes], tuple[ProxyInfo, int] | None]]] = {
    "v1": (_V1_PREFIX, _parse_v1),
    "v2": (_V2_SIGNATURE, _parse_v2),
}


def _version_of(buf: bytes) -> str:
    for version, (start, _) in _VERSIONS.items():
        if start.startswith(buf[: len(start)]):
            return version
    # §2.2: "otherwise the protocol is not covered by this specification and the connection
    # must be dropped". §5: the header is required from a configured peer, never guessed at.
    raise _reject("connection does not start with a PROXY protocol header")


def parse_proxy_header(buf: bytes | bytearray, mode: str) -> tuple[ProxyInfo, int] | None:
    """Parse the PROXY protocol header at the start of `buf`.

    `mode` is "v1", "v2" or "auto" (either version, told apart by the first bytes). Returns
    None while `buf` holds only the beginning of a header that may still be valid, and
    `(info, n)` once it holds a whole one, `n` being the header's size in bytes (what follows
    is the first HTTP request). Raises `ProtocolError(400, reason)` as soon as the bytes cannot
    begin a valid header of the chosen version: malformed, the other version, longer than
    107 bytes (v1) or `V2_MAX_HEADER` bytes (v2), or anything else, such as a plain HTTP request.
    Raises ValueError for an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"unknown PROXY protocol mode {mode!r}; expected one of {MODES}")
    if not buf:
        return None
    data = bytes(buf[:V2_MAX_HEADER])
    version = _version_of(data)
    if mode != "auto" and version != mode:
        raise _reject(f"PROXY protocol {version} header where {mode} is configured")
    return _VERSIONS[version][1](data)
