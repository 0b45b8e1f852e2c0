"""Servers for the HTTP/2 client and framework tests: corral per worker family with the HTTP/2
settings a test asks for, or, to check the tests themselves, Hypercorn.

With CORRAL_TEST_H2_PEER=hypercorn (and Hypercorn installed where CORRAL_TEST_HYPERCORN or
bench/.peers/bin/hypercorn says), the tests that do not depend on corral's own settings run
against Hypercorn instead: a test that fails there is either wrong about HTTP/2 or has found
where Hypercorn differs (docs/http2.md, "Clients and frameworks", lists those known).
Hypercorn speaks h2c by prior knowledge and by upgrade, and h2 over TLS, whatever the test's
`cleartext` asks; tests of corral's negotiation rules skip themselves (`corral_only`).

What this module must never do: bind a fixed port, or start anything but the server under test.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from support.pki import make_pki, tls_args
from support.server import ROOT, TESTS, Server

PEER = os.environ.get("CORRAL_TEST_H2_PEER", "")
HYPERCORN = os.environ.get("CORRAL_TEST_HYPERCORN", str(ROOT / "bench/.peers/bin/hypercorn"))

# worker id -> (application, worker arguments)
WORKERS = {
    "gthread": ("support.h2_apps:wsgi", ["-k", "gthread", "--threads", "8"]),
    "asgi": ("support.h2_apps:asgi", ["-k", "asgi"]),
}


def corral_only() -> None:
    """Skip a test of corral's own settings when the tests run against another server."""
    if PEER:
        pytest.skip(f"tests corral's own settings or choices, not {PEER}'s")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"needs {tool}")
    return path


def make_tls(directory: Path) -> Path:
    need("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    make_pki(directory)
    return directory


class HypercornServer(Server):
    """Hypercorn on the test's socket, serving the same application module."""

    def __init__(self, app: str, tls: Path | None) -> None:
        site = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        # The tests' frameworks (Flask, FastAPI) come from the test interpreter's packages.
        env = {"PYTHONPATH": f"{TESTS}:{site / 'site-packages'}"}
        super().__init__(app, *(tls_args(tls) if tls else []), env=env)

    def command(self) -> list[str]:
        assert self.sock is not None
        return [HYPERCORN, "--bind", f"fd://{self.sock.fileno()}", *self.args, self.app]

    def start(self, wait: bool = True) -> Server:
        super().start(wait=False)
        if wait:
            self.wait_log("Running on")
        return self


def h2_server(
    app: str,
    worker_args: list[str],
    *,
    tls: Path | None = None,
    cleartext: str = "off",
    protocols: str = "h2,h1",
    extra: tuple[str, ...] = (),
) -> Server:
    """corral (or the peer) serving `app` with HTTP/2 as asked; use it as a context manager."""
    if PEER == "hypercorn":
        if not os.path.exists(HYPERCORN):
            pytest.skip(f"CORRAL_TEST_H2_PEER=hypercorn but {HYPERCORN} is missing")
        return HypercornServer(app, tls)
    if PEER:
        pytest.skip(f"unknown CORRAL_TEST_H2_PEER {PEER!r}")
    args = [*worker_args, "--http-protocols", protocols]
    if tls is not None:
        args += tls_args(tls)
    else:
        args += ["--http2-cleartext", cleartext]
    return Server(app, *args, *extra)


def worker_server(
    worker: str,
    *,
    tls: Path | None = None,
    cleartext: str = "off",
    protocols: str = "h2,h1",
    extra: tuple[str, ...] = (),
) -> Server:
    """The client tests' application (tests/support/h2_apps.py) on `worker`."""
    app, worker_args = WORKERS[worker]
    return h2_server(
        app, worker_args, tls=tls, cleartext=cleartext, protocols=protocols, extra=extra
    )
