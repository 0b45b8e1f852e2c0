"""Log files through the real server: access log lines, and USR1 after logrotate moves a file."""

from __future__ import annotations

import http.client
import signal
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
