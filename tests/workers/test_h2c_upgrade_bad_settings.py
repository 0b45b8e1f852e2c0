"""An `Upgrade: h2c` request whose HTTP2-Settings decodes but is no valid SETTINGS payload is
answered in HTTP/1.1 (no 101, no traceback) on both worker families."""

from __future__ import annotations

import base64
import socket

import pytest

from corral.http.h2_negotiation import settings_payload_valid
from support.server import Server

BAD_PAYLOADS = [
    b"\x00\x02\x00\x00\x00\x05",  # ENABLE_PUSH = 5
    b"\x00\x05\x00\x00\x00\x01",  # MAX_FRAME_SIZE below 16384
    b"\x00\x04\x80\x00\x00\x00",  # INITIAL_WINDOW_SIZE above 2^31-1
    b"\x00\x03\x00\x00",  # not a whole parameter
]


@pytest.mark.parametrize("payload", BAD_PAYLOADS)
def test_bad_payloads_are_refused(payload: bytes) -> None:
    assert not settings_payload_valid(payload)


def test_good_payloads_are_taken() -> None:
    assert settings_payload_valid(b"")
    assert settings_payload_valid(b"\x00\x03\x00\x00\x00\x64\x00\x04\x00\x01\x00\x00")


@pytest.mark.parametrize(
    ("app", "worker"),
    [
        ("support.apps:echo", ("-k", "gthread", "--threads", "2")),
        ("support.asgi_apps:app", ("-k", "asgi")),
    ],
)
def test_upgrade_with_a_bad_settings_payload_is_served_in_http1(
    app: str, worker: tuple[str, ...]
) -> None:
    args = [*worker, "--http-protocols", "h2,h1", "--http2-cleartext", "upgrade"]
    with Server(app, *args) as srv:
        for payload in BAD_PAYLOADS:
            value = base64.urlsafe_b64encode(payload).rstrip(b"=")
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
                sock.sendall(
                    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                    b"Upgrade: h2c\r\nHTTP2-Settings: " + value + b"\r\n\r\n"
                )
                assert sock.recv(64).startswith(b"HTTP/1.1 200 ")
        assert "Traceback" not in srv.log()
