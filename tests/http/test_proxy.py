"""PROXY protocol header parsing: valid headers of both versions fed in every split, the
rejections (each as early as the bytes allow), and a property test over random bytes."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.errors import ProtocolError
from corral.http.proxy import V1_MAX_LINE, V2_MAX_HEADER, ProxyInfo, parse_proxy_header

HTTP = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
NONE = ProxyInfo(None, None, None, None)
FFFF6 = ":".join(["ffff"] * 8)


def v2(ver_cmd: int, fam: int, block: bytes, length: int | None = None) -> bytes:
    size = len(block) if length is None else length
    return SIG + bytes([ver_cmd, fam]) + size.to_bytes(2, "big") + block


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + len(value).to_bytes(2, "big") + value


def inet4(src: str, dst: str, sport: int, dport: int) -> bytes:
    addrs = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
    return addrs + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    addrs = ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    return addrs + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")


UNIX_BLOCK = b"/run/haproxy.sock".ljust(108, b"\x00") + b"/run/app.sock".ljust(108, b"\x00")
TLVS = (
    tlv(0x01, b"h2")  # ALPN
    + tlv(0x02, b"example.com")  # AUTHORITY
    + tlv(0x04, b"")  # NOOP, empty value
    + tlv(0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3"))  # SSL with a sub-TLV
    + tlv(0xEA, b"vpce-0123456789abcdef")  # custom range (AWS NLB uses 0xEA)
)
# A NOOP TLV that pads an IPv4 header to exactly the accepted maximum.
PAD = tlv(0x04, bytes(V2_MAX_HEADER - 16 - 12 - 3))
MAPPED = str(ipaddress.IPv6Address("::ffff:192.0.2.1"))  # its str() differs across Pythons

VALID: dict[str, tuple[bytes, ProxyInfo]] = {
    "v1-tcp4": (
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        ProxyInfo("192.168.0.1", 56324, "192.168.0.11", 443),
    ),
    "v1-tcp4-extremes": (
        b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
        ProxyInfo("0.0.0.0", 0, "255.255.255.255", 65535),
    ),
    "v1-tcp6": (
        b"PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 65535 80\r\n",
        ProxyInfo("2001:db8::1", 65535, "2001:db8::2", 80),
    ),
    "v1-tcp6-longest": (
        f"PROXY TCP6 {FFFF6} {FFFF6} 65535 65535\r\n".encode(),
        ProxyInfo(
            str(ipaddress.IPv6Address(FFFF6)), 65535, str(ipaddress.IPv6Address(FFFF6)), 65535
        ),
    ),
    "v1-tcp6-mapped": (
        b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1234 8000\r\n",
        ProxyInfo(MAPPED, 1234, "::1", 8000),
    ),
    "v1-unknown": (b"PROXY UNKNOWN\r\n", NONE),
    "v1-unknown-107": (f"PROXY UNKNOWN {FFFF6} {FFFF6} 65535 65535\r\n".encode(), NONE),
    "v1-unknown-junk": (b"PROXY UNKNOWN whatever \x00 follows  here\r\n", NONE),
    "v2-tcp4": (
        v2(0x21, 0x11, inet4("203.0.113.7", "10.0.0.1", 50000, 8000)),
        ProxyInfo("203.0.113.7", 50000, "10.0.0.1", 8000),
    ),
    "v2-tcp6": (
        v2(0x21, 0x21, inet6("2001:db8::7", "2001:db8::1", 1, 443)),
        ProxyInfo("2001:db8::7", 1, "2001:db8::1", 443),
    ),
    "v2-local": (v2(0x20, 0x00, b""), NONE),
    "v2-local-with-block": (v2(0x20, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2)), NONE),
    "v2-tcp4-tlvs": (
        v2(0x21, 0x11, inet4("198.51.100.2", "10.1.2.3", 65535, 0) + TLVS),
        ProxyInfo("198.51.100.2", 65535, "10.1.2.3", 0),
    ),
    "v2-tcp6-tlvs": (
        v2(0x21, 0x21, inet6("::1", "fe80::1", 8080, 80) + TLVS),
        ProxyInfo("::1", 8080, "fe80::1", 80),
    ),
    "v2-unix": (v2(0x21, 0x31, UNIX_BLOCK), NONE),
    "v2-unix-tlvs": (v2(0x21, 0x31, UNIX_BLOCK + TLVS), NONE),
    "v2-unspec": (v2(0x21, 0x00, b"ignored bytes"), NONE),
    "v2-largest": (
        v2(0x21, 0x11, inet4("1.1.1.1", "2.2.2.2", 3, 4) + PAD),
        ProxyInfo("1.1.1.1", 3, "2.2.2.2", 4),
    ),
}


def random_pieces(seed: int) -> Callable[[bytes], list[bytes]]:
    def split(raw: bytes) -> list[bytes]:
        rng = random.Random(seed)
        pieces, pos = [], 0
        while pos < len(raw):
            size = rng.choice((0, 1, 2, 3, 5, 8, 13, 64))  # b"" pieces on purpose
            pieces.append(raw[pos : pos + size])
            pos += size
        return pieces

    return split


SPLITS: dict[str, Callable[[bytes], list[bytes]]] = {
    "whole": lambda raw: [raw],
    "bytes": lambda raw: [raw[i : i + 1] for i in range(len(raw))],
    **{f"random{seed}": random_pieces(seed) for seed in range(4)},
}


def feed(pieces: list[bytes], mode: str) -> tuple[tuple[ProxyInfo, int], bytearray]:
    """Feed pieces as a worker would, checking None until the header is complete. Returns the
    result and the buffer as it was when the result came."""
    buf = bytearray()
    for piece in pieces:
        buf += piece
        result = parse_proxy_header(buf, mode)
        if result is not None:
            return result, buf
    raise AssertionError("header never completed")


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", VALID)
def test_valid_header_in_every_split(name: str, split: str) -> None:
    header, info = VALID[name]
    mode = name[:2]
    for each in (mode, "auto"):
        (got, used), buf = feed(SPLITS[split](header + HTTP), each)
        assert got == info
        assert used == len(header)
        # The result came with the piece that completed the header, not later.
        assert len(header) <= len(buf) < len(header) + 64


@pytest.mark.parametrize("name", VALID)
def test_every_proper_prefix_needs_more(name: str) -> None:
    header, _ = VALID[name]
    for end in range(len(header)):
        assert parse_proxy_header(header[:end], "auto") is None


def test_bytes_and_bytearray_agree() -> None:
    header, info = VALID["v2-tcp4-tlvs"]
    assert parse_proxy_header(header + HTTP, "v2") == (info, len(header))
    assert parse_proxy_header(bytearray(header + HTTP), "v2") == (info, len(header))
    assert parse_proxy_header(memoryview(header).tobytes(), "v2") == (info, len(header))


# (bytes, mode): rejected with 400, fed whole.
INVALID: dict[str, tuple[bytes, str]] = {
    # v1 framing
    "v1-lowercase-proxy": (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1"),
    "v1-lowercase-family": (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "v1"),
    "v1-unknown-family": (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "v1"),
    "v1-udp": (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1"),
    "v1-unknown-glued": (b"PROXY UNKNOWNX\r\n", "v1"),
    "v1-no-family": (b"PROXY \r\n", "v1"),
    "v1-no-space": (b"PROXY\r\n", "v1"),
    "v1-tab": (b"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1"),
    "v1-double-space-family": (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1"),
    "v1-double-space-addr": (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "v1"),
    "v1-double-space-port": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", "v1"),
    "v1-trailing-space": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1"),
    "v1-too-few-fields": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1"),
    "v1-too-many-fields": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "v1"),
    "v1-bare-lf": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + HTTP, "v1"),
    "v1-bare-cr": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n", "v1"),
    "v1-unknown-bare-lf": (b"PROXY UNKNOWN\n" + HTTP, "v1"),
    "v1-unknown-cr-inside": (b"PROXY UNKNOWN a\rb\r\n", "v1"),
    "v1-no-crlf-in-107": (b"PROXY UNKNOWN " + b"a" * 200 + b"\r\n", "v1"),
    "v1-crlf-at-108": (f"PROXY UNKNOWN {FFFF6} {FFFF6} 65535 655355\r\n".encode(), "v1"),
    "v1-truncated-garbage": (b"PROXY TCP4 192.168.0.1 192.168.0.11 563\x00\r\n", "v1"),
    # v1 addresses
    "v1-ip-256": (b"PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n", "v1"),
    "v1-ip-leading-zero": (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "v1"),
    "v1-ip-three-parts": (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "v1"),
    "v1-ip-five-parts": (b"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "v1"),
    "v1-ip-hostname": (b"PROXY TCP4 localhost 5.6.7.8 1 2\r\n", "v1"),
    "v1-ipv6-in-tcp4": (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "v1"),
    "v1-ipv6-dst-in-tcp4": (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "v1"),
    "v1-ipv4-in-tcp6": (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "v1"),
    "v1-ipv6-zone": (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "v1"),
    "v1-ipv6-two-double-colons": (b"PROXY TCP6 1::2::3 ::1 1 2\r\n", "v1"),
    "v1-ipv6-long-group": (b"PROXY TCP6 12345::1 ::1 1 2\r\n", "v1"),
    "v1-ipv6-brackets": (b"PROXY TCP6 [::1] ::1 1 2\r\n", "v1"),
    "v1-ipv6-mapped-leading-zero": (b"PROXY TCP6 ::ffff:1.2.3.04 ::1 1 2\r\n", "v1"),
    # v1 ports
    "v1-port-65536": (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n", "v1"),
    "v1-port-99999": (b"PROXY TCP4 1.2.3.4 5.6.7.8 80 99999\r\n", "v1"),
    "v1-port-negative": (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 80\r\n", "v1"),
    "v1-port-plus": (b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 80\r\n", "v1"),
    "v1-port-leading-zero": (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n", "v1"),
    "v1-port-underscore": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1_0 80\r\n", "v1"),
    "v1-port-hex": (b"PROXY TCP4 1.2.3.4 5.6.7.8 0x50 80\r\n", "v1"),
    "v1-port-fullwidth": ("PROXY TCP4 1.2.3.4 5.6.7.8 \uff18 80\r\n".encode(), "v1"),
    # v2 fixed part
    "v2-bad-signature": (SIG[:10] + b"X" + SIG[11:] + b"\x21\x11\x00\x0c" + bytes(12), "v2"),
    "v2-version-1": (v2(0x11, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2)), "v2"),
    "v2-version-3": (v2(0x31, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2)), "v2"),
    "v2-command-2": (v2(0x22, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2)), "v2"),
    "v2-command-f": (v2(0x2F, 0x00, b""), "v2"),
    "v2-family-4": (v2(0x21, 0x41, bytes(12)), "v2"),
    "v2-transport-3": (v2(0x21, 0x13, bytes(12)), "v2"),
    "v2-local-family-f": (v2(0x20, 0xF0, b""), "v2"),
    "v2-dgram4": (v2(0x21, 0x12, inet4("1.2.3.4", "5.6.7.8", 1, 2)), "v2"),
    "v2-dgram6": (v2(0x21, 0x22, inet6("::1", "::2", 1, 2)), "v2"),
    "v2-dgram-unix": (v2(0x21, 0x32, UNIX_BLOCK), "v2"),
    "v2-dgram-unspec": (v2(0x21, 0x02, b""), "v2"),
    "v2-length-over-cap": (v2(0x21, 0x11, bytes(V2_MAX_HEADER - 15)), "v2"),
    "v2-length-65535": (v2(0x21, 0x11, b"", length=0xFFFF), "v2"),
    "v2-length-short-ipv4": (v2(0x21, 0x11, bytes(8)), "v2"),
    "v2-length-short-ipv6": (v2(0x21, 0x21, bytes(12)), "v2"),
    "v2-length-short-unix": (v2(0x21, 0x31, bytes(36)), "v2"),
    # v2 TLVs
    "v2-tlv-overrun": (v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00\x09ab"), "v2"),
    "v2-tlv-half-header": (v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2) + b"\x04\x00"), "v2"),
    "v2-tlv-after-good-overrun": (
        v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2) + tlv(1, b"h2") + b"\x02\xff\xff"),
        "v2",
    ),
    "v2-truncated-garbage": (SIG[:6] + b"GET / HTTP/1.1\r\n", "v2"),
    # mode mismatches
    "v1-in-v2-mode": (VALID["v1-tcp4"][0], "v2"),
    "v2-in-v1-mode": (VALID["v2-tcp4"][0], "v1"),
    "v1-unknown-in-v2-mode": (VALID["v1-unknown"][0], "v2"),
    "v2-local-in-v1-mode": (VALID["v2-local"][0], "v1"),
}
for _mode in ("v1", "v2", "auto"):
    INVALID[f"http-get-{_mode}"] = (HTTP, _mode)
    INVALID[f"http-post-{_mode}"] = (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", _mode)
    INVALID[f"http2-preface-{_mode}"] = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", _mode)
    INVALID[f"tls-hello-{_mode}"] = (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", _mode)
    INVALID[f"crlf-then-http-{_mode}"] = (b"\r\n" + HTTP, _mode)


@pytest.mark.parametrize("name", INVALID)
def test_invalid_header_is_400(name: str) -> None:
    raw, mode = INVALID[name]
    with pytest.raises(ProtocolError) as caught:
        parse_proxy_header(raw, mode)
    assert caught.value.status == 400
    assert caught.value.reason
    # Fed byte by byte, it is rejected at some point too, and stays rejected afterwards.
    first = _first_rejection(raw, mode)
    assert all(_raises(raw[:end], mode) for end in range(first, len(raw) + 1))


def _raises(buf: bytes, mode: str) -> bool:
    try:
        parse_proxy_header(buf, mode)
    except ProtocolError:
        return True
    return False


def _first_rejection(raw: bytes, mode: str) -> int:
    return next(end for end in range(1, len(raw) + 1) if _raises(raw[:end], mode))


# How many bytes must be seen before the header is known to be bad: no later than this.
EARLY: dict[str, tuple[bytes, str, int]] = {
    "http-get": (HTTP, "auto", 1),
    "http-post": (b"POST / HTTP/1.1\r\n", "auto", 2),
    "v1-in-v2-mode": (b"PROXY TCP4 ", "v2", 1),
    "v2-in-v1-mode": (SIG, "v1", 1),
    "lowercase": (b"proxy", "v1", 1),
    "bad-signature": (SIG[:10] + b"X", "v2", 11),
    "v2-version": (SIG + b"\x11", "v2", 13),
    "v2-dgram": (SIG + b"\x21\x12", "v2", 14),
    "v2-length-over-cap": (SIG + b"\x21\x11\xff\xff", "v2", 16),
    "v2-length-short": (SIG + b"\x21\x11\x00\x08", "v2", 16),
    "v2-tlv-overrun": (
        v2(0x21, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00\xff", length=100),
        "v2",
        31,
    ),
    "v1-family": (b"PROXY TCP5", "v1", 10),
    "v1-double-space": (b"PROXY TCP4  ", "v1", 12),
    "v1-ip-256": (b"PROXY TCP4 256", "v1", 14),
    "v1-ip-leading-zero": (b"PROXY TCP4 01", "v1", 13),
    "v1-ipv6-in-tcp4": (b"PROXY TCP4 ::", "v1", 12),
    "v1-src-not-ipv4": (b"PROXY TCP4 1.2.3 ", "v1", 17),
    "v1-port-sign": (b"PROXY TCP4 1.2.3.4 5.6.7.8 +", "v1", 28),
    "v1-port-leading-zero": (b"PROXY TCP4 1.2.3.4 5.6.7.8 08", "v1", 29),
    "v1-port-too-big": (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 ", "v1", 33),
    "v1-extra-field": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ", "v1", 31),
    "v1-bare-lf": (b"PROXY UNKNOWN\n", "v1", 14),
    "v1-bare-cr": (b"PROXY UNKNOWN\rx", "v1", 15),
    "v1-truncated-garbage": (b"PROXY TCP4 192.168.0.1 192.168.0.11 563\x00", "v1", 40),
    "v1-no-crlf": (b"PROXY UNKNOWN " + b"a" * 200, "v1", V1_MAX_LINE),
}


@pytest.mark.parametrize("name", EARLY)
def test_rejected_as_soon_as_possible(name: str) -> None:
    raw, mode, latest = EARLY[name]
    assert _first_rejection(raw, mode) <= latest


def test_107_byte_line_is_accepted_108_is_not() -> None:
    line = VALID["v1-unknown-107"][0]
    assert len(line) == V1_MAX_LINE
    assert parse_proxy_header(line + HTTP, "v1") == (NONE, V1_MAX_LINE)
    longer = line[:-2] + b"5\r\n"
    with pytest.raises(ProtocolError):
        parse_proxy_header(longer, "v1")


def test_largest_v2_header_is_accepted() -> None:
    header, info = VALID["v2-largest"]
    assert len(header) == V2_MAX_HEADER
    assert parse_proxy_header(header + HTTP, "auto") == (info, V2_MAX_HEADER)


def test_unknown_mode_is_a_programming_error() -> None:
    for mode in ("off", "V1", "", "both"):
        with pytest.raises(ValueError):
            parse_proxy_header(VALID["v1-tcp4"][0], mode)


def test_empty_buffer_needs_more() -> None:
    for mode in ("v1", "v2", "auto"):
        assert parse_proxy_header(b"", mode) is None


# --- properties ------------------------------------------------------------------------------

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STARTS = [b"", b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN", SIG, SIG + b"\x21"]
STARTS += [v2(0x21, fam, b"")[:16] for fam in (0x00, 0x11, 0x21, 0x31)]


def _outcome(buf: bytes, mode: str) -> object:
    try:
        result = parse_proxy_header(buf, mode)
    except ProtocolError as exc:
        assert exc.status == 400
        return "rejected"
    if result is not None:
        info, used = result
        assert isinstance(info, ProxyInfo)
        assert 0 < used <= len(buf)
    return result


@PROPERTY
@given(
    start=st.sampled_from(STARTS),
    tail=st.binary(max_size=300),
    mode=st.sampled_from(["v1", "v2", "auto"]),
    cut=st.integers(min_value=0),
)
def test_random_bytes_only_raise_protocol_error(
    start: bytes, tail: bytes, mode: str, cut: int
) -> None:
    raw = start + tail
    whole = _outcome(raw, mode)
    # A prefix never disagrees with the whole: a rejection is final, a result does not change,
    # and "need more" is the only answer that more bytes may turn into something else.
    prefix = _outcome(raw[: cut % (len(raw) + 1)], mode)
    if prefix == "rejected" or prefix is not None:
        assert whole == prefix
