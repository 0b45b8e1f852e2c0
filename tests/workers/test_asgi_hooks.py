"""pre_request and post_request on the real `asgi` worker: around each HTTP/1.1 request of a
kept-alive connection and each HTTP/2 stream, with the same `req` in both, the status the
client got in `resp`, a CGI-style environ; hooks that raise are logged and change nothing;
WebSocket sessions get no request hooks."""

from __future__ import annotations

import base64
import glob
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.asgi_h2_client import H2Client
from support.client import connect, read_response
from support.server import Server, wait_for

APP = "support.asgi_h2_apps:app"
H2C = ("--http-protocols", "h2,h1", "--http2-cleartext", "both")

# Each hook writes one JSON line; pre_request marks `req` so that post_request can show it got
# the same object. Two paths make a hook raise, after it has written its line.
HOOKS_CONF = """
import json

RECORDS = {records!r}
count = 0


def note(record):
    with open(RECORDS, "a") as fh:
        fh.write(json.dumps(record) + "\\n")


def pre_request(worker, req):
    global count
    count += 1
    req.mark = count
    note({{"hook": "pre", "mark": req.mark, "pid": worker.pid, "method": req.method,
          "uri": req.uri, "path": req.path, "query": req.query, "version": req.version,
          "headers": req.headers}})
    if req.path == "/pre-raises":
        raise ValueError("pre hook blew up")


def post_request(worker, req, environ, resp):
    strings = {{k: v for k, v in environ.items() if isinstance(v, str)}}
    note({{"hook": "post", "mark": getattr(req, "mark", None), "pid": worker.pid,
          "uri": req.uri, "status": resp.status, "code": resp.status_code, "sent": resp.sent,
          "chunked": resp.chunked,
          "headers": resp.headers, "environ": strings,
          "scope_path": environ["asgi.scope"]["path"]}})
    if req.path == "/post-raises":
        raise ValueError("post hook blew up")
"""


def hooked_server(tmp_path: Path, *args: str) -> tuple[Server, Path]:
    records = tmp_path / "hooks.jsonl"
    conf = tmp_path / "hooks.conf.py"
    conf.write_text(HOOKS_CONF.format(records=str(records)))
    return Server(APP, "-k", "asgi", "-c", str(conf), *args), records


def read_records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines()]


def posts(path: Path) -> list[dict[str, Any]]:
    return [r for r in read_records(path) if r["hook"] == "post"]


def exchange(sock: Any, target: str, headers: str = "") -> tuple[Any, bytes]:
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: example.com\r\n{headers}\r\n".encode())
    return read_response(sock)


def test_http11_keep_alive_requests_in_order(tmp_path: Path) -> None:
    srv, records = hooked_server(tmp_path)
    with srv:
        sock = connect(srv.port)
        resp, rest = exchange(sock, "/a%20b?x=1", "X-Id: 7\r\n")
        assert resp.status == 200 and not rest
        chunked = resp.header("transfer-encoding") == "chunked"
        resp, rest = exchange(sock, "/boom-before")  # the application fails: 500
        assert resp.status == 500
        sock.close()
        sock = connect(srv.port)
        resp, _ = exchange(sock, "/no-response")  # returns without a response: 500
        assert resp.status == 500
        sock.close()
        wait_for(lambda: len(posts(records)) == 3, what="three post_request lines")
    seen = read_records(records)
    assert [(r["hook"], r["mark"]) for r in seen] == [
        ("pre", 1), ("post", 1), ("pre", 2), ("post", 2), ("pre", 3), ("post", 3),
    ]  # fmt: skip
    pre, post = seen[0], seen[1]
    assert pre["method"] == "GET" and pre["uri"] == "/a%20b?x=1"
    assert pre["path"] == "/a%20b" and pre["query"] == "x=1" and pre["version"] == [1, 1]
    assert ["HOST", "example.com"] in pre["headers"] and ["X-ID", "7"] in pre["headers"]
    assert post["status"] == "200 OK" and post["code"] == 200
    assert post["sent"] > 0 and ["content-type", "application/json"] in post["headers"]
    assert post["chunked"] is chunked
    environ = post["environ"]
    assert environ["REQUEST_METHOD"] == "GET" and environ["RAW_URI"] == "/a%20b?x=1"
    assert environ["SCRIPT_NAME"] == "" and environ["PATH_INFO"] == "/a b"
    assert environ["QUERY_STRING"] == "x=1" and environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["HTTP_HOST"] == "example.com" and environ["HTTP_X_ID"] == "7"
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["SERVER_PORT"] == str(srv.port)
    assert environ["wsgi.url_scheme"] == "http" and post["scope_path"] == "/a b"
    for failed in seen[3], seen[5]:
        assert failed["status"] == "500 Internal Server Error" and failed["code"] == 500
        assert failed["sent"] == 0


def test_h2c_streams(tmp_path: Path) -> None:
    srv, records = hooked_server(tmp_path, *H2C)
    with srv, H2Client(srv.port) as client:
        stream = client.get("/s%2Fone?q=2", headers=[("x-id", "9")])
        assert stream.status == 200
        assert client.get("/boom-before").status == 500
        wait_for(lambda: len(posts(records)) == 2, what="two post_request lines")
    seen = read_records(records)
    assert [(r["hook"], r["mark"]) for r in seen] == [
        ("pre", 1),
        ("post", 1),
        ("pre", 2),
        ("post", 2),
    ]
    pre, post = seen[0], seen[1]
    assert pre["method"] == "GET" and pre["uri"] == "/s%2Fone?q=2" and pre["version"] == [2, 0]
    assert pre["path"] == "/s%2Fone" and ["X-ID", "9"] in pre["headers"]
    assert post["status"] == "200 OK" and post["sent"] == len(stream.data)
    assert post["chunked"] is False
    assert post["environ"]["PATH_INFO"] == "/s/one"
    assert post["environ"]["SERVER_PROTOCOL"].startswith("HTTP/2")
    assert seen[3]["status"] == "500 Internal Server Error"


def test_a_raising_hook_is_logged_and_the_worker_serves_on(tmp_path: Path) -> None:
    srv, records = hooked_server(tmp_path)
    with srv:
        sock = connect(srv.port)
        resp, _ = exchange(sock, "/pre-raises")
        assert resp.status == 200  # served all the same, as on the sync and gthread workers
        resp, _ = exchange(sock, "/post-raises")
        assert resp.status == 200
        resp, _ = exchange(sock, "/after")  # the same connection, the same worker
        assert resp.status == 200
        sock.close()
        srv.wait_log("Exception in pre_request hook")
        srv.wait_log("Exception in post_request hook")
        wait_for(lambda: len(posts(records)) == 3, what="three post_request lines")
        log = srv.log()
        assert "ValueError: pre hook blew up" in log and "ValueError: post hook blew up" in log
        assert "Traceback" in log
    seen = read_records(records)
    assert len({r["pid"] for r in seen}) == 1
    assert [r["status"] for r in posts(records)] == ["200 OK"] * 3
    assert seen[1]["mark"] == 1  # post_request still got the request pre_request marked


def test_websocket_sessions_get_no_request_hooks(tmp_path: Path) -> None:
    srv, records = hooked_server(tmp_path)
    with srv:
        sock = connect(srv.port)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101 ")
        sock.close()
        sock = connect(srv.port)
        assert exchange(sock, "/plain")[0].status == 200
        sock.close()
        wait_for(lambda: posts(records), what="the plain request's post_request")
    assert [(r["hook"], r["uri"]) for r in read_records(records)] == [
        ("pre", "/plain"),
        ("post", "/plain"),
    ]


def uwsgi_packet(env: dict[str, str]) -> bytes:
    block = b"".join(
        len(k).to_bytes(2, "little") + k.encode() + len(v).to_bytes(2, "little") + v.encode()
        for k, v in env.items()
    )
    return b"\x00" + len(block).to_bytes(2, "little") + b"\x00" + block


def test_uwsgi_protocol_requests(tmp_path: Path) -> None:
    srv, records = hooked_server(tmp_path, "--protocol", "uwsgi")
    env = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": "/u?x=1",
        "PATH_INFO": "/u",
        "QUERY_STRING": "x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "example.com",
    }
    with srv:
        sock = connect(srv.port)
        sock.sendall(uwsgi_packet(env))
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        sock.close()
        assert out.startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: posts(records), what="the uwsgi request's post_request")
    pre, post = read_records(records)
    assert pre["hook"] == "pre" and pre["uri"] == "/u?x=1" and pre["query"] == "x=1"
    assert post["mark"] == pre["mark"] and post["status"] == "200 OK"
    assert post["environ"]["HTTP_HOST"] == "example.com"


def newer_python() -> str | None:
    """A Python 3.12+ (whose request tasks start eagerly), if one is installed."""
    candidates = [shutil.which(f"python3.{minor}") for minor in (14, 13, 12)]
    candidates += sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.1[2-9]*/bin/python3")))
    probe = "import sys; print(sys.version_info >= (3, 12))"
    for path in filter(None, candidates):
        try:
            done = subprocess.run([path, "-c", probe], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue  # a pyenv shim without its version selected, or worse
        if done.stdout.strip() == "True":
            return path
    return None


@pytest.mark.parametrize("interpreter", ["this", "3.12+"])
def test_a_request_pipelined_behind_a_slow_one_is_hooked_and_logged_after_it(
    tmp_path: Path, interpreter: str
) -> None:
    """On Python 3.12+ the second request can run to its end inside the first one's task: its
    hooks and its access log line must still come after the first's."""
    python = None
    if interpreter != "this":
        python = newer_python()
        if python is None:
            pytest.skip("no Python 3.12+ installed")
    srv, records = hooked_server(tmp_path, "--access-logfile", "-")
    srv.python = python or srv.python
    with srv:
        sock = connect(srv.port)
        sock.sendall(b"GET /sleep?0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
        srv.wait_log("sleeping in")
        sock.sendall(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")  # while the first runs
        first, rest = read_response(sock)
        second, _ = read_response(sock, rest)
        assert first.body == b"slept" and second.status == 200
        sock.close()
        wait_for(lambda: len(posts(records)) == 2, what="two post_request lines")
        srv.wait_log('"GET /second HTTP/1.1" 200')
        lines = [line for line in srv.log().splitlines() if '"GET /' in line]
    assert [(r["hook"], r["uri"]) for r in read_records(records)] == [
        ("pre", "/sleep?0.3"), ("post", "/sleep?0.3"), ("pre", "/second"), ("post", "/second"),
    ]  # fmt: skip
    assert ["/sleep" in lines[0], "/second" in lines[1]] == [True, True]
