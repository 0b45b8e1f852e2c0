"""Reloads under load: HUP twenty times, then a USR2 binary upgrade (USR2, WINCH, TERM the old
master), while keep-alive and new-connection clients hammer the server. Nothing may fail and
nothing may be reset; the figures show what the switches cost in latency, and that the master
leaks no descriptor across reloads.

tests/integration/test_reload.py and test_upgrade.py prove the mechanics; this one measures.
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
from support.server import Server, alive, read_pid, wait_for

KINDS = {"sync": ["-k", "sync"], "gthread": ["-k", "gthread", "--threads", "4"]}
HUPS = 20


def hup_rounds(srv: Server, load: MeasuredLoad) -> None:
    for round_ in range(HUPS):
        srv.signal(signal.SIGHUP)
        srv.wait_booted(2 * (round_ + 2))
        load.wait_answers(20)  # traffic flows through every switch
    wait_for(lambda: len(srv.worker_pids()) == 2, 15, "the last old generation to exit")


def upgrade(srv: Server, load: MeasuredLoad, pidfile: Path) -> int:
    """USR2, WINCH, TERM the old master; returns the new master's pid."""
    srv.signal(signal.SIGUSR2)
    new = int(wait_for(lambda: read_pid(Path(f"{pidfile}.2")), 15))  # type: ignore[arg-type]
    srv.wait_booted(2 * (HUPS + 1) + 2)  # the new master's two workers
    load.wait_answers(50)
    srv.signal(signal.SIGWINCH)
    srv.wait_log("graceful stop of workers")
    load.wait_answers(50)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0
    wait_for(lambda: read_pid(pidfile) == new, 15, "the new master to take over")
    return new


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_reloads_under_load(kind: str, figures: Figures, tmp_path: Path) -> None:
    pidfile = tmp_path / "corral.pid"
    new = 0
    with Server(APP, *KINDS[kind], "--pid", str(pidfile), workers=2) as srv:
        assert srv.proc is not None
        master = srv.proc.pid
        try:
            with MeasuredLoad(srv.port, keepalive=2, fresh=2) as load:
                load.wait_answers(100)
                master_fds = fd_count(master)
                figures.rss_mib = (largest_rss(srv), None)
                figures.fds = (largest_fds(srv), None)
                hup_rounds(srv, load)
                load.wait_answers(50)
                master_fds_after = fd_count(master)
                new = upgrade(srv, load, pidfile)
                load.wait_answers(100)
            figures.rss_mib = (figures.rss_mib[0], largest_rss(children(new)))
            figures.fds = (figures.fds[0], largest_fds(children(new)))
        finally:
            if new and alive(new):
                os.kill(new, signal.SIGTERM)
                wait_for(lambda: not alive(new), 15, "the new master to stop")
        figures.sent, figures.failed, figures.lost = load.sent, load.failed, load.lost
        figures.p99_ms = load.p99_ms
        figures.note(
            f"{HUPS} HUPs, then USR2+WINCH+TERM; master fds {master_fds}->{master_fds_after}"
        )
        figures.report()
        assert load.errors == [], load.errors[:5]
        assert master_fds_after == master_fds, "the master leaks descriptors across reloads"
