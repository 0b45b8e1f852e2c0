"""Request-smuggling defences through the real server: what is refused, and what is not served
after a refusal."""

from __future__ import annotations

import json

import pytest

from support.client import exchange
from support.server import Server

KINDS = {"sync": ["-k", "sync"], "gthread": ["-k", "gthread", "--threads", "2"]}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_nothing_buffered_behind_a_bad_request_is_served(kind: str, tmp_path: object) -> None:
    seen = f"{tmp_path}/seen"
    with Server("support.apps:echo", *KINDS[kind], env={"CORRAL_TEST_SEEN": seen}) as srv:
        smuggled = (
            b"POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        reply = exchange(srv.port, smuggled)
        assert reply.startswith(b"HTTP/1.1 400 ")
        assert reply.count(b"HTTP/1.1 ") == 1
        # A bad chunk size inside a body: the framing error closes the connection too.
        reply = exchange(
            srv.port,
            b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n-1\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        assert reply.count(b"HTTP/1.1 ") == 1
        try:
            with open(seen) as fh:
                assert "/smuggled" not in fh.read()
        except FileNotFoundError:
            pass


@pytest.mark.parametrize(
    "value", [b"\x0bchunked", b"chunked\x0c", b"\x1cchunked", b"chunked\x85", b"\xa0chunked"]
)
def test_transfer_encoding_wrapped_in_odd_whitespace_is_refused(value: bytes) -> None:
    with Server("support.apps:echo") as srv:
        reply = exchange(
            srv.port,
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + value + b"\r\n\r\n0\r\n\r\n",
        )
        assert reply[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 501")


def test_conflicting_scheme_headers_from_a_trusted_proxy_are_refused() -> None:
    with Server("support.apps:echo") as srv:
        reply = exchange(
            srv.port,
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n"
            b"X-Forwarded-Ssl: off\r\n\r\n",
        )
        assert reply.startswith(b"HTTP/1.1 400 ")


def test_scheme_headers_from_an_untrusted_peer_are_ignored() -> None:
    with Server("support.apps:echo", "--forwarded-allow-ips", "10.0.0.0/8") as srv:
        reply = exchange(srv.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n\r\n")
        assert json.loads(reply.partition(b"\r\n\r\n")[2])["wsgi.url_scheme"] == "http"


@pytest.mark.parametrize(
    ("mode", "status", "visible"),
    [("drop", 200, False), ("refuse", 400, False), ("dangerous", 200, True)],
)
def test_header_map_modes(mode: str, status: int, visible: bool) -> None:
    with Server("support.apps:echo", "--header-map", mode) as srv:
        reply = exchange(srv.port, b"GET / HTTP/1.1\r\nHost: a\r\nX_Custom: u\r\n\r\n")
        assert reply.startswith(f"HTTP/1.1 {status} ".encode())
        if status == 200:
            env = json.loads(reply.partition(b"\r\n\r\n")[2])
            assert ("HTTP_X_CUSTOM" in env) is visible


def test_script_name_from_environment_and_trusted_header() -> None:
    with Server("support.apps:echo", env={"SCRIPT_NAME": "/mount"}) as srv:
        env = json.loads(
            exchange(srv.port, b"GET /mount/x/y HTTP/1.1\r\nHost: a\r\n\r\n").partition(
                b"\r\n\r\n"
            )[2]
        )
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/mount", "/x/y")
        env = json.loads(
            exchange(
                srv.port, b"GET /other/z HTTP/1.1\r\nHost: a\r\nSCRIPT_NAME: /other\r\n\r\n"
            ).partition(b"\r\n\r\n")[2]
        )
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/other", "/z")
