"""The scenarios: what load, on which application, with how many workers, pinned or not.

Each is a row in SCENARIOS, run with a fresh server start. Access logs are off everywhere
except in `access-log`, which repeats `keepalive` with `--access-logfile /dev/null` for the
servers that take the flag, so its cost reads off the two rows.

A scenario is WSGI or ASGI: only servers of the same interface take part, and its ratios are
to its own baseline (gunicorn-sync for WSGI, uvicorn-asgi for ASGI). The WebSocket echo
scenarios are loaded by wsload.py instead of wrk; a "request" is then one echoed message.

The HTTP/2 scenarios (interface "http2") are loaded by h2load: 8 connections with 16
streams in flight on each, cleartext by prior knowledge and over TLS (ALPN), and the same
load in HTTP/1.1 (`h2load --h1`, keep-alive and pipelined) on the same servers' HTTP/1.1
form, so that the two protocols read off the same client. They name their servers (`only`):
each server runs its own family's hello application (ASGI or WSGI, both 13 bytes on `/`).
GROUPS names sets of scenarios for `--scenarios` (`asgi`, `wsgi`, `h2`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apps.wsgi_app import json_body
from servers import (
    ASGI_BASELINE,
    BASELINE,
    H1_TWINS,
    H2_BASELINE,
    H2_H1_BASELINE,
    H2_SERVERS,
    Server,
)

HERE = Path(__file__).resolve().parent
WSGI_APP = "wsgi_app:application"
ASGI_APP = "asgi_app:app"
ASGI_STREAM_SIZE = 1024 * 1024
WS_SMALL = 64
WS_LARGE = 16 * 1024
FLASK_APP = "flask_app:app"
STATIC_SIZE = 100 * 1024
H2_CONNECTIONS = 8
H2_STREAMS = 16
ECHO_SIZE = 1024 * 1024
# The scenario that `access-log` is compared with, server by server.
ACCESS_LOG_REFERENCE = "keepalive"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    path: str
    app: str = WSGI_APP
    workers: int = 1
    pinned: bool = True  # server on core 0, wrk on core 1
    close: bool = False  # a new connection for every request
    method: str = "GET"
    body_size: int = 0  # request body size (the Lua script sends the same)
    script: Path | None = None
    expect_size: int | None = None  # response body size the check request must see
    access_log: bool = False
    nginx: bool = False  # nginx can serve it, as the ceiling
    # The scenario this one is compared with: it runs right after it on each server.
    right_after: str | None = None
    interface: str = "wsgi"  # or "asgi": which servers take part
    baseline: str = BASELINE  # the server every ratio in this scenario is to
    websocket_size: int = 0  # WebSocket echo of messages of this size, by wsload.py
    # h2load instead of wrk: "h2c" (cleartext, prior knowledge), "h2" (TLS, ALPN) or "h1"
    # (`h2load --h1`); "" for wrk.
    h2load: str = ""
    connections: int = 64
    streams: int = 1  # h2load -m: streams per connection (HTTP/1.1: pipelined requests)
    tls: bool = False
    # When set, exactly these servers take part, each on its own family's application.
    only: tuple[str, ...] = ()

    def admits(self, server: Server) -> bool:
        """Whether `server` takes part in this scenario."""
        if self.only:
            return server.name in self.only
        if not server.in_load_scenarios:
            return False
        if server.runs_python and server.interface != self.interface:
            return False
        if self.access_log and not server.takes_access_log:
            return False
        if not server.runs_python and not self.nginx:
            return False
        return server.max_workers is None or self.workers <= server.max_workers

    def app_for(self, server: Server) -> str:
        """The application `server` runs here: a scenario naming its servers mixes both
        families, each on its own hello application."""
        if not self.only:
            return self.app
        return ASGI_APP if server.interface == "asgi" else WSGI_APP

    @property
    def speaks_h2(self) -> bool:
        return self.h2load in ("h2c", "h2")


def hello(name: str, title: str, **options: bool | int | str) -> Scenario:
    """A scenario on the 13-byte hello route, which nginx also serves."""
    return Scenario(name, title, "/", expect_size=13, nginx=True, **options)  # type: ignore[arg-type]


def asgi(name: str, title: str, path: str, **options: bool | int | str) -> Scenario:
    """A scenario on the ASGI application, its ratios to uvicorn's."""
    return Scenario(
        name,
        title,
        path,
        app=ASGI_APP,
        interface="asgi",
        baseline=ASGI_BASELINE,
        **options,  # type: ignore[arg-type]
    )


def h2(name: str, title: str, protocol: str, **options: bool | int | str) -> Scenario:
    """An h2load scenario on the hello route: 8 connections, 16 requests in flight on each
    (streams, or pipelined HTTP/1.1 requests) unless told otherwise."""
    h1 = protocol == "h1"
    settings: dict[str, object] = {
        "connections": H2_CONNECTIONS,
        "streams": H2_STREAMS,
        "interface": "http2",
        "baseline": H2_H1_BASELINE if h1 else H2_BASELINE,
        "only": tuple(t for t in H1_TWINS.values() if t) if h1 else H2_SERVERS,
        **options,
    }
    return Scenario(name, title, "/", h2load=protocol, expect_size=13, **settings)  # type: ignore[arg-type]


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        hello("keepalive", "hello, keep-alive, 1 worker pinned"),
        hello("close", "hello, new connection per request, 1 worker pinned", close=True),
        hello("keepalive-2w", "hello, keep-alive, 2 workers unpinned", workers=2, pinned=False),
        Scenario(
            "json",
            "1 KB JSON, keep-alive, 1 worker pinned",
            "/json",
            expect_size=len(json_body()),
            nginx=True,
        ),
        Scenario(
            "static",
            "100 KB file via wsgi.file_wrapper, keep-alive, 1 worker pinned",
            "/static",
            expect_size=STATIC_SIZE,
            nginx=True,
        ),
        Scenario(
            "echo",
            "1 MB POST echoed back, keep-alive, 1 worker pinned",
            "/echo",
            method="POST",
            body_size=ECHO_SIZE,
            script=HERE / "conf" / "post_1mb.lua",
            expect_size=ECHO_SIZE,
        ),
        Scenario(
            "flask", "small Flask app, keep-alive, 1 worker pinned", "/users/42", app=FLASK_APP
        ),
        hello(
            "access-log",
            "hello, keep-alive, 1 worker pinned, access log on",
            access_log=True,
            right_after=ACCESS_LOG_REFERENCE,
        ),
        asgi("asgi-keepalive", "ASGI hello, keep-alive, 1 worker pinned", "/", expect_size=13),
        asgi(
            "asgi-close",
            "ASGI hello, new connection per request, 1 worker pinned",
            "/",
            close=True,
            expect_size=13,
        ),
        asgi(
            "asgi-stream",
            "ASGI 1 MiB response streamed as 16 messages of 64 KiB, keep-alive, 1 worker pinned",
            "/stream",
            expect_size=ASGI_STREAM_SIZE,
        ),
        asgi(
            "ws-echo-64",
            "WebSocket echo of 64-byte binary messages, 64 connections, 1 worker pinned "
            "(req = one message echoed)",
            "/ws",
            websocket_size=WS_SMALL,
        ),
        asgi(
            "ws-echo-16k",
            "WebSocket echo of 16 KiB binary messages, 64 connections, 1 worker pinned "
            "(req = one message echoed)",
            "/ws",
            websocket_size=WS_LARGE,
        ),
        h2("h2c", "HTTP/2 cleartext (prior knowledge), 8 connections x 16 streams", "h2c"),
        h2("h2-tls", "HTTP/2 over TLS (ALPN h2), 8 connections x 16 streams", "h2", tls=True),
        h2(
            "h1-keepalive",
            "HTTP/1.1 keep-alive through h2load --h1, 128 connections x 1 request in flight",
            "h1",
            connections=H2_CONNECTIONS * H2_STREAMS,
            streams=1,
        ),
        h2(
            "h1-pipelined",
            "HTTP/1.1 through h2load --h1, 8 connections x 16 pipelined requests",
            "h1",
        ),
    )
}

GROUPS: dict[str, list[str]] = {
    "asgi": [name for name, s in SCENARIOS.items() if s.interface == "asgi"],
    "wsgi": [name for name, s in SCENARIOS.items() if s.interface == "wsgi"],
    "h2": [name for name, s in SCENARIOS.items() if s.interface == "http2"],
}
