"""Log files through the real server: access log lines, and USR1 after logrotate moves a file."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import textwrap
from pathlib import Path

import pytest

from support.client import get_status
from support.server import Server, wait_for


def get(port: int, path: str) -> int:
    return get_status(port, path, headers={"User-Agent": "tester"})


def opened(pid: int) -> set[str]:
    """The paths of the files process `pid` has open."""
    paths = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed since it was listed
            paths.add(os.readlink(fd))
    return paths


def test_usr1_reopens_moved_logs(tmp_path: Path) -> None:
    error_log = tmp_path / "error.log"
    access_log = tmp_path / "access.log"
    args = ["--error-logfile", str(error_log), "--access-logfile", str(access_log)]
    with Server("support.apps:echo", *args, workers=2, error_log=error_log) as srv:
        wait_for(lambda: error_log.exists() and error_log.read_text().count("Booting worker") == 2)
        assert get(srv.port, "/before") == 200
        wait_for(lambda: "/before" in access_log.read_text())
        line = access_log.read_text().splitlines()[-1]
        assert '"GET /before HTTP/1.1" 200' in line and '"tester"' in line
        access_log.rename(tmp_path / "access.log.1")
        error_log.rename(tmp_path / "error.log.1")
        srv.signal(signal.SIGUSR1)
        wait_for(access_log.exists)
        wait_for(error_log.exists)
        # The master reopens first, then the workers, each in its own loop: a request served
        # before its worker reopened still goes to the moved file, as it should.
        moved = {str(tmp_path / "access.log.1"), str(tmp_path / "error.log.1")}
        wait_for(lambda: not any(opened(pid) & moved for pid in srv.worker_pids()))

        def both_workers_answered() -> bool:
            get(srv.port, "/after")
            return access_log.read_text().count("/after") >= 4

        wait_for(both_workers_answered, 10)
        assert "/after" not in (tmp_path / "access.log.1").read_text()
        srv.signal(signal.SIGTTIN)
        wait_for(lambda: "Booting worker" in error_log.read_text())


def test_json_access_log_shipped_via_syslog() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    port = receiver.getsockname()[1]
    args = ["--log-syslog", "--log-syslog-to", f"udp://127.0.0.1:{port}", "--access-log-json"]
    args += ["--log-syslog-prefix", "shop", "--access-logfile", "-"]
    try:
        with Server("support.apps:echo", *args) as srv:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            forged = 'x", "status": 999, "evil": "\\n{"'
            conn.request("GET", "/json-line?a=1", headers={"User-Agent": forged})
            assert conn.getresponse().read()
            conn.close()
            packets = []
            while not any(b".access:" in p for p in packets):
                packets.append(receiver.recv(65536))
    finally:
        receiver.close()
    access = next(p for p in packets if b".access:" in p).decode()
    assert access.startswith("<")
    assert "shop" in access.split(":", 1)[0]
    line = json.loads(access[access.index("{") :].rstrip("\x00").strip())
    assert line["path"] == "/json-line" and line["query"] == "a=1"
    assert line["status"] == 200 and line["user_agent"] == forged
    assert "evil" not in line


# --- the access log must never cost a request, and must not lag ------------------------------

ODD_APP = """
    import ipaddress, os, time
    from pathlib import Path

    class Unprintable:
        def __str__(self):
            raise RuntimeError("this value has no text")

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/address-object":
            environ["REMOTE_ADDR"] = ipaddress.ip_address("203.0.113.5")
            environ["HTTP_USER_AGENT"] = ipaddress.ip_address("2001:db8::1")
        elif path == "/unprintable":
            environ["HTTP_REFERER"] = Unprintable()
        elif path == "/hold":  # stay in the application until the test says so
            folder = Path(os.environ["ACCESS_TEST_DIR"])
            (folder / "holding").touch()
            deadline = time.monotonic() + 30
            while not (folder / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
"""


def odd_app(tmp_path: Path) -> list[str]:
    (tmp_path / "odd_app.py").write_text(textwrap.dedent(ODD_APP))
    return ["--chdir", str(tmp_path)]


@pytest.mark.parametrize("worker", [["-k", "sync"], ["-k", "gthread", "--threads", "4"]])
def test_environ_values_that_are_not_str_cost_no_request(tmp_path: Path, worker: list[str]) -> None:
    access_log = tmp_path / "access.log"
    args = [*odd_app(tmp_path), *worker, "--access-logfile", str(access_log)]
    with Server("odd_app:app", *args) as srv:
        workers = srv.worker_pids()
        for path in ["/address-object", "/unprintable", "/address-object", "/after"]:
            assert get(srv.port, path) == 200
        wait_for(lambda: "/after" in access_log.read_text())
        lines = access_log.read_text().splitlines()
        assert srv.worker_pids() == workers  # no worker died or was replaced
        srv.wait_log("Cannot write the access log line of a request")
        assert "this value has no text" in srv.log()
    address_lines = [line for line in lines if "/address-object" in line]
    assert len(address_lines) == 2
    assert all(line.startswith("203.0.113.5 - - [") for line in address_lines)
    assert all(line.endswith('"2001:db8::1"') for line in address_lines)
    assert not any("/unprintable" in line for line in lines)  # its line alone is lost
    assert len(lines) == 3


def test_a_line_is_written_before_the_worker_waits_again(tmp_path: Path) -> None:
    # A sync worker in the middle of its next request has waited for events since the first
    # one ended: the first line must be in the file, and survive a SIGKILL there and then.
    access_log = tmp_path / "access.log"
    args = [*odd_app(tmp_path), "-k", "sync", "--access-logfile", str(access_log)]
    env = {"ACCESS_TEST_DIR": str(tmp_path)}
    with Server("odd_app:app", *args, env=env) as srv:
        assert get(srv.port, "/first") == 200
        holder = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        try:
            holder.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_for((tmp_path / "holding").exists)
            (worker,) = srv.worker_pids()
            os.kill(worker, signal.SIGKILL)
            assert holder.recv(100) == b""  # the held request died with its worker
        finally:
            (tmp_path / "release").touch()
            holder.close()
        lines = access_log.read_text().splitlines()
    assert len(lines) == 1 and '"GET /first HTTP/1.1" 200 2' in lines[0]


def test_statsd_log_counters_come_from_the_workers() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    port = receiver.getsockname()[1]
    args = ["--statsd-host", f"127.0.0.1:{port}", "--statsd-prefix", "shop"]
    try:
        with Server("support.apps:echo", *args) as srv:
            assert get(srv.port, "/boom") == 500  # "Error handling request", with a traceback
            srv.wait_log("boom from the test app")
            lines: list[str] = []
            while "shop.gunicorn.log.exception:1|c" not in lines:
                lines += receiver.recv(65536).decode().split("\n")
    finally:
        receiver.close()
