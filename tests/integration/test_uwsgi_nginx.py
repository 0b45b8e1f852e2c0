"""--protocol uwsgi behind the real nginx (`uwsgi_pass` with `include uwsgi_params;`, the
directives of examples/nginx-uwsgi.conf), over TCP and over a unix socket, with a Flask app on
gthread and a FastAPI app on asgi: a GET with a query and headers, a POST with a body, a
streamed response, REMOTE_PORT from nginx's variable, HTTPS believed from a trusted peer only;
the client's HTTP version (curl over HTTP/1.0, HTTP/1.1 and HTTP/2) as the application's
SERVER_PROTOCOL / http_version while the response to nginx stays close-delimited (streamed,
HEAD, 204, an early hint). Without nginx, raw packets to sync, gthread and asgi show that
framing on the wire (gevent too). Skipped when nginx is not installed (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reliability.test_nginx import NGINX, free_port, started_nginx
from support.server import ROOT, Server, wait_for

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")

EXAMPLE = ROOT / "examples" / "nginx-uwsgi.conf"
PARAMS = Path("/etc/nginx/uwsgi_params")

# The locations of the example, plus /secure/: the same with `HTTPS on` (the test's nginx
# listens on plain HTTP and plays a TLS terminator). /tcp and /unix pick the upstream; the
# rewrite makes PATH_INFO differ from REQUEST_URI, as an application mounted under a prefix sees.
LOCATION = """
        location /{name}/ {{
            rewrite ^/{name}(/.*)$ $1 break;
{directives}{extra}        }}
"""


def example_directives() -> list[str]:
    """The directives of the example's `location / {}` block."""
    block = EXAMPLE.read_text().split("location / {", 1)[1].split("}", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


CONFIG = """
{user}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 256;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 10m;
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{h2_port} http2;
{locations}
    }}
}}
"""


def nginx_config(tmp: Path, port: int, h2_port: int, corral_port: int, sock: Path) -> str:
    upstreams = {"tcp": f"127.0.0.1:{corral_port}", "unix": f"unix:{sock}"}
    shipped = example_directives()

    def directives(upstream: str) -> str:
        lines = [
            f"include {PARAMS};" if line == "include uwsgi_params;" else line for line in shipped
        ]
        lines = [f"uwsgi_pass {upstream};" if x.startswith("uwsgi_pass ") else x for x in lines]
        return "".join(f"            {line}\n" for line in lines)

    locations = "".join(
        LOCATION.format(
            name=f"{kind}{'-secure' if secure else ''}",
            directives=directives(upstream),
            extra="            uwsgi_param HTTPS on;\n" if secure else "",
        )
        for kind, upstream in upstreams.items()
        for secure in (False, True)
    )
    return CONFIG.format(
        user="user root;" if os.geteuid() == 0 else "",  # workers must reach tmp's socket
        tmp=tmp,
        port=port,
        h2_port=h2_port,
        locations=locations,
    )


@contextlib.contextmanager
def running_nginx(tmp: Path, corral_port: int, sock: Path) -> Iterator[tuple[int, int]]:
    """nginx's ports: HTTP/1.x, and HTTP/2 (cleartext, prior knowledge)."""
    h2_ports: list[int] = []

    def render(port: int) -> str:
        h2_ports.append(free_port())  # a fresh one on each of started_nginx's tries
        return nginx_config(tmp, port, h2_ports[-1], corral_port, sock)

    with started_nginx(tmp, render) as port:  # nginx listens on both before it answers
        yield port, h2_ports[-1]


# The framing apps are the uwsgi apps plus the routes of the version and framing checks.
APPS = {
    "flask-gthread": ("apps.uwsgi_flask_framing_app:app", ["-k", "gthread", "--threads", "4"]),
    "fastapi-asgi": ("apps.uwsgi_fastapi_framing_app:app", ["-k", "asgi"]),
}


@contextlib.contextmanager
def stack_ports(tmp: Path, app: str, trusted: bool) -> Iterator[tuple[int, int]]:
    """corral with --protocol uwsgi on TCP and a unix socket, behind nginx: nginx's HTTP/1.x
    and HTTP/2 ports."""
    module, args = APPS[app]
    sock = tmp / "corral.sock"
    allow = "127.0.0.1" if trusted else "192.0.2.1"  # unix peers are trusted either way
    extra = ["--protocol", "uwsgi", "-b", f"unix:{sock}", "--forwarded-allow-ips", allow]
    with Server(module, *args, *extra) as srv, running_nginx(tmp, srv.port, sock) as ports:
        wait_for(sock.exists, 10, "corral's unix socket")
        yield ports


@contextlib.contextmanager
def stack(tmp: Path, app: str, trusted: bool) -> Iterator[int]:
    """`stack_ports`, nginx's HTTP/1.x port only."""
    with stack_ports(tmp, app, trusted) as (port, _):
        yield port


def fetch(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes, int]:
    """(status, headers, body, the client's own port)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        client_port = conn.sock.getsockname()[1]
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read(), client_port
    finally:
        conn.close()


def info(port: int, path: str, **kwargs: Any) -> tuple[dict[str, Any], int]:
    status, _, body, client_port = fetch(port, kwargs.pop("method", "GET"), path, **kwargs)
    assert status == 200, body
    return json.loads(body), client_port


def seen(app: str, data: dict[str, Any]) -> dict[str, Any]:
    """What the application was given, in WSGI terms for both apps."""
    if app.startswith("flask"):
        env = data["environ"]
        return {
            "path": env["PATH_INFO"],
            "query": env["QUERY_STRING"],
            "remote": (env["REMOTE_ADDR"], int(env["REMOTE_PORT"])),
            "scheme": env["wsgi.url_scheme"],
            "custom": env["HTTP_X_CUSTOM"],
            "content_type": env["CONTENT_TYPE"],
            "content_length": env["CONTENT_LENGTH"],
        }
    scope, headers = data["scope"], data["headers"]
    return {
        "path": scope["path"],
        "query": scope["query_string"],
        "remote": tuple(scope["client"]),
        "scheme": scope["scheme"],
        "custom": headers.get("x-custom"),
        "content_type": headers.get("content-type"),
        "content_length": headers.get("content-length"),
    }


@pytest.mark.parametrize("app", APPS)
def test_through_nginx_trusted(app: str, tmp_path: Path) -> None:
    with stack(tmp_path, app, trusted=True) as port:
        for kind in ("tcp", "unix"):
            data, client_port = info(
                port, f"/{kind}/info/a%20b/c?x=1&y=%2F", headers={"X-Custom": "one two"}
            )
            got = seen(app, data)
            assert got["path"] == "/info/a b/c"
            assert got["query"] == "x=1&y=%2F"
            assert data["args"] == {"x": "1", "y": "/"}
            assert got["custom"] == "one two"
            # REMOTE_ADDR/REMOTE_PORT are nginx's $remote_addr/$remote_port: this client.
            assert got["remote"] == ("127.0.0.1", client_port)
            assert got["scheme"] == "http"

            form = b"name=corral&z=" + b"x" * 100_000
            data, _ = info(
                port,
                f"/{kind}/info/post",
                method="POST",
                body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            got = seen(app, data)
            assert data["body"] == form.decode()
            assert got["content_type"] == "application/x-www-form-urlencoded"
            assert got["content_length"] == str(len(form))

            status, headers, body, _ = fetch(port, "GET", f"/{kind}/stream?count=2000")
            assert status == 200
            assert body == b"".join(b"chunk %d\n" % i for i in range(2000))
            # nginx framed it for the client; no chunk markers leaked into the body.
            assert "Content-Length" in headers or headers.get("Transfer-Encoding") == "chunked"

            data, _ = info(port, f"/{kind}-secure/info/s")
            assert seen(app, data)["scheme"] == "https"


@pytest.mark.parametrize("app", APPS)
def test_untrusted_peer_cannot_say_https(app: str, tmp_path: Path) -> None:
    with stack(tmp_path, app, trusted=False) as port:
        data, client_port = info(port, "/tcp-secure/info/s")
        got = seen(app, data)
        assert got["scheme"] == "http"
        # The connection's own peer: nginx's upstream socket, not the client.
        assert got["remote"][0] == "127.0.0.1" and got["remote"][1] != client_port
        data, client_port = info(port, "/unix-secure/info/s")  # a unix peer is trusted
        assert seen(app, data)["scheme"] == "https"


def test_malformed_packet_closes_the_connection(tmp_path: Path) -> None:
    module, args = APPS["flask-gthread"]
    with Server(module, *args, "--protocol", "uwsgi") as srv:
        for raw in (b"\x05\x00\x00\x00", b"\x00\x05\x00\x00\x09\x00abc"):
            out = exchange(srv.port, raw)
            assert out.startswith((b"HTTP/1.1 501", b"HTTP/1.1 400")), out
        assert "Traceback" not in srv.log()


def uwsgi_packet(env: dict[str, str]) -> bytes:
    block = b"".join(
        len(k).to_bytes(2, "little") + k.encode() + len(v).to_bytes(2, "little") + v.encode()
        for k, v in env.items()
    )
    return b"\x00" + len(block).to_bytes(2, "little") + b"\x00" + block


def exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


@pytest.mark.parametrize("app", APPS)
def test_uwsgi_allow_ips(app: str, tmp_path: Path) -> None:
    """Gunicorn's uwsgi_allow_ips: a TCP peer outside it gets 403; a unix peer is served."""
    module, args = APPS[app]
    sock = tmp_path / "corral.sock"
    extra = ["--protocol", "uwsgi", "--uwsgi-allow-from", "192.0.2.1", "-b", f"unix:{sock}"]
    raw = uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/info/x", "REQUEST_URI": "/info/x"})
    with Server(module, *args, *extra) as srv:
        assert exchange(srv.port, raw).startswith(b"HTTP/1.1 403 ")
        wait_for(sock.exists, 10, "corral's unix socket")
        with socket.socket(socket.AF_UNIX) as unix:
            unix.settimeout(10)
            unix.connect(str(sock))
            unix.sendall(raw)
            out = b""
            while chunk := unix.recv(65536):
                out += chunk
        assert out.startswith(b"HTTP/1.1 200 "), out
        assert b'"rest":"x"' in out.replace(b" ", b"")


def test_example_config_is_valid_nginx(tmp_path: Path) -> None:
    """The example's location is what the tests above run; `nginx -t` checks the rest, with
    its files (pid, logs, socket) moved into a temporary directory."""
    assert example_directives()[:2] == ["include uwsgi_params;", "uwsgi_pass corral;"]
    text = EXAMPLE.read_text()
    for old, new in {
        "user www-data;": "user root;" if os.geteuid() == 0 else "",
        "/run/nginx.pid": str(tmp_path / "nginx.pid"),
        "/var/log/nginx/": f"{tmp_path}/",
        "include uwsgi_params;": f"include {PARAMS};",
    }.items():
        text = text.replace(old, new)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    assert NGINX is not None
    done = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


# --- the client's version, and the response's framing --------------------------------------

# curl's option for each client version, and what the application is given for it.
CLIENTS = {"1.0": ["--http1.0"], "1.1": ["--http1.1"], "2": ["--http2-prior-knowledge"]}
SERVER_PROTOCOL = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2"}


def drip_body(count: int) -> bytes:
    return b"".join(b"line %06d\n" % i for i in range(count))


def curl(port: int, path: str, *options: str) -> tuple[int, str, bytes]:
    """(status, the response head as curl received it, body) through nginx."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "-D", "-", *options, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1").lower(), body


@pytest.mark.parametrize("app", APPS)
def test_client_version_reaches_the_app_and_framing_holds(app: str, tmp_path: Path) -> None:
    count = 20_000  # about 240 KB in 20000 body chunks: many writes, nginx buffers filled
    with stack_ports(tmp_path, app, trusted=True) as (port, h2_port):
        for client, options in CLIENTS.items():
            to = h2_port if client == "2" else port
            for kind in ("tcp", "unix"):
                status, head, body = curl(to, f"/{kind}/version", *options)
                assert status == 200
                want = SERVER_PROTOCOL[client] if app.startswith("flask") else client
                assert body.decode() == want
                # Streamed without Content-Length: whole and in order, framed by nginx.
                status, head, body = curl(to, f"/{kind}/drip?count={count}", *options)
                assert status == 200 and body == drip_body(count)
                assert "content-length" not in head
                if client == "1.1":
                    assert "transfer-encoding: chunked" in head
                status, head, body = curl(to, f"/{kind}/drip?count=500&te=1", *options)
                assert status == 200 and body == drip_body(500)
                # HEAD of that: answered, and in time (curl fails on its --max-time).
                status, head, _ = curl(to, f"/{kind}/drip?count=5", "--head", *options)
                assert status == 200
                status, head, body = curl(to, f"/{kind}/empty", *options)
                assert (status, body) == (204, b"")
                status, head, body = curl(to, f"/{kind}/empty", "-d", "x=1", *options)
                assert (status, body) == (204, b"")
            if app.startswith("fastapi"):
                # The early hint is dropped: nginx would take a 103 for the response.
                status, head, body = curl(to, "/tcp/hint/", *options)
                assert (status, body) == (200, b"hinted")


RAW_APPS = {
    "flask-sync": ("apps.uwsgi_flask_framing_app:app", ["-k", "sync"]),
    "flask-gevent": ("apps.uwsgi_flask_framing_app:app", ["-k", "gevent"]),
    **APPS,
}


def raw_response(out: bytes) -> tuple[str, dict[str, str], bytes]:
    """(status line, headers with lower-case names, body) of the one response in `out`."""
    head, _, body = out.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        assert name.lower() not in headers, out
        headers[name.lower()] = value.strip()
    return status, headers, body


@pytest.mark.parametrize("app", RAW_APPS)
def test_raw_packet_with_http11_is_answered_close_delimited(app: str) -> None:
    """A packet that says SERVER_PROTOCOL HTTP/1.1, no nginx: the application sees HTTP/1.1,
    and the response is never chunked and ends with the connection (`exchange` reads to the
    close and fails on its timeout if the server keeps the connection open)."""
    module, args = RAW_APPS[app]

    def send(method: str, path: str) -> tuple[str, dict[str, str], bytes]:
        env = {"REQUEST_METHOD": method, "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "x"}
        env.update(PATH_INFO=path.partition("?")[0], REQUEST_URI=path)
        env["QUERY_STRING"] = path.partition("?")[2]
        return raw_response(exchange(srv.port, uwsgi_packet(env)))

    with Server(module, *args, "--protocol", "uwsgi") as srv:
        status, headers, body = send("GET", "/version")
        assert status.startswith("HTTP/1.1 200 ")
        assert body == (b"HTTP/1.1" if app.startswith("flask") else b"1.1")

        status, headers, body = send("GET", "/drip?count=3000")
        assert status.startswith("HTTP/1.1 200 ")
        assert "transfer-encoding" not in headers and "content-length" not in headers
        assert headers["connection"] == "close"
        assert body == drip_body(3000)  # raw bytes, no chunk sizes between them

        # The application's own Transfer-Encoding is dropped (the server owns the framing).
        status, headers, body = send("GET", "/drip?count=50&te=1")
        assert status.startswith("HTTP/1.1 200 ") and "transfer-encoding" not in headers
        assert body == drip_body(50)

        status, headers, body = send("HEAD", "/drip?count=3")
        assert status.startswith("HTTP/1.1 200 ") and body == b""
        assert "transfer-encoding" not in headers and headers["connection"] == "close"

        status, headers, body = send("GET", "/empty")
        assert status.startswith("HTTP/1.1 204 ") and body == b""
        assert "transfer-encoding" not in headers and "content-length" not in headers

        if app.startswith("fastapi"):  # the early hint is dropped, the response alone sent
            status, headers, body = send("GET", "/hint/")
            assert status.startswith("HTTP/1.1 200 ") and body == b"hinted"
        assert "Traceback" not in srv.log()
