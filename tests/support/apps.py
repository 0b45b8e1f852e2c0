"""Small WSGI applications the integration tests serve, most wrapped in wsgiref's validator.

`wsgiref.validate.validator` checks both sides of PEP 3333: if corral hands the application a
bad environ or mishandles its response, the validator raises inside the server and the test
sees a 500 instead of the answer it expects.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.validate import validator

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

SEEN_FILE = os.environ.get("CORRAL_TEST_SEEN", "")


def _mark_seen(environ: Environ) -> None:
    """Tests that must prove the app was (not) called point CORRAL_TEST_SEEN at a file."""
    if SEEN_FILE:
        with open(SEEN_FILE, "a") as fh:
            fh.write(f"{environ['REQUEST_METHOD']} {environ.get('RAW_URI', '')}\n")


def _json(start_response: StartResponse, payload: object, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(payload, sort_keys=True).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _environ_view(environ: Environ) -> dict[str, object]:
    return {k: v for k, v in environ.items() if isinstance(v, (str, int, bool, tuple))}


def _upload(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Read the body in pieces; answer its size and sha256 (never hold it whole)."""
    digest = hashlib.sha256()
    size = 0
    stream = environ["wsgi.input"]
    while True:
        data = stream.read(65536)
        if not data:
            break
        digest.update(data)
        size += len(data)
    return _json(start_response, {"size": size, "sha256": digest.hexdigest()})


def _echo_body(environ: Environ, start_response: StartResponse) -> list[bytes]:
    stream = environ["wsgi.input"]
    pieces = []
    while piece := stream.read(65536):
        pieces.append(piece)
    body = b"".join(pieces)
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _lines(environ: Environ, start_response: StartResponse) -> list[bytes]:
    stream = environ["wsgi.input"]
    first = stream.readline()
    rest = stream.readlines()
    return _json(start_response, {"first": first.decode(), "rest": [r.decode() for r in rest]})


def _stream(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(5):
        yield f"part {i}\n".encode()


def _slow(environ: Environ, start_response: StartResponse) -> list[bytes]:
    seconds = float(environ.get("QUERY_STRING") or "1")
    time.sleep(seconds)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"slow"]


def _boom(environ: Environ, start_response: StartResponse) -> list[bytes]:
    raise RuntimeError("boom from the test app")


def _bad_header(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("X-Split", "a\r\nInjected: yes")])
    return [b"never"]


def _file(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    size = int(environ.get("QUERY_STRING") or "100000")
    fh = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the server via file_wrapper
    fh.write(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    fh.seek(0)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](fh, 8192)
    return wrapper


def _write_callable(environ: Environ, start_response: StartResponse) -> list[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    return [b"then returned"]


def _status(environ: Environ, start_response: StartResponse) -> list[bytes]:
    code = environ.get("QUERY_STRING") or "204"
    start_response(f"{code} Status", [])
    return []


_HOARD: list[bytearray] = []


def _grow(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Keep N MiB alive in this worker (for max_worker_memory and OOM tests)."""
    mib = int(environ.get("QUERY_STRING") or "10")
    block = bytearray(mib << 20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    _HOARD.append(block)
    return _json(
        start_response, {"pid": os.getpid(), "held_mib": sum(len(b) for b in _HOARD) >> 20}
    )


def _orphan(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Leave a grandchild behind that outlives its parent (as some libraries do): in a
    container it is re-parented to PID 1, which must reap it quietly."""
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            time.sleep(0.2)
        os._exit(0)
    os.waitpid(child, 0)
    return _json(start_response, {"orphaned": True})


def _pid(environ: Environ, start_response: StartResponse) -> list[bytes]:
    seconds = environ.get("QUERY_STRING")
    if seconds:  # /pid?0.5: which worker served a request that took this long
        time.sleep(float(seconds))
    return _json(start_response, {"pid": os.getpid()})


def _fork(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """A child that outlives the request and holds the worker's sockets (as a subprocess
    started with fork does)."""
    if os.fork() == 0:
        time.sleep(float(environ.get("QUERY_STRING") or "10"))
        os._exit(0)
    return _json(start_response, {"forked": True})


_CONTEXT_VAR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "corral_test", default=None
)


def _context_stream(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """A large streamed response that sets a context variable and checks it on every chunk:
    it must survive the response being parked and resumed."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def chunks() -> Iterator[bytes]:
        token = _CONTEXT_VAR.set("mine")
        lost = 0
        for _ in range(16):
            yield b"c" * (256 * 1024)
            lost += _CONTEXT_VAR.get() != "mine"
        _CONTEXT_VAR.reset(token)
        yield f"lost={lost}".encode()

    return chunks()


ROUTES: dict[str, Callable[[Environ, StartResponse], Iterable[bytes]]] = {
    "/fork": _fork,
    "/context-stream": _context_stream,
    "/upload": _upload,
    "/echo-body": _echo_body,
    "/lines": _lines,
    "/stream": _stream,
    "/slow": _slow,
    "/boom": _boom,
    "/bad-header": _bad_header,
    "/file": _file,
    "/write": _write_callable,
    "/status": _status,
    "/pid": _pid,
    "/grow": _grow,
    "/orphan": _orphan,
}


def _router(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    _mark_seen(environ)
    handler = ROUTES.get(environ["PATH_INFO"])
    if handler is not None:
        return handler(environ, start_response)
    return _json(start_response, _environ_view(environ))


# The validator refuses a few things PEP 3333 allows on purpose (1xx/204 statuses without
# headers are fine), so the status route is served unvalidated.
_validated = validator(_router)


def echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    if environ["PATH_INFO"] in ("/status", "/file"):
        return _router(environ, start_response)
    return _validated(environ, start_response)


application = echo


def create_app(greeting: str, shout: bool = False) -> Callable[..., Iterable[bytes]]:
    """A factory, for `module:create_app("hi", shout=True)` specs."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        text = (greeting.upper() if shout else greeting).encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))]
        )
        return [text]

    return app


not_callable = 42
