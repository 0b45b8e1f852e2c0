"""Reloads under load: HUP twenty times, then a USR2 binary upgrade (USR2, WINCH, TERM the old
master), while keep-alive and new-connection clients hammer the server. Nothing may fail and
nothing may be reset; the figures show what the switches cost in latency, and that the master
leaks no descriptor across reloads.

A single reading of /proc/PID/fd is not the master's lasting count: on every turn of its loop
the master opens the kernel's OOM-kill counter for an instant (corral.resources.OomCounter), and
a reading that lands in that instant counts one descriptor more. Comparing two single readings
failed by chance ("7 -> 6"). So the baseline is the fewest seen over a few readings, and a leak
is a count above it that stays for seconds: a brief open ends long before that.

tests/integration/test_reload.py and test_upgrade.py prove the mechanics; this one measures.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from reliability.apps import APP
from reliability.figures import Figures
from reliability.procfs import children, fd_count, largest_fds, largest_rss
from reliability.traffic import MeasuredLoad
from support.server import Server, alive, read_pid, wait_for

KINDS = {"sync": ["-k", "sync"], "gthread": ["-k", "gthread", "--threads", "4"]}
HUPS = 20
# A descriptor the master holds longer than this is not one of its brief opens.
LASTING = 10.0


def lasting_fds(pid: int, readings: int = 10, interval: float = 0.05) -> int:
    """The descriptors `pid` holds for good: the fewest over `readings` readings. A brief open
    shows in a reading or two, never in all; if it did, the baseline would only be higher,
    which can hide a leak of one but never report one that is not there."""
    counts = []
    for _ in range(readings):
        counts.append(fd_count(pid))
        time.sleep(interval)  # spread the readings; this is sampling, not waiting for an event
    known = [n for n in counts if n is not None]
    assert known, f"process {pid} is gone"
    return min(known)


def extra_fds(pid: int, baseline: int, timeout: float = LASTING) -> list[str]:
    """[] as soon as `pid` holds no more than `baseline` descriptors; otherwise, after
    `timeout` seconds, what its descriptors point to (the leak, named)."""
    deadline = time.monotonic() + timeout
    while (fd_count(pid) or 0) > baseline:
        if time.monotonic() > deadline:
            return sorted(_target(pid, fd) for fd in os.listdir(f"/proc/{pid}/fd"))
        time.sleep(0.02)
    return []


def _target(pid: int, fd: str) -> str:
    try:
        return f"{fd} -> {os.readlink(f'/proc/{pid}/fd/{fd}')}"
    except OSError:
        return f"{fd} (closed meanwhile)"


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
                master_fds = lasting_fds(master)
                figures.rss_mib = (largest_rss(srv), None)
                figures.fds = (largest_fds(srv), None)
                hup_rounds(srv, load)
                load.wait_answers(50)
                leaked = extra_fds(master, master_fds)
                master_fds_after = lasting_fds(master)
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
        assert not leaked, (
            f"the master leaks descriptors across reloads: {master_fds} before, {leaked}"
        )
