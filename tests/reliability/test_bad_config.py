"""A broken configuration at run time: HUP with a config file that no longer loads keeps the
old settings and the old workers serving, under load, with no request failing; HUP after the
file is fixed applies it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from reliability.apps import APP
from reliability.figures import Figures
from reliability.procfs import largest_fds, largest_rss
from reliability.traffic import MeasuredLoad
from support.server import Server, wait_for

KINDS = {"sync": "sync", "gthread": "gthread"}
BROKEN = {
    "syntax": "workers = (\n",
    "bad value": "workers = 'many'\n",
    "raises": "raise RuntimeError('config exploded')\n",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_hup_with_broken_config_under_load(kind: str, figures: Figures, tmp_path: Path) -> None:
    conf = tmp_path / "corral.conf.py"
    good = f"workers = 2\nworker_class = {kind!r}\nthreads = 2\n"
    conf.write_text(good)
    with Server(APP, "-c", str(conf), workers=2, workers_flag=False) as srv:
        with MeasuredLoad(srv.port) as load:
            load.wait_answers(50)
            before = set(srv.worker_pids())
            figures.rss_mib = (largest_rss(srv), None)
            figures.fds = (largest_fds(srv), None)
            for count, text in enumerate(BROKEN.values(), 1):
                conf.write_text(text)
                srv.signal(signal.SIGHUP)
                srv.wait_log("Reload failed, keeping the previous settings", count)
                load.wait_answers(50)
                assert set(srv.worker_pids()) == before, f"workers changed after {text!r}"
            conf.write_text(good.replace("workers = 2", "workers = 3"))
            srv.signal(signal.SIGHUP)
            wait_for(lambda: len(srv.worker_pids()) == 3, 15, "the fixed config's 3 workers")
            load.wait_answers(50)
        figures.sent, figures.failed, figures.lost = load.sent, load.failed, load.lost
        figures.p99_ms = load.p99_ms
        figures.rss_mib = (figures.rss_mib[0], largest_rss(srv))
        figures.fds = (figures.fds[0], largest_fds(srv))
        figures.note(f"{len(BROKEN)} broken configs kept the old workers; the fixed one applied")
        figures.report()
        assert load.errors == [], load.errors[:5]
