"""USR2 binary upgrade: a new master on the same sockets, then the switch or the rollback."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from support.load import Load
from support.server import Server, alive, read_pid, wait_for


def test_usr2_winch_term_switches_masters_without_failures(tmp_path: Path) -> None:
    pidfile = tmp_path / "corral.pid"
    with Server("support.apps:echo", "--pid", str(pidfile), workers=2) as srv:
        assert srv.proc is not None
        old = srv.proc.pid
        wait_for(lambda: read_pid(pidfile) == old)
        with Load(srv.port) as load:
            srv.signal(signal.SIGUSR2)
            new = int(wait_for(lambda: read_pid(Path(f"{pidfile}.2")), 15))  # type: ignore[arg-type]
            assert new != old
            srv.wait_booted(4)  # two old workers, two new ones
            srv.signal(signal.SIGWINCH)
            srv.wait_log("graceful stop of workers")
            time.sleep(0.5)  # traffic now flows only through the new master's workers
            srv.signal(signal.SIGTERM)
            assert srv.wait_exit() == 0
            wait_for(lambda: read_pid(pidfile) == new, 15)
            assert not Path(f"{pidfile}.2").exists()
            time.sleep(0.5)
        print(f"USR2 upgrade: {load.ok} requests answered, {len(load.errors)} failed")
        assert load.ok > 50
        assert load.errors == []
        os.kill(new, signal.SIGTERM)
        wait_for(lambda: not alive(new), 15)


def test_usr2_rollback_with_hup_then_term_new(tmp_path: Path) -> None:
    pidfile = tmp_path / "corral.pid"
    with Server("support.apps:echo", "--pid", str(pidfile), workers=1) as srv:
        assert srv.proc is not None
        old = srv.proc.pid
        wait_for(lambda: read_pid(pidfile) == old)
        with Load(srv.port) as load:
            srv.signal(signal.SIGUSR2)
            new = int(wait_for(lambda: read_pid(Path(f"{pidfile}.2")), 15))  # type: ignore[arg-type]
            srv.wait_booted(2)
            srv.signal(signal.SIGWINCH)
            srv.wait_log("graceful stop of workers")
            srv.signal(signal.SIGHUP)  # the old master takes its workers back
            srv.wait_booted(3)
            os.kill(new, signal.SIGTERM)
            srv.wait_log("New master (pid")
            time.sleep(0.5)
        assert load.errors == []
        assert read_pid(pidfile) == old
        assert srv.proc.poll() is None
