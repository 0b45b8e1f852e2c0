"""Reloads under load: HUP twenty times, then a USR2 binary upgrade, while keep-alive and
new-connection clients hammer the server. Nothing may fail and nothing may be reset; the
figures show what the switches cost in latency, and that the master leaks no descriptor.

tests/integration/test_reload.py and test_upgrade.py prove the mechanics; these measure.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from reliability.apps import APP
from reliability.figures import Figures
from reliability.procfs import children, fd_count, largest_fds, largest_rss
from reliability.traffic import MeasuredLoad
from support.server import Server, wait_for

KINDS = {"sync": ["-k", "sync"], "gthread": ["-k", "gthread", "--threads", "4"]}
HUPS = 20


def read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_hup_x20_under_load(kind: str, figures: Figures) -> None:
    with Server(APP, *KINDS[kind], workers=2) as srv:
        assert srv.proc is not None
        master = srv.proc.pid
        wait_for(lambda: len(srv.worker_pids()) == 2)
        master_fds = fd_count(master)
        figures.rss_mib = (largest_rss(srv), None)
        figures.fds = (largest_fds(srv), None)
        with MeasuredLoad(srv.port) as load:
            load.wait_answers(50)
            for round_ in range(HUPS):
                srv.signal(signal.SIGHUP)
                srv.wait_booted(2 * (round_ + 2))
                load.wait_answers(20)  # traffic flows through every switch
            wait_for(lambda: len(srv.worker_pids()) == 2, 15, "the last old generation to exit")
            load.wait_answers(50)
        figures.sent, figures.failed, figures.lost = load.sent, load.failed, load.lost
        figures.p99_ms = load.p99_ms
        figures.rss_mib = (figures.rss_mib[0], largest_rss(srv))
        figures.fds = (figures.fds[0], largest_fds(srv))
        master_fds_after = fd_count(master)
        figures.note(f"{HUPS} HUPs; master fds {master_fds} -> {master_fds_after}")
        figures.report()
        assert load.errors == [], load.errors[:5]
        assert master_fds_after == master_fds, "the master leaks descriptors across reloads"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_usr2_upgrade_under_load(kind: str, figures: Figures, tmp_path: Path) -> None:
    pidfile = tmp_path / "corral.pid"
    new = 0
    with Server(APP, *KINDS[kind], "--pid", str(pidfile), workers=2) as srv:
        assert srv.proc is not None
        old = srv.proc.pid
        wait_for(lambda: read_pid(pidfile) == old)
        figures.rss_mib = (largest_rss(srv), None)
        figures.fds = (largest_fds(srv), None)
        try:
            with MeasuredLoad(srv.port) as load:
                load.wait_answers(50)
                srv.signal(signal.SIGUSR2)
                new = int(wait_for(lambda: read_pid(Path(f"{pidfile}.2")), 15))  # type: ignore[arg-type]
                srv.wait_booted(4)  # two old workers, two new ones
                load.wait_answers(50)
                srv.signal(signal.SIGWINCH)
                srv.wait_log("graceful stop of workers")
                load.wait_answers(50)
                srv.signal(signal.SIGTERM)
                assert srv.wait_exit() == 0
                wait_for(lambda: read_pid(pidfile) == new, 15, "the new master to take over")
                load.wait_answers(100)
            figures.rss_mib = (figures.rss_mib[0], largest_rss(children(new)))
            figures.fds = (figures.fds[0], largest_fds(children(new)))
        finally:
            if new and alive(new):
                os.kill(new, signal.SIGTERM)
                wait_for(lambda: not alive(new), 15, "the new master to stop")
        figures.sent, figures.failed, figures.lost = load.sent, load.failed, load.lost
        figures.p99_ms = load.p99_ms
        figures.note("USR2, WINCH, TERM old master")
        figures.report()
        assert load.errors == [], load.errors[:5]
