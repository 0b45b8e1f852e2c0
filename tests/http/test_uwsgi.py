"""uwsgi packets (http/uwsgi.py): packets as nginx's uwsgi_params builds them, fed whole, line
by line, byte by byte and in random chunks with the body after them; the mapping of the vars to
the request and the proxy's word; and every malformed or oversized packet refused."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.errors import ProtocolError
from corral.http.body import decoder_for
from corral.http.parser import Limits
from corral.http.uwsgi import MAX_VARS, Packet, parse_packet, parse_vars

SPLIT_NAMES = ["whole", "lines", "bytes", "random0", "random1", "random2"]
Splits = dict[str, Callable[[bytes], list[bytes]]]


def pair(key: str | bytes, value: str | bytes) -> bytes:
    k = key.encode("latin-1") if isinstance(key, str) else key
    v = value.encode("latin-1") if isinstance(value, str) else value
    return len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v


def packet(pairs: Iterable[tuple[str, str]] | dict[str, str], modifier1: int = 0) -> bytes:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    block = b"".join(pair(k, v) for k, v in items)
    return bytes([modifier1]) + len(block).to_bytes(2, "little") + b"\x00" + block


# What nginx sends for `curl -d 'a=1' 'http://example.org:8080/p%20q/r?x=1'` with
# `include uwsgi_params;` (the order of the file, then the client's headers).
NGINX_VARS = {
    "QUERY_STRING": "x=1",
    "REQUEST_METHOD": "POST",
    "CONTENT_TYPE": "application/x-www-form-urlencoded",
    "CONTENT_LENGTH": "3",
    "REQUEST_URI": "/p%20q/r?x=1",
    "PATH_INFO": "/p q/r",
    "DOCUMENT_ROOT": "/usr/share/nginx/html",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REQUEST_SCHEME": "https",
    "HTTPS": "on",
    "REMOTE_ADDR": "203.0.113.7",
    "REMOTE_PORT": "51234",
    "SERVER_PORT": "8080",
    "SERVER_NAME": "example.org",
    "HTTP_HOST": "example.org",
    "HTTP_USER_AGENT": "curl/7.88.1",
    "HTTP_ACCEPT": "*/*",
    "HTTP_X_CUSTOM_THING": "a b",
    "HTTP_CONTENT_LENGTH": "3",
    "HTTP_CONTENT_TYPE": "application/x-www-form-urlencoded",
}


def feed(pieces: Iterable[bytes], limits: Limits | None = None) -> tuple[Packet, bytes, bytes]:
    """Parse a packet from pieces arriving one by one (re-parsing the growing buffer, as the
    workers do), then the body (CONTENT_LENGTH bytes) from the rest: (packet, body, leftover)."""
    stream = iter(pieces)
    buf = b""
    parsed = None
    for piece in stream:
        buf += piece
        parsed = parse_packet(buf) if limits is None else parse_packet(buf, limits)
        if parsed is not None:
            break
    assert parsed is not None, "the packet never completed"
    result, used = parsed
    decoder = decoder_for(result.request)
    body, leftover = b"", b""
    for piece in (buf[used:], *stream):
        data, rest = decoder.feed(piece)
        body += data
        leftover += rest
    assert decoder.done
    return result, body, leftover


@pytest.mark.parametrize("split", SPLIT_NAMES)
def test_nginx_packet_in_every_split(split: str, splits: Splits) -> None:
    raw = packet(NGINX_VARS) + b"a=1" + b"extra"
    result, body, leftover = feed(splits[split](raw))
    req = result.request
    assert (req.method, req.target, req.query) == ("POST", "/p%20q/r?x=1", "x=1")
    assert req.path == "/p%20q/r"  # the client's spelling: it decodes to PATH_INFO
    assert req.headers == [
        ("HOST", "example.org"),
        ("USER-AGENT", "curl/7.88.1"),
        ("ACCEPT", "*/*"),
        ("X-CUSTOM-THING", "a b"),
        ("CONTENT-LENGTH", "3"),
        ("CONTENT-TYPE", "application/x-www-form-urlencoded"),
    ]
    assert req.content_length == 3 and not req.chunked
    # The client's version; one request per connection, its response close-delimited.
    assert (req.version, req.keep_alive, req.expect_continue) == ("HTTP/1.1", False, False)
    assert req.close_delimited
    assert (body, leftover) == (b"a=1", b"extra")
    assert (result.remote_addr, result.remote_port) == ("203.0.113.7", "51234")
    assert (result.server_name, result.server_port, result.https) == ("example.org", "8080", True)


def test_incomplete_packets_need_more() -> None:
    raw = packet(NGINX_VARS)
    for size in range(len(raw)):
        assert parse_packet(raw[:size]) is None


@pytest.mark.parametrize(
    ("sent", "version"),
    [
        ("HTTP/1.0", "HTTP/1.0"),
        ("HTTP/1.1", "HTTP/1.1"),
        # nginx's $server_protocol spelling; corral's own HTTP/2 requests say HTTP/2.
        ("HTTP/2.0", "HTTP/2"),
        ("HTTP/2", "HTTP/2"),
        ("HTTP/3.0", "HTTP/3"),
        ("HTTP/3", "HTTP/3"),
        # Anything else is HTTP/1.0: absent, empty, HTTP/0.9, another case, junk.
        (None, "HTTP/1.0"),
        ("", "HTTP/1.0"),
        ("HTTP/0.9", "HTTP/1.0"),
        ("http/1.1", "HTTP/1.0"),
        ("HTTP/1.1 ", "HTTP/1.0"),
        ("HTTP/1.2", "HTTP/1.0"),
        ("HTTP/4.0", "HTTP/1.0"),
        ("HTTP/1.1\r\nX: y", "HTTP/1.0"),
        ("SPDY/3", "HTTP/1.0"),
    ],
)
def test_server_protocol_is_the_version(sent: str | None, version: str) -> None:
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/"}
    if sent is not None:
        env["SERVER_PROTOCOL"] = sent
    result, _ = parse_packet(packet(env))  # type: ignore[misc]
    req = result.request
    assert req.version == version
    # Whatever the version, the response is framed by the close, one request per connection.
    assert req.close_delimited and not req.keep_alive and not req.chunked


def test_minimal_packet_defaults() -> None:
    result, used = parse_packet(packet({}))  # type: ignore[misc]
    assert used == 4
    req = result.request
    assert (req.method, req.target, req.path, req.query) == ("GET", "/", "/", "")
    assert (req.version, req.close_delimited) == ("HTTP/1.0", True)
    assert req.headers == [] and req.content_length is None
    assert result == Packet(req, None, None, None, None, None)


@pytest.mark.parametrize(
    ("uri", "path_info", "path"),
    [
        ("/a%2Fb", "/a/b", "/a%2Fb"),  # the client's escaping kept
        ("/x/../admin", "/admin", "/admin"),  # nginx normalised: what it routed on
        ("/caf%C3%A9", "/caf\xc3\xa9", "/caf%C3%A9"),
        ("/rewritten", "/100%/x y", "/100%25/x%20y"),  # a rewrite: PATH_INFO escaped again
        ("", "/only", "/only"),
    ],
)
def test_path_is_path_info(uri: str, path_info: str, path: str) -> None:
    parsed = parse_packet(packet({"REQUEST_URI": uri, "PATH_INFO": path_info}))
    assert parsed is not None
    assert parsed[0].request.path == path
    assert parsed[0].request.target == (uri or path)


def test_without_path_info_the_uri_path() -> None:
    parsed = parse_packet(packet({"REQUEST_URI": "/a%20b?q=1", "QUERY_STRING": "q=1"}))
    assert parsed is not None
    assert (parsed[0].request.path, parsed[0].request.query) == ("/a%20b", "q=1")


@pytest.mark.parametrize(
    ("vars_", "https"),
    [
        ({"HTTPS": "on"}, True),
        ({"HTTPS": "off"}, False),
        ({"REQUEST_SCHEME": "https"}, True),
        ({"REQUEST_SCHEME": "http"}, False),
        ({"wsgi.url_scheme": "https"}, True),
        ({"HTTPS": ""}, None),
        ({}, None),
    ],
)
def test_scheme(vars_: dict[str, str], https: bool | None) -> None:
    parsed = parse_packet(packet(vars_))
    assert parsed is not None and parsed[0].https is https


def test_framing_headers_dropped() -> None:
    vars_ = {
        "CONTENT_LENGTH": "2",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "HTTP_CONNECTION": "upgrade",
        "HTTP_UPGRADE": "websocket",
        "HTTP_X_A": "1",
    }
    parsed = parse_packet(packet(vars_))
    assert parsed is not None
    req = parsed[0].request
    assert req.headers == [("X-A", "1"), ("CONTENT-LENGTH", "2")]
    assert not req.chunked and req.content_length == 2


BAD = {
    "modifier1": (packet({}, modifier1=5), 501),
    "key cut short": (b"\x00\x05\x00\x00" + b"\x09\x00abc", 400),
    "value cut short": (b"\x00\x07\x00\x00" + b"\x01\x00K\x05\x00ab", 400),
    "value length cut": (b"\x00\x04\x00\x00" + b"\x01\x00K\x01", 400),
    "empty key": (packet([("", "v")]), 400),
    "bad method": (packet({"REQUEST_METHOD": "GE T"}), 400),
    "bad length": (packet({"CONTENT_LENGTH": "-1"}), 400),
    "length with sign": (packet({"CONTENT_LENGTH": "+5"}), 400),
    "header var name": (packet({"HTTP_X-Y": "1"}), 400),
    "empty header name": (packet({"HTTP_": "1"}), 400),
    "CR in value": (packet({"HTTP_X": "a\r\nb"}), 400),
    "NUL in uri": (packet({"REQUEST_URI": "/a\x00"}), 400),
    "LF in uri": (packet({"REQUEST_URI": "/a\nb"}), 400),
    "uri too long": (packet({"REQUEST_URI": "/" + "a" * 5000}), 414),
    "header too large": (packet({"HTTP_X": "a" * 9000}), 431),
    "too many headers": (packet({f"HTTP_X{i}": "1" for i in range(101)}), 431),
    "too many vars": (packet([(f"K{i}", "") for i in range(MAX_VARS + 1)]), 400),
}


@pytest.mark.parametrize("name", BAD)
@pytest.mark.parametrize("split", ["whole", "bytes", "random0"])
def test_malformed_refused(name: str, split: str, splits: Splits) -> None:
    raw, status = BAD[name]
    buf = b""
    with pytest.raises(ProtocolError) as info:
        for piece in splits[split](raw):
            buf += piece
            parse_packet(buf)
    assert info.value.status == status


def test_limits_follow_settings() -> None:
    raw = packet({f"HTTP_X{i}": "1" for i in range(5)})
    assert parse_packet(raw, Limits(fields=5)) is not None
    with pytest.raises(ProtocolError) as info:
        parse_packet(raw, Limits(fields=4))
    assert info.value.status == 431


def test_the_largest_packet() -> None:
    # datasize is a u16: 65535 bytes of vars at most, and such a packet parses.
    value = "v" * (65535 - 2 - 3 - 2)
    raw = packet({"KEY": value})
    assert int.from_bytes(raw[1:3], "little") == 65535
    parsed = parse_packet(raw + b"next")
    assert parsed is not None and parsed[1] == 65539


@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    for raw in (data, b"\x00" + len(data).to_bytes(2, "little") + b"\x00" + data):
        try:
            parse_packet(raw)
        except ProtocolError as exc:
            assert exc.status in (400, 414, 431, 501)


def test_random_vars_round_trip() -> None:
    rng = random.Random(13)
    for _ in range(200):
        env = {
            "".join(rng.choice("ABCXYZ_") for _ in range(rng.randint(1, 8))): "".join(
                chr(rng.randint(32, 255)) for _ in range(rng.randint(0, 20))
            )
            for _ in range(rng.randint(0, 30))
        }
        block = b"".join(pair(k, v) for k, v in env.items())
        assert parse_vars(block) == env
