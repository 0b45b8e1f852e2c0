"""Log files through the real server: access log lines, and USR1 after logrotate moves a file."""

from __future__ import annotations

import http.client
import json
import signal
import socket
from pathlib import Path

from support.server import Server, wait_for


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"User-Agent": "tester"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


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

        def both_workers_reopened() -> bool:
            get(srv.port, "/after")
            return access_log.read_text().count("/after") >= 4

        wait_for(both_workers_reopened, 10)
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
