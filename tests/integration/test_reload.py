"""HUP: settings re-read, a new generation of workers, and no request lost while it happens."""

from __future__ import annotations

import http.client
import json
import signal
import time
from pathlib import Path

import pytest

from support.load import Load
from support.server import Server, wait_for


def pid_of(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/pid")
    pid = int(json.loads(conn.getresponse().read())["pid"])
    conn.close()
    return pid


@pytest.mark.parametrize("kind", [["-k", "sync"], ["-k", "gthread", "--threads", "2"]])
def test_hup_twenty_times_under_load_loses_nothing(kind: list[str]) -> None:
    with Server("support.apps:echo", *kind, workers=2) as srv:
        with Load(srv.port) as load:
            for round_ in range(20):
                srv.signal(signal.SIGHUP)
                srv.wait_booted(2 * (round_ + 2))
                time.sleep(0.1)  # keep traffic flowing through the switch
        print(f"HUP x20: {load.ok} requests answered, {len(load.errors)} failed")
        assert load.ok > 100
        assert load.errors == []
        wait_for(lambda: len(srv.worker_pids()) == 2, 15)


def test_hup_rereads_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "corral.conf.py"
    conf.write_text("workers = 1\n")
    with Server("support.apps:echo", "-c", str(conf), workers_flag=False) as srv:
        wait_for(lambda: len(srv.worker_pids()) == 1)
        conf.write_text("workers = 3\n")
        srv.signal(signal.SIGHUP)
        wait_for(lambda: len(srv.worker_pids()) == 3, 15)


def test_hup_with_broken_config_keeps_serving(tmp_path: Path) -> None:
    conf = tmp_path / "corral.conf.py"
    conf.write_text("workers = 2\n")
    with Server("support.apps:echo", "-c", str(conf), workers=2, workers_flag=False) as srv:
        before = set(srv.worker_pids())
        conf.write_text("workers = (\n")
        srv.signal(signal.SIGHUP)
        srv.wait_log("Reload failed")
        assert pid_of(srv.port) in before
        assert set(srv.worker_pids()) == before
