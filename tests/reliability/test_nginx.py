"""Behind a real nginx: corral over TCP and over a unix socket, with nginx speaking HTTP/1.1 with
upstream keep-alive and, the classic setup, HTTP/1.0 with buffering. Load through each (no
answer other than 2xx), request and response bodies through each, and the forwarded headers:
nginx says X-Forwarded-Proto https and corral, trusting 127.0.0.1 and unix peers, sets
wsgi.url_scheme to https.

The proxy directives are those of examples/nginx.conf (a test below keeps the two in step);
skipped when nginx is not installed (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reliability.apps import APP, CHUNK, generated_bytes
from reliability.budget import scaled
from reliability.figures import Figures
from reliability.procfs import largest_fds, largest_rss
from reliability.traffic import Burst, hey_burst, pooled_burst, wrk_burst
from support.server import ROOT, Server, wait_for

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")

EXAMPLE = ROOT / "examples" / "nginx.conf"
LOAD = 10_000
LOAD_OTHERS = scaled(1_000, 10_000)  # through the unix socket and the classic setup
CONCURRENCY = 100

# HTTP/1.1 and upstream keep-alive, as in examples/nginx.conf (the scheme is fixed to https
# here: the test's nginx listens on plain HTTP and plays the part of a TLS terminator).
KEEPALIVE = """
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_redirect off;
            proxy_buffering on;
            proxy_request_buffering on;
            proxy_connect_timeout 5s;
            proxy_read_timeout 60s;
            proxy_send_timeout 60s;
"""
# The classic setup: nginx's default HTTP/1.0 to the upstream, a connection per request.
CLASSIC = "\n".join(
    line for line in KEEPALIVE.splitlines() if "proxy_http_version" not in line and '""' not in line
)
ROUTES = {  # location prefix -> (upstream, directives)
    "/": ("corral_tcp", KEEPALIVE),
    "/unix/": ("corral_unix", KEEPALIVE),
    "/classic/": ("corral_tcp", CLASSIC),
    "/classic-unix/": ("corral_unix", CLASSIC),
}

CONFIG = """
{user}
worker_processes 2;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 100m;
    upstream corral_tcp {{
        server 127.0.0.1:{corral_port} fail_timeout=0;
        keepalive 32;
        keepalive_timeout 60s;
    }}
    upstream corral_unix {{
        server unix:{corral_sock} fail_timeout=0;
        keepalive 32;
        keepalive_timeout 60s;
    }}
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"""


def nginx_config(tmp: Path, port: int, corral_port: int, corral_sock: Path) -> str:
    locations = "".join(
        f"        location {prefix} {{\n"
        f"            proxy_pass http://{upstream}{'' if prefix == '/' else '/'};{directives}"
        "        }\n"
        for prefix, (upstream, directives) in ROUTES.items()
    )
    return CONFIG.format(
        user="user root;" if os.geteuid() == 0 else "",  # workers must reach tmp_path's socket
        tmp=tmp,
        port=port,
        corral_port=corral_port,
        corral_sock=corral_sock,
        locations=locations,
    )


def free_port() -> int:
    """A port free right now. nginx cannot listen on port 0, so this races with the rest of the
    machine; start_nginx tries again with another port when it loses."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


@contextlib.contextmanager
def running_nginx(tmp: Path, corral_port: int, corral_sock: Path) -> Iterator[int]:
    with started_nginx(tmp, lambda port: nginx_config(tmp, port, corral_port, corral_sock)) as port:
        yield port


@contextlib.contextmanager
def started_nginx(tmp: Path, render: Callable[[int], str]) -> Iterator[int]:
    """nginx running in `tmp` with the configuration `render` writes for its port: the port.
    A port taken meanwhile by someone else is retried with another."""
    for _ in range(5):
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(render(port))
        assert NGINX is not None
        proc = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(lambda p=proc, n=port: p.poll() is not None or answers(n), 10, "nginx")
            if proc.poll() is None:
                yield port
                return
            log = (tmp / "error.log").read_text(errors="replace")
            if "Address already in use" not in log:
                raise AssertionError(f"nginx did not start:\n{log}")
        finally:
            stop_nginx(proc)
    raise AssertionError("no free port for nginx after 5 tries")


def stop_nginx(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGQUIT)  # graceful
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # nginx's workers, if the master died first


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    """corral (TCP and unix socket, trusting 127.0.0.1) behind nginx, shared by the module's
    tests; yields (corral, nginx's port)."""
    tmp_path = tmp_path_factory.mktemp("nginx")
    sock = tmp_path / "corral.sock"
    args = ["-k", "gthread", "--threads", "8", "--keep-alive", "75", "-b", f"unix:{sock}"]
    args += ["--forwarded-allow-ips", "127.0.0.1"]
    with (
        Server(APP, *args, workers=2) as srv,
        running_nginx(tmp_path, srv.port, sock) as port,
    ):
        yield srv, port


def burst(port: int, path: str, total: int) -> Burst:
    url = f"http://127.0.0.1:{port}{path}"
    if shutil.which("hey"):
        return hey_burst(url, total, CONCURRENCY)
    if shutil.which("wrk"):
        return wrk_burst(url, total, CONCURRENCY)
    return pooled_burst(port, path, total, CONCURRENCY)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_load_through_nginx(stack: tuple[Server, int], figures: Figures) -> None:
    srv, port = stack
    request(port, "GET", "/pid")
    figures.rss_mib = (largest_rss(srv), None)
    figures.fds = (largest_fds(srv), None)
    runs = {"/pid": burst(port, "/pid", LOAD)}
    for prefix in ("/unix/", "/classic/", "/classic-unix/"):
        runs[prefix + "pid"] = burst(port, prefix + "pid", LOAD_OTHERS)
    figures.sent = sum(run.sent for run in runs.values())
    figures.failed = sum(run.failed for run in runs.values())
    figures.lost = sum(run.lost for run in runs.values())
    figures.p99_ms = max((run.p99_ms or 0.0) for run in runs.values())
    figures.rss_mib = (figures.rss_mib[0], largest_rss(srv))
    figures.fds = (figures.fds[0], largest_fds(srv))
    rates = ", ".join(
        f"{path} {run.sent / run.seconds:,.0f}/s" for path, run in runs.items() if run.seconds
    )
    figures.note(f"{next(iter(runs.values())).tool}, c={CONCURRENCY}: {rates}")
    figures.report()
    details = {path: run.details for path, run in runs.items() if run.failed or run.lost}
    assert figures.failed == 0 and figures.lost == 0, details


@pytest.mark.parametrize("prefix", list(ROUTES))
def test_bodies_through_nginx(stack: tuple[Server, int], prefix: str) -> None:
    _, port = stack
    body = os.urandom(3 << 20)
    status, echoed = request(port, "POST", prefix + "echo-body", body)
    assert status == 200 and echoed == body

    def pieces() -> Iterator[bytes]:  # a chunked request body: nginx buffers, then forwards it
        for offset in range(0, len(body), 100_000):
            yield body[offset : offset + 100_000]

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", prefix + "upload", body=pieces(), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200
    assert json.loads(resp.read()) == {
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    conn.close()

    size = 20 << 20
    status, data = request(port, "GET", f"{prefix}bytes?{size}")
    expected = b"".join(generated_bytes(CHUNK))
    assert status == 200 and len(data) == size
    assert all(
        data[i : i + CHUNK] == expected[: len(data[i : i + CHUNK])] for i in range(0, size, CHUNK)
    )
    # A chunked response from corral: over HTTP/1.0 (classic) corral must close-delimit it.
    status, data = request(port, "GET", prefix + "stream")
    assert status == 200 and data == b"".join(f"part {i}\n".encode() for i in range(5))
    status, data = request(port, "GET", f"{prefix}file?{5 << 20}")  # sendfile
    assert status == 200 and len(data) == 5 << 20


@pytest.mark.parametrize("prefix", list(ROUTES))
def test_forwarded_headers_through_nginx(stack: tuple[Server, int], prefix: str) -> None:
    _, port = stack
    status, data = request(
        port,
        "GET",
        prefix + "environ?x=1",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "http",
            "Host": "app.example",
        },
    )
    assert status == 200
    environ = json.loads(data)
    assert environ["wsgi.url_scheme"] == "https"  # nginx's header, not the client's
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.7, 127.0.0.1"
    assert environ["HTTP_X_FORWARDED_PROTO"] == "https"
    assert environ["HTTP_HOST"] == "app.example" and environ["SERVER_NAME"] == "app.example"
    assert environ["QUERY_STRING"] == "x=1"
    assert environ["PATH_INFO"] == "/environ"
    unix = "unix" in prefix
    assert environ["REMOTE_ADDR"] == ("" if unix else "127.0.0.1"), environ["REMOTE_ADDR"]


def directives(text: str) -> set[str]:
    """The proxy_* and keepalive* directives of an nginx config, one normalised line each."""
    found = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if re.match(r"(proxy_(?!pass|temp_path)\w+|keepalive\w*)\s", line):
            found.add(re.sub(r"\s+", " ", line))
    return found


def test_example_config_has_the_tested_directives() -> None:
    """examples/nginx.conf ships what passed here (the scheme aside: $scheme there)."""
    tested = directives(KEEPALIVE) | directives(CONFIG)
    tested = {d.replace("X-Forwarded-Proto https", "X-Forwarded-Proto $scheme") for d in tested}
    shipped = directives(EXAMPLE.read_text())
    assert tested - shipped == set()
    assert "proxy_pass http://corral;" in EXAMPLE.read_text()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_example_config_is_valid_nginx(tmp_path: Path) -> None:
    """`nginx -t` on examples/nginx.conf, with its files (certificate, logs, pid) moved into
    tmp_path and a throwaway self-signed certificate."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_cert = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run(
        [*make_cert, "-subj", "/CN=t", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    text = EXAMPLE.read_text()
    moves = {
        "/etc/ssl/certs/example.com.pem": str(cert),
        "/etc/ssl/private/example.com.key": str(key),
        "/run/nginx.pid": str(tmp_path / "nginx.pid"),
        "/var/log/nginx/": f"{tmp_path}/",
    }
    for old, new in moves.items():
        assert old in text, old
        text = text.replace(old, new)
    if os.geteuid() != 0 or not _user_exists("www-data"):
        text = text.replace("user www-data;", "")
    if not Path("/etc/nginx/mime.types").exists():
        text = text.replace("include /etc/nginx/mime.types;", "")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    assert NGINX is not None
    check = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
