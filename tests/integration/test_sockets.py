"""Listening sockets: unix sockets (umask, stale files), IPv6, several binds, --reuse-port."""

from __future__ import annotations

import http.client
import os
import socket
import stat
from pathlib import Path

import pytest

from support.server import Server, run_corral


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.unix_path)


def get(conn: http.client.HTTPConnection, path: str = "/") -> int:
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def free_port(family: socket.AddressFamily = socket.AF_INET) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unix_socket_with_umask_and_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "corral.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a socket file left behind by a crashed server
    stale.close()
    srv = Server("support.apps:echo", "-b", f"unix:{path}", "--umask", "0o117", bind=False)
    with srv:
        assert get(UnixHTTPConnection(str(path))) == 200
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o660, oct(mode)
        assert f"Listening at: unix:{path}" in srv.log()
    assert not path.exists()  # removed on shutdown


def test_unix_socket_path_that_is_not_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "precious.txt"
    path.write_text("do not delete")
    result = run_corral(["-b", f"unix:{path}", "--pythonpath", "tests", "support.apps:echo"])
    assert result.returncode != 0
    assert "not a socket" in result.stderr
    assert path.read_text() == "do not delete"


def test_ipv6_and_several_binds(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        port6 = free_port(socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    port4 = free_port()
    path = tmp_path / "s.sock"
    args = ["-b", f"[::1]:{port6}", "-b", f"127.0.0.1:{port4}", "-b", f"unix:{path}"]
    with Server("support.apps:echo", *args, workers=2, bind=False) as srv:
        assert get(http.client.HTTPConnection("::1", port6, timeout=10)) == 200
        assert get(http.client.HTTPConnection("127.0.0.1", port4, timeout=10)) == 200
        assert get(UnixHTTPConnection(str(path))) == 200
        log = srv.log()
        assert f"Listening at: http://[::1]:{port6}" in log
        assert f"Listening at: http://127.0.0.1:{port4}" in log


def test_reuse_port_allows_a_second_server_on_the_same_port() -> None:
    port = free_port()
    args = ["-b", f"127.0.0.1:{port}", "--reuse-port"]
    with (
        Server("support.apps:echo", *args, bind=False),
        Server("support.apps:echo", *args, bind=False),
    ):
        statuses = [
            get(http.client.HTTPConnection("127.0.0.1", port, timeout=10)) for _ in range(20)
        ]
        assert statuses == [200] * 20


def test_address_in_use_is_a_clear_startup_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_corral(
            ["-b", f"127.0.0.1:{port}", "--pythonpath", "tests", "support.apps:echo"]
        )
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
