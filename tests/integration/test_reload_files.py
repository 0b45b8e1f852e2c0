"""--reload: a worker restarts when a source file of the application changes."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest

from corral.workers.reloader import available_engines
from support.server import Server, wait_for

APP = """
def application(environ, start_response):
    body = {text!r}
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def fetch(port: int) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return b""
    finally:
        conn.close()


@pytest.mark.parametrize("engine", available_engines())
def test_reload_on_source_change(tmp_path: Path, engine: str) -> None:
    module = tmp_path / f"reloadme_{engine}.py"
    module.write_text(APP.format(text=b"one"))
    extra = tmp_path / "template.txt"
    extra.write_text("v1")
    args = ["--chdir", str(tmp_path), "--reload", "--reload-engine", engine]
    args += ["--reload-extra-file", str(extra)]
    with Server(module.stem, *args) as srv:
        assert fetch(srv.port) == b"one"
        module.write_text(APP.format(text=b"two"))
        wait_for(lambda: fetch(srv.port) == b"two", 15)
        srv.wait_log("source files changed")
        extra.write_text("v2")
        srv.wait_booted(3)
