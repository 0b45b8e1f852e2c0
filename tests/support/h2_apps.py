"""The same small application as WSGI (`wsgi`, for gthread) and ASGI (`asgi`, for the asgi
worker), for the HTTP/2 client tests (tests/integration/test_h2_clients.py).

Routes:
- `GET /`: a fixed text body (`HELLO`).
- `POST /sha256`: the request body echoed back, with its length and SHA-256 (computed by the
  server) in `x-body-length` and `x-body-sha256`.
- `GET /peer`: JSON with the protocol the application saw (`HTTP/1.1`, `HTTP/2`) and the
  client's port, so a test can tell whether requests shared one connection.
- `GET /trailers` (ASGI only): a body, then `grpc-status` and `grpc-message` as trailers.
- `GET /barrier?group=G&n=N[&wait=S]`: waits until N requests of group G are in the
  application at the same moment, then answers 200 with the `/peer` JSON. A server that runs
  the streams of a connection one after another never gets N in at once: each answers 504
  after S seconds (BARRIER_WAIT by default) instead. This shows concurrency without measuring
  time. Each arrival writes `barrier G waiting` to standard error (the server's log), so a
  test knows when a request is inside the application.

What this module must never do: keep state other than the barrier groups, or sleep.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

HELLO = b"hello over HTTP/2\n"
TRAILED_BODY = b"\x00\x00\x00\x00\x05hello"  # a gRPC-framed message
BARRIER_WAIT = 10.0

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _barrier_args(query: str) -> tuple[str, int, float]:
    args = urllib.parse.parse_qs(query)
    group = args["group"][0]
    print(f"barrier {group} waiting", file=sys.stderr, flush=True)
    return group, int(args["n"][0]), float(args.get("wait", [BARRIER_WAIT])[0])


# -- WSGI -------------------------------------------------------------------------------------

_barriers: dict[str, threading.Barrier] = {}
_barriers_lock = threading.Lock()


def _thread_barrier(group: str, n: int, wait: float) -> threading.Barrier:
    with _barriers_lock:
        return _barriers.setdefault(group, threading.Barrier(n, timeout=wait))


def _peer(environ: dict[str, Any]) -> bytes:
    port = int(environ.get("REMOTE_PORT") or 0)
    return json.dumps({"protocol": environ["SERVER_PROTOCOL"], "port": port}).encode()


def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/" and method == "GET":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [HELLO]
    if path == "/sha256" and method == "POST":
        body = environ["wsgi.input"].read()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(len(body))),
                ("X-Body-Length", str(len(body))),
                ("X-Body-Sha256", hashlib.sha256(body).hexdigest()),
            ],
        )
        return [body]
    if path == "/peer":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [_peer(environ)]
    if path == "/barrier":
        try:
            _thread_barrier(*_barrier_args(environ["QUERY_STRING"])).wait()
        except threading.BrokenBarrierError:
            start_response("504 Gateway Timeout", [("Content-Type", "text/plain")])
            return [b"the other requests of the group never came in\n"]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [_peer(environ)]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


# -- ASGI -------------------------------------------------------------------------------------

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_groups: dict[str, tuple[asyncio.Event, list[int]]] = {}


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = headers or [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionError("client left")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _asgi_peer(scope: dict[str, Any]) -> bytes:
    client = scope.get("client") or ("", 0)
    protocol = "HTTP/" + scope["http_version"]
    return json.dumps({"protocol": protocol, "port": client[1]}).encode()


async def _meet(group: str, n: int, wait: float) -> bool:
    event, arrived = _groups.setdefault(group, (asyncio.Event(), []))
    arrived.append(1)
    if len(arrived) >= n:
        event.set()
    try:
        await asyncio.wait_for(event.wait(), wait)
    except asyncio.TimeoutError:
        return False
    return True


async def asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path, method = scope["path"], scope["method"]
    json_type = [(b"content-type", b"application/json")]
    if path == "/" and method == "GET":
        await _respond(send, 200, HELLO)
    elif path == "/sha256" and method == "POST":
        body = await _read_body(receive)
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(len(body)).encode()),
            (b"x-body-length", str(len(body)).encode()),
            (b"x-body-sha256", hashlib.sha256(body).hexdigest().encode()),
        ]
        await _respond(send, 200, body, headers)
    elif path == "/peer":
        await _respond(send, 200, _asgi_peer(scope), json_type)
    elif path == "/barrier":
        query = scope["query_string"].decode("latin-1")
        if await _meet(*_barrier_args(query)):
            await _respond(send, 200, _asgi_peer(scope), json_type)
        else:
            await _respond(send, 504, b"the other requests of the group never came in\n")
    elif path == "/trailers":
        await _trailers(scope, send)
    else:
        await _respond(send, 404, b"not found\n")


async def _trailers(scope: dict[str, Any], send: Send) -> None:
    """A gRPC-style answer: a body, then its status in trailers (ASGI's trailers extension)."""
    if "http.response.trailers" not in scope.get("extensions", {}):
        await _respond(send, 501, b"no trailers extension in the scope\n")
        return
    headers = [(b"content-type", b"application/grpc"), (b"trailer", b"grpc-status, grpc-message")]
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
    await send({"type": "http.response.body", "body": TRAILED_BODY})
    trailers = [(b"grpc-status", b"0"), (b"grpc-message", b"done")]
    await send({"type": "http.response.trailers", "headers": trailers, "more_trailers": False})
