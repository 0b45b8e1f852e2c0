"""The WebSocket opening handshake (RFC 6455 §4.2), from request bytes to the 101 head."""

from __future__ import annotations

import pytest

from corral.errors import ProtocolError
from corral.http.parser import Request, parse_head
from corral.http.websocket_handshake import (
    Handshake,
    accept_key,
    accept_response,
    check_upgrade,
    is_websocket_upgrade,
    refusal_response,
)

# RFC 6455 §1.3 / §4.2.2: the example key and its accept value.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

GOOD = {
    "Host": "server.example.com",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}


def request(
    fields: dict[str, str] | list[tuple[str, str]] = GOOD,
    line: str = "GET /chat HTTP/1.1",
) -> Request:
    pairs = list(fields.items()) if isinstance(fields, dict) else fields
    raw = line + "\r\n" + "".join(f"{name}: {value}\r\n" for name, value in pairs) + "\r\n"
    parsed = parse_head(raw.encode("latin-1"))
    assert parsed is not None
    return parsed[0]


def with_fields(**changes: str | None) -> dict[str, str]:
    fields = dict(GOOD)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            del fields[name]
        else:
            fields[name] = value
    return fields


def status_of(req: Request) -> int:
    with pytest.raises(ProtocolError) as info:
        check_upgrade(req)
    return info.value.status


def test_accept_key_rfc_example() -> None:
    assert accept_key(KEY) == ACCEPT


def test_valid_handshake() -> None:
    handshake = check_upgrade(request())
    assert handshake == Handshake(KEY, [], [])


def test_tokens_are_case_insensitive_and_lists() -> None:
    req = request(with_fields(Upgrade="foo, WebSocket", Connection="keep-alive, UPGRADE"))
    assert is_websocket_upgrade(req)
    assert check_upgrade(req).key == KEY


def test_plain_request_is_not_an_upgrade() -> None:
    assert not is_websocket_upgrade(request({"Host": "a"}))
    assert not is_websocket_upgrade(request(with_fields(Upgrade="h2c")))


@pytest.mark.parametrize(
    ("req", "status"),
    [
        (request(line="POST /chat HTTP/1.1"), 400),
        (request(line="GET /chat HTTP/1.0"), 400),
        (request(with_fields(Upgrade="h2c")), 400),
        (request(with_fields(Connection="keep-alive")), 400),
        (request(with_fields(Connection=None)), 400),
        (request(with_fields(Sec_WebSocket_Key=None)), 400),
        (request(with_fields(Sec_WebSocket_Key="short==")), 400),
        (request(with_fields(Sec_WebSocket_Key="dGhlIHNhbXBsZSBub25jZQ")), 400),
        (request(with_fields(Sec_WebSocket_Key="dGhlIHNhbXBsZSBub25jZSE=")), 400),  # 17 bytes
        (request([*GOOD.items(), ("Sec-WebSocket-Key", KEY)]), 400),
        (request(with_fields(Sec_WebSocket_Version="8")), 426),
        (request(with_fields(Sec_WebSocket_Version=None)), 426),
        (request([*GOOD.items(), ("Sec-WebSocket-Version", "13")]), 426),
        (request(with_fields(Content_Length="5")), 400),
        (request(with_fields(Transfer_Encoding="chunked")), 400),
        (request(with_fields(Sec_WebSocket_Protocol="chat, a b")), 400),
        (request(with_fields(Sec_WebSocket_Protocol="")), 400),
        (request(with_fields(Sec_WebSocket_Extensions="x; =1")), 400),
        (request(with_fields(Sec_WebSocket_Extensions='x; a="b c"')), 400),
        (request(with_fields(Sec_WebSocket_Extensions="x,,y")), 400),
    ],
)
def test_refused(req: Request, status: int) -> None:
    assert status_of(req) == status


def test_refusal_responses() -> None:
    assert refusal_response(ProtocolError(400, "x")).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    answer = refusal_response(ProtocolError(426, "x"))
    head, body = answer.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in head
    assert head.endswith(b"\r\nContent-Length: %d" % len(body))


def test_offers_are_parsed_in_order() -> None:
    req = request(
        [
            *GOOD.items(),
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("Sec-WebSocket-Protocol", "v2.json"),
            (
                "Sec-WebSocket-Extensions",
                'permessage-deflate; client_max_window_bits; server_max_window_bits="10"',
            ),
            ("Sec-WebSocket-Extensions", "Foo ;A=1 , permessage-deflate"),
        ]
    )
    handshake = check_upgrade(req)
    assert handshake.subprotocols == ["chat", "superchat", "v2.json"]
    assert handshake.extensions == [
        (
            "permessage-deflate",
            [("client_max_window_bits", None), ("server_max_window_bits", "10")],
        ),
        ("foo", [("a", "1")]),
        ("permessage-deflate", []),
    ]


def test_accept_response() -> None:
    handshake = Handshake(KEY, ["chat", "superchat"], [])
    head = accept_response(
        handshake,
        "superchat",
        "permessage-deflate; server_no_context_takeover",
        [("X-Trace", "abc"), ("Set-Cookie", "a=b")],
    )
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert head.endswith(b"\r\n\r\n") and head.count(b"\r\n\r\n") == 1
    lines = head.split(b"\r\n")
    assert b"Upgrade: websocket" in lines and b"Connection: Upgrade" in lines
    assert f"Sec-WebSocket-Accept: {ACCEPT}".encode() in lines
    assert b"Sec-WebSocket-Protocol: superchat" in lines
    assert b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover" in lines
    assert b"X-Trace: abc" in lines and b"Set-Cookie: a=b" in lines
    assert any(line.startswith(b"Server: ") for line in lines)
    assert any(line.startswith(b"Date: ") for line in lines)
    bare = accept_response(handshake).split(b"\r\n")
    assert not any(line.startswith(b"Sec-WebSocket-Protocol") for line in bare)


def test_application_server_and_date_replace_ours() -> None:
    head = accept_response(Handshake(KEY, [], []), headers=[("server", "app"), ("Date", "x")])
    assert head.count(b"erver: ") == 1 and b"server: app\r\n" in head
    assert head.count(b"ate: ") == 1


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Bad", "a\r\nInjected: 1")],
        [("Bad Name", "x")],
        [("Sec-WebSocket-Protocol", "chat")],
        [("Sec-WebSocket-Accept", "x")],
        [("Connection", "close")],
        [("Upgrade", "h2c")],
        [("Content-Length", "0")],
    ],
)
def test_accept_refuses_bad_or_owned_headers(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        accept_response(Handshake(KEY, [], []), headers=headers)


def test_accept_refuses_a_subprotocol_not_offered() -> None:
    with pytest.raises(ValueError):
        accept_response(Handshake(KEY, ["chat"], []), "other")
    with pytest.raises(ValueError):
        accept_response(Handshake(KEY, [], []), extensions="x\r\ny")
