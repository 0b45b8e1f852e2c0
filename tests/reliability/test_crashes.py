"""Worker crashes under load: SIGKILL a worker every second while clients hammer the server.

Only the requests a killed worker held may fail: every failure must fall right after a kill,
and there can be no more of them than the worker could hold (one connection per client
thread). The master must start each replacement within a second, measured from the kill to
the replacement's "Booting worker" line.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from reliability.apps import APP
from reliability.budget import scaled
from reliability.figures import Figures
from reliability.procfs import largest_fds, largest_rss
from reliability.traffic import MeasuredLoad
from support.server import Server, wait_for

KINDS = {"sync": ["-k", "sync"], "gthread": ["-k", "gthread", "--threads", "4"]}
SECONDS = scaled(5, 30)
# How long after a kill its failures may surface (the clients see the reset at once).
FAILURE_WINDOW = 0.5


def booted(srv: Server) -> int:
    return srv.log().count("Booting worker with pid")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_sigkill_a_worker_every_second(kind: str, figures: Figures) -> None:
    rng = random.Random(1)
    with Server(APP, *KINDS[kind], workers=2) as srv:
        with MeasuredLoad(srv.port) as load:
            load.wait_answers(100)
            figures.rss_mib = (largest_rss(srv), None)
            figures.fds = (largest_fds(srv), None)
            kills: list[float] = []
            respawn: list[float] = []
            next_kill = time.monotonic()
            for _ in range(SECONDS):
                time.sleep(max(0.0, next_kill - time.monotonic()))  # the pace: one kill a second
                next_kill += 1.0
                seen = booted(srv)
                victim = rng.choice(srv.worker_pids())
                killed_at = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                kills.append(killed_at)
                wait_for(lambda seen=seen: booted(srv) > seen, 5, "a replacement worker")
                respawn.append(time.monotonic() - killed_at)
            wait_for(lambda: len(srv.worker_pids()) == 2, 5)
            load.wait_answers(100)
        figures.sent, figures.failed, figures.lost = load.sent, load.failed, load.lost
        figures.p99_ms = load.p99_ms
        figures.rss_mib = (figures.rss_mib[0], largest_rss(srv))
        figures.fds = (figures.fds[0], largest_fds(srv))
        figures.note(
            f"{len(kills)} kills; replaced in max {max(respawn) * 1000:.0f} ms, "
            f"mean {sum(respawn) / len(respawn) * 1000:.0f} ms"
        )
        figures.report()
        assert load.failed == 0, load.errors[:5]  # a killed worker answers nothing wrong
        stray = [
            (round(at - kills[0], 3), what)
            for at, what in load.failures
            if not any(0 <= at - k <= FAILURE_WINDOW for k in kills)
        ]
        assert stray == [], f"failures away from any kill: {stray[:5]}"
        assert load.lost <= len(kills) * len(load.threads), load.errors[:10]
        assert max(respawn) < 1.0, respawn
